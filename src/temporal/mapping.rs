//! Between our records and Temporal's messages. The only place that builds or reads
//! schedule protos.

use super::{Described, Listed};
use crate::config::TemporalSettings;
use crate::definition::Overlap;
use crate::plan::records::{ScheduleRecord, When};
use chrono::{Datelike, Timelike};
use std::collections::HashMap;
use temporalio_client::{ClientTlsOptions, TlsOptions};
use temporalio_common::protos::temporal::api::common::v1::{Memo, Payload, Payloads, WorkflowType};
use temporalio_common::protos::temporal::api::schedule::v1::{
    Range, Schedule, ScheduleAction, ScheduleListEntry, SchedulePolicies, ScheduleSpec,
    ScheduleState, StructuredCalendarSpec, schedule_action,
};
use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_common::protos::temporal::api::workflow::v1::NewWorkflowExecutionInfo;
use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeScheduleResponse;

/// Memo key naming the sidecar (its owner) that manages a schedule.
pub const MEMO_OWNER: &str = "activity-sync/owner";
/// Memo key naming the definition a schedule belongs to.
pub const MEMO_DEFINITION: &str = "activity-sync/definition";

fn json_payload(value: &serde_json::Value) -> Payload {
    Payload {
        metadata: HashMap::from([("encoding".to_string(), b"json/plain".to_vec())]),
        data: serde_json::to_vec(value).unwrap_or_default(),
        ..Payload::default()
    }
}

fn memo_string(memo: Option<&Memo>, key: &str) -> Option<String> {
    let payload = memo?.fields.get(key)?;
    serde_json::from_slice::<String>(&payload.data).ok()
}

pub fn memo(owner: &str, definition: &str) -> Memo {
    Memo {
        fields: HashMap::from([
            (
                MEMO_OWNER.to_string(),
                json_payload(&serde_json::json!(owner)),
            ),
            (
                MEMO_DEFINITION.to_string(),
                json_payload(&serde_json::json!(definition)),
            ),
        ]),
    }
}

fn seconds(s: u64) -> prost_wkt_types::Duration {
    prost_wkt_types::Duration {
        seconds: s as i64,
        nanos: 0,
    }
}

fn overlap(o: Overlap) -> i32 {
    match o {
        Overlap::Skip => 1,
        Overlap::BufferOne => 2,
        Overlap::BufferAll => 3,
        Overlap::CancelOther => 4,
        Overlap::TerminateOther => 5,
        Overlap::AllowAll => 6,
    }
}

fn pinned(v: u32) -> Vec<Range> {
    vec![Range {
        start: v as i32,
        end: v as i32,
        step: 1,
    }]
}

fn spec(record: &ScheduleRecord) -> ScheduleSpec {
    let mut spec = ScheduleSpec {
        jitter: record.jitter_secs.map(seconds),
        ..ScheduleSpec::default()
    };
    match &record.when {
        When::Cron {
            expression,
            timezone,
        } => {
            spec.cron_string = vec![expression.clone()];
            spec.timezone_name = timezone.clone().unwrap_or_default();
        }
        When::Once { at } => {
            // Every field pinned, the year included, in UTC (temporal-schedules.md §6).
            spec.structured_calendar = vec![StructuredCalendarSpec {
                second: pinned(at.second()),
                minute: pinned(at.minute()),
                hour: pinned(at.hour()),
                day_of_month: pinned(at.day()),
                month: pinned(at.month()),
                year: pinned(at.year() as u32),
                day_of_week: vec![Range {
                    start: 0,
                    end: 6,
                    step: 1,
                }],
                comment: String::new(),
            }];
        }
    }
    spec
}

/// The state a new schedule starts in: one action only for a one-shot.
pub fn initial_state(record: &ScheduleRecord) -> ScheduleState {
    match record.when {
        When::Once { .. } => ScheduleState {
            limited_actions: true,
            remaining_actions: 1,
            ..ScheduleState::default()
        },
        When::Cron { .. } => ScheduleState::default(),
    }
}

pub fn schedule(record: &ScheduleRecord, state: ScheduleState) -> Schedule {
    let action = NewWorkflowExecutionInfo {
        workflow_id: record.id.clone(),
        workflow_type: Some(WorkflowType {
            name: record.workflow_type.clone(),
        }),
        task_queue: Some(TaskQueue {
            name: record.task_queue.clone(),
            kind: 1,
            ..TaskQueue::default()
        }),
        input: Some(Payloads {
            payloads: vec![json_payload(
                &serde_json::json!({"definition": record.definition}),
            )],
        }),
        ..NewWorkflowExecutionInfo::default()
    };
    Schedule {
        spec: Some(spec(record)),
        action: Some(ScheduleAction {
            action: Some(schedule_action::Action::StartWorkflow(action)),
        }),
        policies: Some(SchedulePolicies {
            overlap_policy: overlap(record.overlap),
            catchup_window: record.catchup_window_secs.map(seconds),
            pause_on_failure: record.pause_on_failure,
            keep_original_workflow_id: false,
        }),
        state: Some(state),
    }
}

pub fn listed(entry: ScheduleListEntry) -> Listed {
    let info = entry.info.unwrap_or_default();
    Listed {
        owner: memo_string(entry.memo.as_ref(), MEMO_OWNER),
        id: entry.schedule_id,
        paused: info.paused,
        notes: info.notes,
    }
}

pub fn described(resp: DescribeScheduleResponse) -> Described {
    let state = resp.schedule.and_then(|s| s.state).unwrap_or_default();
    Described {
        owner: memo_string(resp.memo.as_ref(), MEMO_OWNER),
        paused: state.paused,
        notes: state.notes,
        limited_actions: state.limited_actions,
        remaining_actions: state.remaining_actions,
        conflict_token: resp.conflict_token,
    }
}

/// TLS when the address is https://, a CA or client certificate is configured, or an
/// API key is used (Temporal Cloud); plain HTTP/2 otherwise.
pub fn tls_options(s: &TemporalSettings) -> Result<Option<TlsOptions>, String> {
    let wants_tls = s.address.starts_with("https://")
        || s.api_key.is_some()
        || s.tls_ca_file.is_some()
        || s.tls_cert_file.is_some();
    if !wants_tls {
        return Ok(None);
    }
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let ca = s.tls_ca_file.as_deref().map(read).transpose()?;
    let client = match (&s.tls_cert_file, &s.tls_key_file) {
        (Some(cert), Some(key)) => Some(
            ClientTlsOptions::builder()
                .client_cert(read(cert)?)
                .client_private_key(read(key)?)
                .build(),
        ),
        _ => None,
    };
    Ok(Some(
        TlsOptions::builder()
            .maybe_server_root_ca_cert(ca)
            .maybe_client_tls_options(client)
            .build(),
    ))
}
