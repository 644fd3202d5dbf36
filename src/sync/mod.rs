//! The one orchestrator: read the source → take the lock → for each requested stage
//! observe → plan → apply → report, then record the run for audit.
//!
//! This is the only module that uses more than one adapter. Stages are independent: a
//! failing stage is reported in `errors[]` and the others still run. A source that
//! cannot be read at all fails the run before anything is changed.

use crate::config::Settings;
use crate::definition::Severity;
use crate::plan::records::{self, DefinitionRecord, EventTypeRecord};
use crate::plan::{self, Desired, Observed, Op, Plan, Pruning, Rules};
use crate::report::{
    Bounded, Change, Report, ReportError, RowCounts, SourceSummary, Stage, Trigger,
};
use crate::source::{self, Source};
use crate::store::{self, RunRecord, Store, Write};
use crate::temporal::Temporal;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

mod schedules;

/// Which stages a run performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stages {
    pub definitions: bool,
    pub event_types: bool,
    pub schedules: bool,
}

impl Default for Stages {
    /// product.md §3: definitions and schedules on, event types opt-in.
    fn default() -> Self {
        Stages {
            definitions: true,
            event_types: false,
            schedules: true,
        }
    }
}

/// One request for a run.
#[derive(Debug, Clone)]
pub struct Request {
    pub trigger: Trigger,
    /// Who asked (e.g. the admin client's address), for the audit trail.
    pub caller: Option<String>,
    pub stages: Stages,
    pub dry_run: bool,
    /// Lifts the zero-left and max-fraction prune guards.
    pub force: bool,
}

impl Request {
    pub fn new(trigger: Trigger) -> Request {
        Request {
            trigger,
            caller: None,
            stages: Stages::default(),
            dry_run: false,
            force: false,
        }
    }
}

/// Runs syncs against one store and one Temporal namespace with one set of settings.
#[derive(Clone)]
pub struct Engine {
    settings: Arc<Settings>,
    store: Store,
    temporal: Arc<Temporal>,
}

/// The current state of each requested stage, read before planning.
struct Observations {
    definitions: Option<Result<Vec<Observed>, store::Error>>,
    event_types: Option<Result<Vec<Observed>, store::Error>>,
    schedules: Option<Result<schedules::Observation, schedules::StageError>>,
}

/// What every stage shares: the run's context.
struct Run<'a> {
    req: &'a Request,
    src: &'a Source,
    now: DateTime<Utc>,
}

