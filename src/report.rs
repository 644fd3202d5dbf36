//! The run report: what one sync run did, as JSON (product.md §4), with bounded
//! `errors` and `changes` so a pathological source cannot produce a huge response.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Startup,
    Admin,
    Watch,
    Interval,
    Cli,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Admin => "admin",
            Trigger::Watch => "watch",
            Trigger::Interval => "interval",
            Trigger::Cli => "cli",
        }
    }
}

/// Which part of a run an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Source,
    Lock,
    Definitions,
    EventTypes,
    Schedules,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Source => "source",
            Stage::Lock => "lock",
            Stage::Definitions => "definitions",
            Stage::EventTypes => "event_types",
            Stage::Schedules => "schedules",
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReportError {
    pub stage: Stage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
    /// The item the error is about, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub message: String,
}

impl ReportError {
    pub fn new(stage: Stage, message: impl Into<String>) -> Self {
        ReportError {
            stage,
            file: None,
            line: None,
            column: None,
            name: None,
            message: message.into(),
        }
    }

    pub fn about(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Change {
    /// `definition`, `event_type` or `schedule`.
    pub kind: &'static str,
    pub name: String,
    /// `create`, `revive`, `update`, `remove`, …
    pub action: &'static str,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SourceSummary {
    pub revision: Option<String>,
    pub files: usize,
    pub documents: usize,
    pub invalid: usize,
}

/// Counts for a database stage. A revival counts as `created`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RowCounts {
    pub created: usize,
    pub updated: usize,
    pub removed: usize,
    pub unchanged: usize,
}

/// Counts for the schedules stage. An update that also pauses counts in both.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ScheduleCounts {
    pub created: usize,
    pub updated: usize,
    pub paused: usize,
    pub unpaused: usize,
    pub deleted: usize,
    /// Paused by someone else and left paused (rerun with force to unpause).
    pub held: usize,
    pub unchanged: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run_id: String,
    pub trigger: Trigger,
    pub dry_run: bool,
    pub ok: bool,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub source: SourceSummary,
    /// `null` when the stage was not requested.
    pub definitions: Option<RowCounts>,
    pub event_types: Option<RowCounts>,
    pub schedules: Option<ScheduleCounts>,
    /// `ok`, `forced: <why>` or `suspended: <why>` (per stage, joined with `; `).
    pub pruning: String,
    pub changes: Vec<Change>,
    pub changes_truncated: usize,
    pub errors: Vec<ReportError>,
    pub errors_truncated: usize,
    /// Source warnings (bounded like errors); they never make a run fail.
    pub warnings: Vec<ReportError>,
    pub warnings_truncated: usize,
    /// How long each stage took (for the duration histogram).
    #[serde(skip)]
    pub stage_durations: Vec<(Stage, std::time::Duration)>,
}

impl Report {
    pub fn new(
        run_id: String,
        trigger: Trigger,
        dry_run: bool,
        started_at: DateTime<Utc>,
    ) -> Report {
        Report {
            run_id,
            trigger,
            dry_run,
            ok: false,
            started_at,
            duration_ms: 0,
            source: SourceSummary::default(),
            definitions: None,
            event_types: None,
            schedules: None,
            pruning: "ok".into(),
            changes: Vec::new(),
            changes_truncated: 0,
            errors: Vec::new(),
            errors_truncated: 0,
            warnings: Vec::new(),
            warnings_truncated: 0,
            stage_durations: Vec::new(),
        }
    }

    /// Every error counted, kept or truncated.
    pub fn error_count(&self) -> usize {
        self.errors.len() + self.errors_truncated
    }

    /// Whether the run changed (or, dry, would change) anything.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty() || self.changes_truncated > 0
    }
}

/// Builds a report while keeping its lists within `max` entries each.
pub struct Bounded<'a> {
    pub report: &'a mut Report,
    pub max: usize,
}

impl Bounded<'_> {
    pub fn error(&mut self, e: ReportError) {
        if self.report.errors.len() < self.max {
            self.report.errors.push(e);
        } else {
            self.report.errors_truncated += 1;
        }
    }

    pub fn warning(&mut self, e: ReportError) {
        if self.report.warnings.len() < self.max {
            self.report.warnings.push(e);
        } else {
            self.report.warnings_truncated += 1;
        }
    }

    pub fn change(&mut self, c: Change) {
        if self.report.changes.len() < self.max {
            self.report.changes.push(c);
        } else {
            self.report.changes_truncated += 1;
        }
    }
}
