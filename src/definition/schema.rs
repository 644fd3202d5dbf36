//! The JSON Schema of definition documents, for editors (yaml-language-server) and for
//! customer tooling. It mirrors the rules in `document.rs`; rules that a schema cannot
//! express (the cron dialect, unique names across files, time zones) stay with
//! `activity-sync validate`.

use super::{API_VERSION, Overlap};
use serde_json::{Value, json};

const NAME_PATTERN: &str = "^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$";
const DURATION_PATTERN: &str = "^([0-9]+[smhd])+$";

/// Builds the schema (draft 2020-12).
pub fn json_schema() -> Value {
    let duration =
        json!({"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "5m", "1h30m"]});
    let metadata = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": NAME_PATTERN, "description": "Unique across the whole definitions directory."},
            "description": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}}
        }
    });
    let trigger = json!({
        "type": "object",
        "additionalProperties": false,
        "description": "Exactly one of cron, event or at.",
        "properties": {
            "cron": {"type": "string", "description": "Temporal cron dialect: 5, 6 (…year) or 7 (second…year) fields, CRON_TZ= prefix, @every, @daily…; no ? L W #."},
            "timezone": {"type": "string", "description": "IANA time zone for a cron trigger; default UTC."},
            "event": {"type": "string", "pattern": NAME_PATTERN},
            "at": {"type": "string", "format": "date-time", "description": "RFC 3339 with an offset; fires once."}
        },
        "oneOf": [
            {"required": ["cron"], "not": {"anyOf": [{"required": ["event"]}, {"required": ["at"]}]}},
            {"required": ["event"], "not": {"anyOf": [{"required": ["cron"]}, {"required": ["at"]}, {"required": ["timezone"]}]}},
            {"required": ["at"], "not": {"anyOf": [{"required": ["cron"]}, {"required": ["event"]}, {"required": ["timezone"]}]}}
        ]
    });
    let activity = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"const": "ActivityDefinition"},
            "metadata": metadata,
            "spec": {
                "type": "object",
                "additionalProperties": false,
                "required": ["activity", "trigger"],
                "properties": {
                    "enabled": {"type": "boolean", "default": true},
                    "activity": {"type": "string", "minLength": 1},
                    "taskQueue": {"type": "string", "minLength": 1},
                    "input": {},
                    "trigger": trigger,
                    "schedule": {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "overlap": {"enum": Overlap::NAMES},
                            "catchupWindow": duration,
                            "jitter": duration,
                            "pauseOnFailure": {"type": "boolean"}
                        }
                    },
                    "execution": {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "timeout": duration,
                            "retry": {
                                "type": "object",
                                "additionalProperties": false,
                                "properties": {
                                    "maximumAttempts": {"type": "integer", "minimum": 0},
                                    "initialInterval": duration,
                                    "backoffCoefficient": {"type": "number", "minimum": 1},
                                    "maximumInterval": duration,
                                    "nonRetryableErrorTypes": {"type": "array", "items": {"type": "string"}}
                                }
                            }
                        }
                    }
                }
            }
        }
    });
    let event_type = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"const": "EventType"},
            "metadata": metadata,
            "spec": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "subject": {"type": "string", "minLength": 1},
                    "schema": {"type": ["object", "boolean"]}
                }
            }
        }
    });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "activity-sync definition document",
        "oneOf": [activity, event_type]
    })
}