impl Engine {
    /// The Temporal connection is made lazily, on the first run that needs it.
    pub fn new(settings: Arc<Settings>, store: Store) -> Engine {
        let temporal = Arc::new(Temporal::new(&settings.temporal, &settings.owner));
        Engine {
            settings,
            store,
            temporal,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Performs one run and returns its report. Never panics on a failing dependency:
    /// every failure ends up in the report's `errors`.
    pub async fn run(&self, req: &Request) -> Report {
        let run_id = uuid::Uuid::now_v7().to_string();
        let span = tracing::info_span!("sync", run_id = %run_id, trigger = req.trigger.as_str(), dry_run = req.dry_run);
        self.run_inner(run_id, req).instrument(span).await
    }

    async fn run_inner(&self, run_id: String, req: &Request) -> Report {
        let started = Instant::now();
        let now = Utc::now();
        let mut report = Report::new(run_id, req.trigger, req.dry_run, now);
        let max = self.settings.report_max_errors;
        tracing::info!("sync run started");

        // Take the lock first (when applying), then read the files and observe the
        // current state at the same time: neither depends on the other, and both must
        // happen under the lock so the plan is made from state nobody else changes.
        let applies = req.stages.definitions || req.stages.event_types || req.stages.schedules;
        let mut lock = None;
        let mut locked_at = None;
        if applies && !req.dry_run {
            match self
                .store
                .lock(&self.settings.owner, self.settings.sync.lock_timeout)
                .await
            {
                Ok(Some(l)) => {
                    lock = Some(l);
                    locked_at = Some(Utc::now());
                }
                Ok(None) => {
                    let message = format!(
                        "another replica held the sync lock for owner `{}` longer than {}s; nothing was applied",
                        self.settings.owner,
                        self.settings.sync.lock_timeout.as_secs()
                    );
                    tracing::warn!("{message}");
                    Bounded {
                        report: &mut report,
                        max,
                    }
                    .error(ReportError::new(Stage::Lock, message));
                    return self.finish(report, started, None, req).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot take the sync lock");
                    let mut b = Bounded {
                        report: &mut report,
                        max,
                    };
                    for stage in self.db_stages(req) {
                        b.error(ReportError::new(stage, e.to_string()));
                    }
                    return self.finish(report, started, None, req).await;
                }
            }
        }

        let dir = self.settings.definitions_dir.clone();
        let (loaded, observed) = tokio::join!(
            tokio::task::spawn_blocking(move || source::load(&dir, now)),
            self.observe(req)
        );
        let src = match loaded {
            Ok(Ok(src)) => src,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the definitions directory cannot be read; nothing was changed");
                Bounded {
                    report: &mut report,
                    max,
                }
                .error(ReportError::new(Stage::Source, e.to_string()));
                return self
                    .finish_and_release(report, started, locked_at, req, lock)
                    .await;
            }
            Err(e) => {
                Bounded {
                    report: &mut report,
                    max,
                }
                .error(ReportError::new(
                    Stage::Source,
                    format!("reading the source failed: {e}"),
                ));
                return self
                    .finish_and_release(report, started, locked_at, req, lock)
                    .await;
            }
        };
        summarise_source(&mut report, &src, max);

        let run = Run {
            req,
            src: &src,
            now,
        };
        // The stages are independent, so they run at the same time; their results are
        // merged into the report afterwards, in stage order.
        let (definitions, event_types, schedules) = tokio::join!(
            async {
                match observed.definitions {
                    Some(obs) => {
                        let t = Instant::now();
                        Some((self.definitions_stage(&run, obs).await, t.elapsed()))
                    }
                    None => None,
                }
            },
            async {
                match observed.event_types {
                    Some(obs) => {
                        let t = Instant::now();
                        Some((self.event_types_stage(&run, obs).await, t.elapsed()))
                    }
                    None => None,
                }
            },
            async {
                match observed.schedules {
                    Some(obs) => {
                        let t = Instant::now();
                        let outcome =
                            schedules::run(&self.settings, &self.store, &self.temporal, &run, obs)
                                .await;
                        Some((outcome, t.elapsed()))
                    }
                    None => None,
                }
            },
        );
        let mut pruning = Vec::new();
        for (stage, kind, noun, result) in [
            (Stage::Definitions, "definition", "definitions", definitions),
            (Stage::EventTypes, "event_type", "event types", event_types),
        ] {
            if let Some((_, took)) = &result {
                report.stage_durations.push((stage, *took));
            }
            match result.map(|(r, _)| r) {
                None => {}
                Some(Ok(plan)) => {
                    let counts = self.account(&mut report, kind, stage, &plan);
                    match stage {
                        Stage::Definitions => report.definitions = Some(counts),
                        _ => report.event_types = Some(counts),
                    }
                    pruning.extend(describe_pruning(noun, &plan));
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, stage = stage.as_str(), "stage failed");
                    Bounded {
                        report: &mut report,
                        max,
                    }
                    .error(ReportError::new(stage, e.to_string()));
                }
            }
        }
        if let Some((_, took)) = &schedules {
            report.stage_durations.push((Stage::Schedules, *took));
        }
        match schedules.map(|(r, _)| r) {
            None => {}
            Some(Ok(outcome)) => {
                let mut b = Bounded {
                    report: &mut report,
                    max,
                };
                for c in outcome.changes {
                    b.change(c);
                }
                for e in outcome.errors {
                    b.error(e);
                }
                if let Some(p) = &outcome.plan {
                    if let Some(e) = guard_error(Stage::Schedules, p) {
                        b.error(e);
                    }
                    pruning.extend(describe_pruning("schedules", p));
                }
                tracing::info!(list_pages = outcome.list_pages, "schedules stage finished");
                report.schedules = Some(outcome.counts);
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "schedules stage failed");
                Bounded {
                    report: &mut report,
                    max,
                }
                .error(ReportError::new(Stage::Schedules, e.to_string()));
            }
        }
        pruning.dedup();
        report.pruning = if pruning.is_empty() {
            "ok".to_string()
        } else {
            pruning.join("; ")
        };
        let report = self.finish(report, started, locked_at, req).await;
        if let Some(l) = lock {
            l.release().await;
        }
        report
    }

    /// The requested stages, each of which needs the database.
    fn db_stages(&self, req: &Request) -> Vec<Stage> {
        let mut stages = Vec::new();
        if req.stages.definitions {
            stages.push(Stage::Definitions);
        }
        if req.stages.event_types {
            stages.push(Stage::EventTypes);
        }
        if req.stages.schedules {
            stages.push(Stage::Schedules);
        }
        stages
    }

    fn rules<'a>(&'a self, run: &'a Run<'_>, noun: &'static str) -> Rules<'a> {
        Rules {
            owner: &self.settings.owner,
            invalid_documents: run.src.set.invalid,
            frozen: &run.src.set.frozen,
            max_fraction: self.settings.prune_max_fraction,
            force: run.req.force,
            noun,
        }
    }

    async fn definitions_stage(
        &self,
        run: &Run<'_>,
        observed: Result<Vec<Observed>, store::Error>,
    ) -> Result<Plan, store::Error> {
        let started = Instant::now();
        let records = records::definitions(&run.src.set, &self.settings.temporal.task_queue);
        let observed = observed?;
        let desired: Vec<Desired> = records
            .iter()
            .map(|r| Desired {
                name: &r.name,
                hash: &r.hash,
            })
            .collect();
        let plan = plan::plan(&desired, &observed, &self.rules(run, "definitions"));
        if !run.req.dry_run {
            let by_name: HashMap<&str, &DefinitionRecord> =
                records.iter().map(|r| (r.name.as_str(), r)).collect();
            let writes = writes(&plan, &by_name);
            let written = self
                .store
                .apply_definitions(&self.settings.owner, run.now, &writes)
                .await?;
            tracing::info!(
                rows = written,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "definitions applied"
            );
        }
        Ok(plan)
    }

    async fn event_types_stage(
        &self,
        run: &Run<'_>,
        observed: Result<Vec<Observed>, store::Error>,
    ) -> Result<Plan, store::Error> {
        let records = records::event_types(&run.src.set);
        let observed = observed?;
        let desired: Vec<Desired> = records
            .iter()
            .map(|r| Desired {
                name: &r.name,
                hash: &r.hash,
            })
            .collect();
        let plan = plan::plan(&desired, &observed, &self.rules(run, "event types"));
        if !run.req.dry_run {
            let by_name: HashMap<&str, &EventTypeRecord> =
                records.iter().map(|r| (r.name.as_str(), r)).collect();
            let writes = writes(&plan, &by_name);
            self.store
                .apply_event_types(&self.settings.owner, run.now, &writes)
                .await?;
        }
        Ok(plan)
    }

    /// Reads the current state of every requested stage, concurrently.
    async fn observe(&self, req: &Request) -> Observations {
        let (definitions, event_types, schedules) = tokio::join!(
            async {
                if req.stages.definitions {
                    Some(self.store.observe_definitions().await)
                } else {
                    None
                }
            },
            async {
                if req.stages.event_types {
                    Some(self.store.observe_event_types().await)
                } else {
                    None
                }
            },
            async {
                if req.stages.schedules {
                    Some(schedules::observe(&self.settings, &self.store, &self.temporal).await)
                } else {
                    None
                }
            },
        );
        Observations {
            definitions,
            event_types,
            schedules,
        }
    }

    async fn finish_and_release(
        &self,
        report: Report,
        started: Instant,
        locked_at: Option<DateTime<Utc>>,
        req: &Request,
        lock: Option<store::Lock>,
    ) -> Report {
        let report = self.finish(report, started, locked_at, req).await;
        if let Some(l) = lock {
            l.release().await;
        }
        report
    }

    /// Puts a stage's plan into the report: changes, conflicts and guard errors.
    fn account(
        &self,
        report: &mut Report,
        kind: &'static str,
        stage: Stage,
        plan: &Plan,
    ) -> RowCounts {
        let mut b = Bounded {
            report,
            max: self.settings.report_max_errors,
        };
        for (name, op) in &plan.ops {
            b.change(Change {
                kind,
                name: name.clone(),
                action: op.as_str(),
            });
        }
        for c in &plan.conflicts {
            b.error(
                ReportError::new(
                    stage,
                    format!(
                        "`{}` is owned by `{}`, not by this sidecar; it was left alone",
                        c.name, c.owner
                    ),
                )
                .about(&c.name),
            );
        }
        if let Some(e) = guard_error(stage, plan) {
            b.error(e);
        }
        RowCounts {
            created: plan.count(Op::Create) + plan.count(Op::Revive),
            updated: plan.count(Op::Update),
            removed: plan.count(Op::Remove),
            unchanged: plan.unchanged,
        }
    }

    /// Completes the report and writes the audit row (dry runs too).
    async fn finish(
        &self,
        mut report: Report,
        started: Instant,
        locked_at: Option<DateTime<Utc>>,
        req: &Request,
    ) -> Report {
        report.ok = report.errors.is_empty() && report.errors_truncated == 0;
        report.duration_ms = started.elapsed().as_millis() as u64;
        let finished_at = Utc::now();
        let record = RunRecord {
            run_id: report.run_id.clone(),
            owner: self.settings.owner.clone(),
            trigger: req.trigger.as_str().to_string(),
            caller: req.caller.clone(),
            dry_run: req.dry_run,
            ok: report.ok,
            source_revision: report.source.revision.clone(),
            started_at: report.started_at,
            locked_at,
            finished_at,
            duration_ms: report.duration_ms as i64,
            errors: report.error_count() as i32,
            report: serde_json::to_string(&report).unwrap_or_default(),
        };
        if let Err(e) = self.store.record_run(&record).await {
            tracing::error!(error = %e, "cannot record the run in activity_sync_runs");
        }
        tracing::info!(
            ok = report.ok,
            errors = report.error_count(),
            changes = report.changes.len() + report.changes_truncated,
            duration_ms = report.duration_ms,
            "sync run finished"
        );
        report
    }
}

