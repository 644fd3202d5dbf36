//! The schedules stage: project cron and one-shot definitions into Temporal schedules.
//!
//! Observed state is ListSchedules (eventually consistent) plus the hashes this sidecar
//! last applied (`activity_schedules`), so an unchanged definition costs no Temporal
//! call beyond the List pages. Only schedules whose ID has our prefix *and* whose memo
//! names our owner are ours: anything else is never changed. Changes go Describe →
//! Update with the conflict token and the current pause state carried over, so an
//! operator's pause is held, not clobbered.

use super::Run;
use crate::config::Settings;
use crate::plan::records::{self, ScheduleNaming, ScheduleRecord, When};
use crate::plan::{self, Desired, Observed, Op, Plan, Rules};
use crate::report::{Change, ReportError, ScheduleCounts, Stage};
use crate::store::{AppliedSchedule, ScheduleWrite, Store};
use crate::temporal::{
    self, Created, Described, Listed, NOTE_DISABLED, NOTE_ENABLED, NOTE_PREFIX, TargetState,
    Temporal,
};
use futures_util::StreamExt;
use std::collections::{BTreeSet, HashMap};

/// The stage failed as a whole (nothing listed, or the bookkeeping not written).
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Temporal(#[from] temporal::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

/// What the stage did, for the report.
#[derive(Debug, Default)]
pub struct Outcome {
    pub counts: ScheduleCounts,
    pub changes: Vec<Change>,
    pub errors: Vec<ReportError>,
    pub plan: Option<Plan>,
    /// ListSchedules pages read (the no-op budget is ≤ 11 for 10,000 schedules).
    pub list_pages: usize,
}

/// One item's result, gathered from the concurrent workers.
#[derive(Debug, Default)]
struct ItemResult {
    counts: ScheduleCounts,
    changes: Vec<(&'static str, String)>,
    error: Option<ReportError>,
    applied: Option<(String, String, String)>,
    forgotten: Option<String>,
}

impl ItemResult {
    fn change(&mut self, action: &'static str, name: &str) {
        self.changes.push((action, name.to_string()));
    }

    fn fail(mut self, name: &str, message: String) -> ItemResult {
        self.error = Some(ReportError::new(Stage::Schedules, message).about(name));
        self
    }
}

/// Work for one schedule.
enum Task<'a> {
    /// Not listed (new, lagging in List, or deleted out of band).
    Ensure(&'a ScheduleRecord, Option<&'a AppliedSchedule>),
    /// Listed and ours, but its applied hash differs.
    Update(&'a ScheduleRecord),
    /// Listed, ours and unchanged: only the pause state may need a Patch.
    Pause(&'a ScheduleRecord, &'a Listed),
    /// An orphan of ours.
    Delete(&'a str, String),
}

struct Ctx<'a> {
    temporal: &'a Temporal,
    owner: &'a str,
    force: bool,
}

/// What the schedules stage observes: the listed schedules with our prefix, the pages
/// that took, and the hashes this sidecar last applied (ours only).
pub struct Observation {
    listed: Vec<Listed>,
    list_pages: usize,
    applied: HashMap<String, AppliedSchedule>,
}

/// Lists the schedules and reads the applied hashes, concurrently.
pub async fn observe(
    settings: &Settings,
    store: &Store,
    temporal: &Temporal,
) -> Result<Observation, StageError> {
    let prefix = settings.temporal.schedule_id_prefix.as_str();
    let (listing, bookkeeping) = tokio::join!(
        temporal.list(prefix),
        store.observe_schedules(temporal.namespace())
    );
    let (listed, list_pages) = listing?;
    let applied = bookkeeping?
        .into_iter()
        .filter(|a| a.owner == settings.owner)
        .map(|a| (a.id.clone(), a))
        .collect();
    Ok(Observation {
        listed,
        list_pages,
        applied,
    })
}

pub async fn run(
    settings: &Settings,
    store: &Store,
    temporal: &Temporal,
    run: &Run<'_>,
    observation: Result<Observation, StageError>,
) -> Result<Outcome, StageError> {
    let prefix = settings.temporal.schedule_id_prefix.as_str();
    let owner = settings.owner.as_str();
    let naming = ScheduleNaming {
        prefix,
        workflow_type: &settings.temporal.workflow_type,
        default_task_queue: &settings.temporal.task_queue,
    };
    let records = records::schedules(&run.src.set, &naming, run.now);
    let Observation {
        listed,
        list_pages,
        applied,
    } = observation?;
    let listed_by_name: HashMap<&str, &Listed> = listed
        .iter()
        .filter_map(|l| l.id.strip_prefix(prefix).map(|n| (n, l)))
        .collect();
    let observed: Vec<Observed> = listed
        .iter()
        .filter_map(|l| {
            let name = l.id.strip_prefix(prefix)?;
            let owner_of = l
                .owner
                .clone()
                .unwrap_or_else(|| "(no activity-sync memo)".to_string());
            let hash = applied
                .get(&l.id)
                .map(|a| a.hash.clone())
                .unwrap_or_default();
            Some(Observed {
                name: name.to_string(),
                owner: owner_of,
                hash,
                removed: false,
            })
        })
        .collect();
    // A one-shot whose time has passed keeps its schedule (it fired, or is about to):
    // it is desired as it is, never an orphan, never re-created.
    let with_record: BTreeSet<&str> = records.iter().map(|r| r.definition.as_str()).collect();
    let kept: Vec<(&str, &str)> = records::schedule_names(&run.src.set)
        .into_iter()
        .filter(|n| !with_record.contains(n))
        .filter_map(|n| {
            let o = observed.iter().find(|o| o.name == n)?;
            Some((n, o.hash.as_str()))
        })
        .collect();
    let mut desired: Vec<Desired> = records
        .iter()
        .map(|r| Desired {
            name: &r.definition,
            hash: &r.hash,
        })
        .collect();
    desired.extend(kept.iter().map(|(name, hash)| Desired { name, hash }));
    let rules = Rules {
        owner,
        invalid_documents: run.src.set.invalid,
        frozen: &run.src.set.frozen,
        max_fraction: settings.prune_max_fraction,
        force: run.req.force,
        noun: "schedules",
    };
    let plan = plan::plan(&desired, &observed, &rules);

    let by_name: HashMap<&str, &ScheduleRecord> =
        records.iter().map(|r| (r.definition.as_str(), r)).collect();
    let planned: HashMap<&str, Op> = plan.ops.iter().map(|(n, op)| (n.as_str(), *op)).collect();
    let conflicted: BTreeSet<&str> = plan.conflicts.iter().map(|c| c.name.as_str()).collect();
    let mut tasks = Vec::new();
    for (name, op) in &plan.ops {
        match op {
            Op::Create => {
                if let Some(r) = by_name.get(name.as_str()) {
                    tasks.push(Task::Ensure(r, applied.get(&r.id)));
                }
            }
            Op::Update | Op::Revive => {
                if let Some(r) = by_name.get(name.as_str()) {
                    tasks.push(Task::Update(r));
                }
            }
            Op::Remove => tasks.push(Task::Delete(name, format!("{prefix}{name}"))),
        }
    }
    let mut unchanged = 0;
    for r in &records {
        let name = r.definition.as_str();
        if planned.contains_key(name)
            || conflicted.contains(name)
            || run.src.set.frozen.contains(name)
        {
            continue;
        }
        match listed_by_name.get(name) {
            Some(l) if pause_patch(r, l, run.req.force).is_some() || held(r, l, run.req.force) => {
                tasks.push(Task::Pause(r, l))
            }
            Some(_) => unchanged += 1,
            None => {}
        }
    }
    unchanged += kept.len();

    let mut outcome = Outcome {
        list_pages,
        ..Outcome::default()
    };
    for c in &plan.conflicts {
        outcome.errors.push(
            ReportError::new(
                Stage::Schedules,
                format!(
                    "schedule `{prefix}{}` exists but belongs to `{}`, not `{owner}`; it was left alone",
                    c.name, c.owner
                ),
            )
            .about(&c.name),
        );
    }
    let ctx = Ctx {
        temporal,
        owner,
        force: run.req.force,
    };
    let results: Vec<ItemResult> = if run.req.dry_run {
        tasks.iter().map(|t| preview(t, run.req.force)).collect()
    } else {
        // Built up front (not lazily from a closure), which keeps the run's future Send
        // for every lifetime: the sidecar spawns it.
        let mut work = Vec::with_capacity(tasks.len());
        for t in &tasks {
            work.push(apply(&ctx, t));
        }
        futures_util::stream::iter(work)
            .buffer_unordered(settings.temporal.concurrency)
            .collect()
            .await
    };

    let mut writes = Vec::new();
    for r in &results {
        add(&mut outcome.counts, &r.counts);
        for (action, name) in &r.changes {
            outcome.changes.push(Change {
                kind: "schedule",
                name: name.clone(),
                action,
            });
        }
        if let Some(e) = &r.error {
            outcome.errors.push(e.clone());
        }
        if let Some((id, definition, hash)) = &r.applied {
            writes.push(ScheduleWrite::Applied {
                id,
                definition,
                hash,
            });
        }
        if let Some(id) = &r.forgotten {
            writes.push(ScheduleWrite::Forget { id });
        }
    }
    outcome.counts.unchanged += unchanged;
    outcome
        .changes
        .sort_by(|a, b| (&a.name, a.action).cmp(&(&b.name, b.action)));
    if !run.req.dry_run {
        store
            .apply_schedules(owner, temporal.namespace(), run.now, &writes)
            .await?;
    }
    outcome.plan = Some(plan);
    Ok(outcome)
}

fn add(total: &mut ScheduleCounts, c: &ScheduleCounts) {
    total.created += c.created;
    total.updated += c.updated;
    total.paused += c.paused;
    total.unpaused += c.unpaused;
    total.deleted += c.deleted;
    total.held += c.held;
    total.unchanged += c.unchanged;
}

fn paused_by_other(paused: bool, notes: &str) -> bool {
    paused && !notes.starts_with(NOTE_PREFIX)
}

/// An enabled definition whose schedule someone else paused stays paused (unless force).
fn held(r: &ScheduleRecord, l: &Listed, force: bool) -> bool {
    r.enabled && paused_by_other(l.paused, &l.notes) && !force
}

/// The Patch an unchanged schedule needs: `Some(true)` pause, `Some(false)` unpause.
fn pause_patch(r: &ScheduleRecord, l: &Listed, force: bool) -> Option<bool> {
    match (r.enabled, l.paused) {
        (false, false) => Some(true),
        (true, true) if !paused_by_other(l.paused, &l.notes) || force => Some(false),
        _ => None,
    }
}

/// The state an Update should leave a described schedule in.
fn target(r: &ScheduleRecord, d: &Described, force: bool) -> (TargetState, bool) {
    let rearm_once = matches!(r.when, When::Once { .. });
    let (paused, notes, held) = if !r.enabled {
        if d.paused_by_other() {
            (true, d.notes.clone(), false)
        } else {
            (true, NOTE_DISABLED.to_string(), false)
        }
    } else if d.paused_by_other() && !force {
        (true, d.notes.clone(), true)
    } else {
        (false, String::new(), false)
    };
    (
        TargetState {
            paused,
            notes,
            rearm_once,
        },
        held,
    )
}

/// What a dry run reports for a task, without calling Temporal.
fn preview(task: &Task<'_>, force: bool) -> ItemResult {
    let mut out = ItemResult::default();
    match task {
        Task::Ensure(r, _) => {
            out.counts.created += 1;
            out.change("create", &r.definition);
        }
        Task::Update(r) => {
            out.counts.updated += 1;
            out.change("update", &r.definition);
        }
        Task::Pause(r, l) => match pause_patch(r, l, force) {
            Some(true) => {
                out.counts.paused += 1;
                out.change("pause", &r.definition);
            }
            Some(false) => {
                out.counts.unpaused += 1;
                out.change("unpause", &r.definition);
            }
            None => out.counts.held += 1,
        },
        Task::Delete(name, _) => {
            out.counts.deleted += 1;
            out.change("delete", name);
        }
    }
    out
}

async fn apply(ctx: &Ctx<'_>, task: &Task<'_>) -> ItemResult {
    match task {
        Task::Ensure(r, applied) => ensure(ctx, r, *applied).await,
        Task::Update(r) => match ctx.temporal.describe(&r.id).await {
            Ok(Some(d)) => reconcile(ctx, r, &d, false).await,
            Ok(None) => create(ctx, r).await,
            Err(e) => ItemResult::default()
                .fail(&r.definition, format!("describing `{}` failed: {e}", r.id)),
        },
        Task::Pause(r, l) => {
            let mut out = ItemResult::default();
            match pause_patch(r, l, ctx.force) {
                Some(pause) => {
                    let note = if pause { NOTE_DISABLED } else { NOTE_ENABLED };
                    match ctx.temporal.set_paused(&r.id, pause, note).await {
                        Ok(()) if pause => {
                            out.counts.paused += 1;
                            out.change("pause", &r.definition);
                        }
                        Ok(()) => {
                            out.counts.unpaused += 1;
                            out.change("unpause", &r.definition);
                        }
                        Err(e) => {
                            return out.fail(
                                &r.definition,
                                format!("pausing or unpausing `{}` failed: {e}", r.id),
                            );
                        }
                    }
                }
                None => out.counts.held += 1,
            }
            out
        }
        Task::Delete(name, id) => {
            let mut out = ItemResult::default();
            match ctx.temporal.delete(id).await {
                Ok(()) => {
                    out.counts.deleted += 1;
                    out.change("delete", name);
                    out.forgotten = Some(id.clone());
                    out
                }
                Err(e) => out.fail(name, format!("deleting orphan `{id}` failed: {e}")),
            }
        }
    }
}

/// A desired schedule that List did not show: it may be new, lagging in List, or
/// deleted out of band. When we applied it before, Describe tells which.
async fn ensure(
    ctx: &Ctx<'_>,
    r: &ScheduleRecord,
    applied: Option<&AppliedSchedule>,
) -> ItemResult {
    if let Some(a) = applied {
        match ctx.temporal.describe(&r.id).await {
            Ok(Some(d)) => return reconcile(ctx, r, &d, a.hash == r.hash).await,
            Ok(None) => {}
            Err(e) => {
                return ItemResult::default()
                    .fail(&r.definition, format!("describing `{}` failed: {e}", r.id));
            }
        }
    }
    create(ctx, r).await
}

async fn create(ctx: &Ctx<'_>, r: &ScheduleRecord) -> ItemResult {
    let mut out = ItemResult::default();
    match ctx.temporal.create(r).await {
        Ok(Created::Created) => {
            out.counts.created += 1;
            out.change("create", &r.definition);
            out.applied = Some((r.id.clone(), r.definition.clone(), r.hash.clone()));
            out
        }
        // Taken: ours from an earlier run that List does not show yet, or someone else's.
        Ok(Created::AlreadyExists) => match ctx.temporal.describe(&r.id).await {
            Ok(Some(d)) => reconcile(ctx, r, &d, false).await,
            Ok(None) => out.fail(
                &r.definition,
                format!(
                    "`{}` exists and vanished while being reconciled; the next run retries",
                    r.id
                ),
            ),
            Err(e) => out.fail(&r.definition, format!("describing `{}` failed: {e}", r.id)),
        },
        Err(e) => out.fail(&r.definition, format!("creating `{}` failed: {e}", r.id)),
    }
}

/// Brings a described schedule to the record, unless it is someone else's.
/// `up_to_date` says its spec is known to match already (only the state may differ).
async fn reconcile(
    ctx: &Ctx<'_>,
    r: &ScheduleRecord,
    d: &Described,
    up_to_date: bool,
) -> ItemResult {
    let mut out = ItemResult::default();
    if d.owner.as_deref() != Some(ctx.owner) {
        let holder = d.owner.as_deref().unwrap_or("(no activity-sync memo)");
        return out.fail(
            &r.definition,
            format!(
                "schedule `{}` exists but belongs to `{holder}`, not `{}`; it was left alone",
                r.id, ctx.owner
            ),
        );
    }
    let (target, held) = target(r, d, ctx.force);
    if up_to_date && target.paused == d.paused && target.notes == d.notes {
        out.counts.unchanged += 1;
        return out;
    }
    if let Err(e) = ctx.temporal.update(r, d, &target).await {
        return out.fail(&r.definition, format!("updating `{}` failed: {e}", r.id));
    }
    out.counts.updated += 1;
    out.change("update", &r.definition);
    if target.paused && !d.paused {
        out.counts.paused += 1;
        out.change("pause", &r.definition);
    }
    if !target.paused && d.paused {
        out.counts.unpaused += 1;
        out.change("unpause", &r.definition);
    }
    if held {
        out.counts.held += 1;
    }
    out.applied = Some((r.id.clone(), r.definition.clone(), r.hash.clone()));
    out
}
