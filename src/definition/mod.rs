//! Definition files: raw YAML documents → validated domain types plus diagnostics.
//!
//! This module is pure. It does no I/O and imports nothing from tokio, sqlx, tonic or
//! axum: [`parse_file`] takes a file's name and bytes, [`DefinitionSet::assemble`] takes
//! every parsed file and applies the rules that span files (unique names, event
//! references). Reading the directory is `source`'s job.

pub mod cron;
mod diagnostic;
mod document;
pub mod duration;
pub mod schema;

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub use diagnostic::{Diagnostic, Pos, Severity};
pub use document::{ParsedFile, parse_file};

/// The only `apiVersion` this build understands.
pub const API_VERSION: &str = "activity-core/v1";
/// Largest definition file read (the Kubernetes ConfigMap limit).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A validated ActivityDefinition. Serialising it gives the canonical form whose hash
/// decides whether the stored row must change, so everything here is desired state and
/// nothing is incidental (the file it came from is kept in [`Origin`], outside it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActivityDefinition {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub enabled: bool,
    pub activity: String,
    /// The task queue named in the file; `None` means the configured default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
    pub trigger: Trigger,
    pub schedule: SchedulePolicy,
    pub execution: Execution,
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Cron {
        expression: String,
        /// The `timezone` field; a `CRON_TZ=` prefix stays inside `expression`.
        #[serde(skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
    },
    Event {
        event: String,
    },
    At {
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    #[default]
    Skip,
    BufferOne,
    BufferAll,
    CancelOther,
    TerminateOther,
    AllowAll,
}

impl Overlap {
    pub const NAMES: [&'static str; 6] = [
        "skip",
        "buffer_one",
        "buffer_all",
        "cancel_other",
        "terminate_other",
        "allow_all",
    ];

    pub fn from_name(name: &str) -> Option<Overlap> {
        Some(match name {
            "skip" => Overlap::Skip,
            "buffer_one" => Overlap::BufferOne,
            "buffer_all" => Overlap::BufferAll,
            "cancel_other" => Overlap::CancelOther,
            "terminate_other" => Overlap::TerminateOther,
            "allow_all" => Overlap::AllowAll,
            _ => return None,
        })
    }
}

/// How Temporal should run the schedule (cron and `at` triggers only).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SchedulePolicy {
    pub overlap: Overlap,
    #[serde(with = "opt_secs", skip_serializing_if = "Option::is_none")]
    pub catchup_window: Option<Duration>,
    #[serde(with = "opt_secs", skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Duration>,
    pub pause_on_failure: bool,
}

/// Stored for the worker; never part of the Temporal schedule.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Execution {
    #[serde(with = "opt_secs", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
}

/// Temporal's retry policy shape, as the worker passes it to the activity.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_attempts: Option<u32>,
    #[serde(with = "opt_secs", skip_serializing_if = "Option::is_none")]
    pub initial_interval: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_coefficient: Option<f64>,
    #[serde(with = "opt_secs", skip_serializing_if = "Option::is_none")]
    pub maximum_interval: Option<Duration>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub non_retryable_error_types: Vec<String>,
}

/// A validated EventType.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventType {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The subject the event router listens on; defaults to the name.
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    #[serde(skip)]
    pub origin: Origin,
}

/// Where an item was defined.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    pub file: String,
    pub pos: Pos,
}

/// One valid document.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    Activity(Box<ActivityDefinition>),
    EventType(EventType),
}

impl Document {
    pub fn name(&self) -> &str {
        match self {
            Document::Activity(d) => &d.name,
            Document::EventType(e) => &e.name,
        }
    }
    fn origin(&self) -> &Origin {
        match self {
            Document::Activity(d) => &d.origin,
            Document::EventType(e) => &e.origin,
        }
    }
}

/// Every file of a source, checked together: what may be applied, what must be held
/// back, and what to tell the author.
#[derive(Debug, Clone, Default)]
pub struct DefinitionSet {
    /// Valid definitions from files without errors and with unique names, by name.
    pub definitions: Vec<ActivityDefinition>,
    /// Valid event types from files without errors and with unique names, by name.
    pub event_types: Vec<EventType>,
    /// Names that appear in invalid files or more than once: their stored state must
    /// be left exactly as it is (neither updated nor removed).
    pub frozen: BTreeSet<String>,
    /// Event names that triggers use but no EventType declares.
    pub undeclared_events: BTreeSet<String>,
    pub diagnostics: Vec<Diagnostic>,
    pub files: usize,
    pub documents: usize,
    /// Documents that failed (a file that could not be read or parsed counts once).
    pub invalid: usize,
}