/// The error a tripped prune guard puts in the report. An invalid source suspends
/// pruning too, but its source errors already explain why.
fn guard_error(stage: Stage, plan: &Plan) -> Option<ReportError> {
    match &plan.pruning {
        Pruning::Suspended(reason) if !self_explained(reason) => Some(ReportError::new(
            stage,
            format!(
                "pruning skipped: {reason}; {} removal(s) held back (rerun with force=true to apply them)",
                plan.held_removals
            ),
        )),
        _ => None,
    }
}

fn self_explained(reason: &str) -> bool {
    reason.ends_with("invalid document(s)")
}

fn describe_pruning(noun: &str, plan: &Plan) -> Option<String> {
    match &plan.pruning {
        Pruning::Clear => None,
        Pruning::Forced(r) => Some(format!("forced ({noun}): {r}")),
        Pruning::Suspended(r) if self_explained(r) => Some(format!("suspended: {r}")),
        Pruning::Suspended(r) => Some(format!("suspended ({noun}): {r}")),
    }
}

fn writes<'a, R>(plan: &'a Plan, by_name: &HashMap<&str, &'a R>) -> Vec<Write<'a, R>> {
    plan.ops
        .iter()
        .filter_map(|(name, op)| match op {
            Op::Remove => Some(Write::Remove(name.as_str())),
            _ => by_name.get(name.as_str()).map(|r| Write::Upsert(*r)),
        })
        .collect()
}

fn summarise_source(report: &mut Report, src: &Source, max: usize) {
    let set = &src.set;
    report.source = SourceSummary {
        revision: Some(src.revision.clone()),
        files: set.files,
        documents: set.documents,
        invalid: set.invalid,
    };
    let mut b = Bounded { report, max };
    for d in &set.diagnostics {
        let e = ReportError {
            stage: Stage::Source,
            file: Some(d.file.clone()),
            line: Some(d.line),
            column: Some(d.column),
            name: None,
            message: d.message.clone(),
        };
        match d.severity {
            Severity::Error => b.error(e),
            Severity::Warning => b.warning(e),
        }
    }
}
