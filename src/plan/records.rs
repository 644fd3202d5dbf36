//! Desired rows: validated definitions and event types turned into exactly what the
//! database should hold, each with the hash of its content. An unchanged hash means
//! "nothing to write", which is what makes a no-op sync free.

use crate::definition::{ActivityDefinition, DefinitionSet, Trigger};
use crate::source::hex;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One `activity_definitions` row (minus owner and timestamps, which the store adds).
#[derive(Debug, Clone, PartialEq)]
pub struct DefinitionRecord {
    pub name: String,
    pub enabled: bool,
    pub activity: String,
    /// Resolved: the file's `taskQueue` or the configured default.
    pub task_queue: String,
    pub trigger_type: &'static str,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub event: Option<String>,
    pub fire_at: Option<DateTime<Utc>>,
    /// JSON text.
    pub input: Option<String>,
    /// JSON text: `{"timeout": seconds, "retry": {...}}`.
    pub execution: String,
    pub description: Option<String>,
    /// JSON text: string → string.
    pub labels: String,
    /// JSON text: the whole canonical definition, which `hash` is computed over.
    pub spec: String,
    pub hash: String,
}

/// One `activity_event_types` row.
#[derive(Debug, Clone, PartialEq)]
pub struct EventTypeRecord {
    pub name: String,
    pub subject: String,
    pub description: Option<String>,
    /// JSON text.
    pub schema: Option<String>,
    /// false for an event name that only a trigger uses.
    pub declared: bool,
    pub hash: String,
}

/// `sha256:<hex>` of `bytes`.
pub fn hash(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn json(value: &impl serde::Serialize) -> String {
    // Serialising plain data (maps with string keys) cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// The rows for every applicable definition, in name order.
pub fn definitions(set: &DefinitionSet, default_task_queue: &str) -> Vec<DefinitionRecord> {
    set.definitions
        .iter()
        .map(|d| definition(d, default_task_queue))
        .collect()
}

fn definition(d: &ActivityDefinition, default_task_queue: &str) -> DefinitionRecord {
    let task_queue = d
        .task_queue
        .clone()
        .unwrap_or_else(|| default_task_queue.to_string());
    let mut spec = serde_json::to_value(d).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut spec {
        map.insert("task_queue".into(), Value::String(task_queue.clone()));
    }
    let spec = json(&spec);
    let (trigger_type, cron, timezone, event, fire_at) = match &d.trigger {
        Trigger::Cron {
            expression,
            timezone,
        } => (
            "cron",
            Some(expression.clone()),
            timezone.clone(),
            None,
            None,
        ),
        Trigger::Event { event } => ("event", None, None, Some(event.clone()), None),
        Trigger::At { at } => ("at", None, None, None, Some(*at)),
    };
    DefinitionRecord {
        name: d.name.clone(),
        enabled: d.enabled,
        activity: d.activity.clone(),
        task_queue,
        trigger_type,
        cron,
        timezone,
        event,
        fire_at,
        input: d.input.as_ref().map(json),
        execution: json(&d.execution),
        description: d.description.clone(),
        labels: json(&d.labels),
        hash: hash(spec.as_bytes()),
        spec,
    }
}

/// The rows for every declared event type plus every event name a trigger uses but no
/// EventType declares (registered with no description), in name order.
pub fn event_types(set: &DefinitionSet) -> Vec<EventTypeRecord> {
    let mut out: Vec<EventTypeRecord> = set
        .event_types
        .iter()
        .map(|e| {
            let schema = e.schema.as_ref().map(json);
            let content = json(&serde_json::json!({
                "subject": e.subject, "description": e.description, "schema": e.schema, "declared": true,
            }));
            EventTypeRecord {
                name: e.name.clone(),
                subject: e.subject.clone(),
                description: e.description.clone(),
                schema,
                declared: true,
                hash: hash(content.as_bytes()),
            }
        })
        .collect();
    for name in &set.undeclared_events {
        let content = json(&serde_json::json!({"subject": name, "declared": false}));
        out.push(EventTypeRecord {
            name: name.clone(),
            subject: name.clone(),
            description: None,
            schema: None,
            declared: false,
            hash: hash(content.as_bytes()),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// What a definition's Temporal schedule should be. The temporal adapter turns it into
/// the RPC's messages; `hash` covers every field, so any change of the desired schedule
/// (including `enabled`) is noticed without asking Temporal.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScheduleRecord {
    /// `<prefix><definition name>`; also the workflow ID of the started workflows.
    pub id: String,
    pub definition: String,
    pub when: When,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter_secs: Option<u64>,
    pub overlap: crate::definition::Overlap,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catchup_window_secs: Option<u64>,
    pub pause_on_failure: bool,
    pub workflow_type: String,
    pub task_queue: String,
    pub enabled: bool,
    #[serde(skip)]
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    Cron {
        expression: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
    },
    /// Fires once; the calendar is pinned to this instant (UTC).
    Once { at: DateTime<Utc> },
}

/// Schedule naming and the worker's workflow, from the configuration.
#[derive(Debug, Clone)]
pub struct ScheduleNaming<'a> {
    pub prefix: &'a str,
    pub workflow_type: &'a str,
    pub default_task_queue: &'a str,
}

/// The schedules the source asks for: every cron definition, and every `at`
/// definition whose time is still ahead. Event-triggered definitions never have one.
pub fn schedules(
    set: &DefinitionSet,
    naming: &ScheduleNaming<'_>,
    now: DateTime<Utc>,
) -> Vec<ScheduleRecord> {
    set.definitions
        .iter()
        .filter_map(|d| {
            let when = match &d.trigger {
                Trigger::Cron {
                    expression,
                    timezone,
                } => When::Cron {
                    expression: expression.clone(),
                    timezone: timezone.clone(),
                },
                Trigger::At { at } if *at > now => When::Once { at: *at },
                Trigger::At { .. } | Trigger::Event { .. } => return None,
            };
            let mut record = ScheduleRecord {
                id: format!("{}{}", naming.prefix, d.name),
                definition: d.name.clone(),
                when,
                jitter_secs: d.schedule.jitter.map(|j| j.as_secs()),
                overlap: d.schedule.overlap,
                catchup_window_secs: d.schedule.catchup_window.map(|c| c.as_secs()),
                pause_on_failure: d.schedule.pause_on_failure,
                workflow_type: naming.workflow_type.to_string(),
                task_queue: d
                    .task_queue
                    .clone()
                    .unwrap_or_else(|| naming.default_task_queue.to_string()),
                enabled: d.enabled,
                hash: String::new(),
            };
            record.hash = hash(json(&record).as_bytes());
            Some(record)
        })
        .collect()
}

/// Names of definitions that own a schedule slot: cron and `at` definitions, past
/// `at` times included (a one-shot that fired is not an orphan).
pub fn schedule_names(set: &DefinitionSet) -> Vec<&str> {
    set.definitions
        .iter()
        .filter(|d| matches!(d.trigger, Trigger::Cron { .. } | Trigger::At { .. }))
        .map(|d| d.name.as_str())
        .collect()
}