impl DefinitionSet {
    /// Applies the rules that span files. `files` may come in any order; the result is
    /// sorted by name so that everything downstream is deterministic.
    pub fn assemble(files: Vec<ParsedFile>) -> DefinitionSet {
        let mut set = DefinitionSet {
            files: files.len(),
            ..DefinitionSet::default()
        };
        // Each name's occurrences across all files, valid documents only: a name seen
        // twice is an error on every copy, and none of the copies is applied.
        let mut occurrences: BTreeMap<(bool, String), Vec<Origin>> = BTreeMap::new();
        for file in &files {
            for doc in &file.documents {
                let is_event = matches!(doc, Document::EventType(_));
                occurrences
                    .entry((is_event, doc.name().to_string()))
                    .or_default()
                    .push(doc.origin().clone());
            }
            for name in &file.names_in_invalid_documents {
                set.frozen.insert(name.clone());
            }
        }
        for ((is_event, name), origins) in &occurrences {
            if origins.len() < 2 {
                continue;
            }
            let kind = if *is_event {
                "EventType"
            } else {
                "ActivityDefinition"
            };
            for origin in origins {
                let others: Vec<String> = origins
                    .iter()
                    .filter(|o| *o != origin)
                    .map(|o| format!("{}:{}", o.file, o.pos.line))
                    .collect();
                set.diagnostics.push(
                    Diagnostic::error(
                        &origin.file,
                        origin.pos,
                        format!(
                            "duplicate {kind} name `{name}` (also defined at {}); none of the copies is applied",
                            others.join(", ")
                        ),
                    )
                    .at_field("metadata.name"),
                );
            }
            set.frozen.insert(name.clone());
        }

        let mut duplicate_documents = 0;
        for file in files {
            set.documents += file.documents.len() + file.invalid_documents;
            set.invalid += file.invalid_documents;
            set.diagnostics.extend(file.diagnostics);
            let file_is_valid = file.invalid_documents == 0;
            for doc in file.documents {
                let is_event = matches!(doc, Document::EventType(_));
                let duplicated = occurrences
                    .get(&(is_event, doc.name().to_string()))
                    .is_some_and(|o| o.len() > 1);
                if duplicated {
                    duplicate_documents += 1;
                    continue;
                }
                if !file_is_valid {
                    // A file with any invalid document freezes all of its items.
                    set.frozen.insert(doc.name().to_string());
                    continue;
                }
                match doc {
                    Document::Activity(d) => set.definitions.push(*d),
                    Document::EventType(e) => set.event_types.push(e),
                }
            }
        }
        set.invalid += duplicate_documents;

        let declared: BTreeSet<&str> = set.event_types.iter().map(|e| e.name.as_str()).collect();
        let frozen = &set.frozen;
        let mut warnings = Vec::new();
        for d in &set.definitions {
            if let Trigger::Event { event } = &d.trigger
                && !declared.contains(event.as_str())
                && !frozen.contains(event)
            {
                set.undeclared_events.insert(event.clone());
                warnings.push(
                        Diagnostic::warning(
                            &d.origin.file,
                            d.origin.pos,
                            format!(
                                "event `{event}` is not declared by any EventType document; it is registered without a description"
                            ),
                        )
                        .at_field("spec.trigger.event"),
                    );
            }
        }
        set.diagnostics.extend(warnings);
        set.definitions.sort_by(|a, b| a.name.cmp(&b.name));
        set.event_types.sort_by(|a, b| a.name.cmp(&b.name));
        set.diagnostics.sort_by(|a, b| {
            (&a.file, a.line, a.column, a.severity).cmp(&(&b.file, b.line, b.column, b.severity))
        });
        set
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }
}

/// Checks a metadata name (or an event name) against
/// `^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$`.
pub fn check_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let inner = |b: u8| edge(b) || matches!(b, b'.' | b'_' | b'-');
    if name.is_empty() {
        return Err("name is empty".into());
    }
    if bytes.len() > 128 {
        return Err(format!(
            "name is {} characters long; the maximum is 128",
            name.chars().count()
        ));
    }
    if !edge(bytes[0]) || !edge(bytes[bytes.len() - 1]) || !bytes.iter().all(|b| inner(*b)) {
        return Err(format!(
            "`{name}` is not a valid name: use lower-case letters, digits, `.`, `_` and `-`, starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Serialises an optional duration as whole seconds.
mod opt_secs {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(d.as_secs()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "a1",
            "coulomb-usage-daily",
            "invoice.created",
            "a_b",
            &"a".repeat(128),
        ] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "A",
            "Coulomb",
            "-a",
            "a-",
            ".a",
            "a b",
            "ä",
            &"a".repeat(129),
            &"a".repeat(200),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
