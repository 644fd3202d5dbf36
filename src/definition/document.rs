//! One file's bytes → its valid documents and its diagnostics.
//!
//! The YAML library is used here and nowhere else (its API moves between releases).
//! Each document is deserialised into permissive raw types that keep positions, then
//! checked field by field so that one run reports every problem, not only the first.

use super::{
    API_VERSION, ActivityDefinition, Diagnostic, Document, EventType, Execution, Origin, Overlap,
    Pos, RetryPolicy, SchedulePolicy, Trigger, check_name, cron, duration,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;
use std::time::Duration;

/// What one file yielded.
#[derive(Debug, Clone, Default)]
pub struct ParsedFile {
    pub file: String,
    pub documents: Vec<Document>,
    pub invalid_documents: usize,
    /// Names read from documents that are invalid for another reason: they are frozen.
    pub names_in_invalid_documents: Vec<String>,
    pub diagnostics: Vec<Diagnostic>,
}

impl ParsedFile {
    /// A file that could not be read or decoded at all.
    pub fn unreadable(file: &str, message: impl Into<String>) -> ParsedFile {
        ParsedFile {
            file: file.to_string(),
            invalid_documents: 1,
            diagnostics: vec![Diagnostic::error(file, Pos::FILE, message)],
            ..ParsedFile::default()
        }
    }
}

// An empty file is an error, not a no-op: a file emptied by mistake must not prune the
// definitions it used to hold. Deleting the file is how definitions are removed.
const EMPTY_FILE: &str =
    "file is empty (no documents): delete the file to remove its definitions on purpose";

// Budgets that stop hostile YAML quickly while leaving room for a 1 MiB file holding
// thousands of small definitions.
const MAX_DEPTH: usize = 32;
const MAX_NODES: usize = 400_000;
const MAX_DOCUMENTS: usize = 20_000;
const MAX_ALIASES: usize = 1_000;
const MAX_REPLAYED_EVENTS: usize = 100_000;

fn options() -> serde_saphyr::Options {
    let mut limits = serde_saphyr::options::AliasLimits::default();
    limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    limits.max_replay_stack_depth = MAX_DEPTH;
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_nodes: MAX_NODES,
            max_documents: MAX_DOCUMENTS,
            max_aliases: MAX_ALIASES,
            max_anchors: MAX_ALIASES,
            max_reader_input_bytes: Some(super::MAX_FILE_BYTES as usize + 1),
        },
        alias_limits: limits,
        with_snippet: false,
    }
}

/// A document root. Anything but a mapping gets one plain sentence instead of the
/// parser's "expected mapping start".
struct RawDocument(RawFields);

impl<'de> Deserialize<'de> for RawDocument {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Root;
        impl<'de> serde::de::Visitor<'de> for Root {
            type Value = RawDocument;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping with apiVersion, kind, metadata and spec")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawDocument, A::Error> {
                RawFields::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawDocument)
            }
        }
        d.deserialize_any(Root)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFields {
    #[serde(rename = "apiVersion")]
    api_version: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    metadata: Option<Spanned<RawMetadata>>,
    spec: Option<Spanned<RawSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetadata {
    name: Option<Spanned<String>>,
    description: Option<String>,
    labels: Option<BTreeMap<String, String>>,
}

/// The fields of both kinds' specs; which ones are allowed is checked per kind.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSpec {
    enabled: Option<bool>,
    activity: Option<Spanned<String>>,
    task_queue: Option<Spanned<String>>,
    input: Option<serde_json::Value>,
    trigger: Option<Spanned<RawTrigger>>,
    schedule: Option<Spanned<RawSchedule>>,
    execution: Option<Spanned<RawExecution>>,
    subject: Option<Spanned<String>>,
    schema: Option<Spanned<serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    cron: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    event: Option<Spanned<String>>,
    at: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSchedule {
    overlap: Option<Spanned<String>>,
    catchup_window: Option<Spanned<String>>,
    jitter: Option<Spanned<String>>,
    pause_on_failure: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawExecution {
    timeout: Option<Spanned<String>>,
    retry: Option<Spanned<RawRetry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRetry {
    maximum_attempts: Option<u32>,
    initial_interval: Option<Spanned<String>>,
    backoff_coefficient: Option<Spanned<f64>>,
    maximum_interval: Option<Spanned<String>>,
    non_retryable_error_types: Option<Vec<String>>,
}

fn pos(loc: &Location) -> Pos {
    Pos::new(loc.line(), loc.column())
}

fn at<T>(s: &Spanned<T>) -> Pos {
    pos(&s.referenced)
}

/// Parses one file. `file` is the path relative to the definitions directory, used in
/// every diagnostic; `now` decides which `at` times are in the past.
pub fn parse_file(file: &str, bytes: &[u8], now: DateTime<Utc>) -> ParsedFile {
    if bytes.len() as u64 > super::MAX_FILE_BYTES {
        return ParsedFile::unreadable(
            file,
            format!(
                "file is {} bytes; the limit is {} (1 MiB, the ConfigMap limit)",
                bytes.len(),
                super::MAX_FILE_BYTES
            ),
        );
    }
    if bytes.contains(&0) {
        return ParsedFile::unreadable(
            file,
            "file contains NUL bytes: it is binary, not YAML text",
        );
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count() as u64
                + 1;
            let column = bytes[..e.valid_up_to()]
                .iter()
                .rev()
                .take_while(|b| **b != b'\n')
                .count() as u64
                + 1;
            let mut parsed = ParsedFile::unreadable(file, "file is not valid UTF-8");
            parsed.diagnostics[0].line = line;
            parsed.diagnostics[0].column = column;
            return parsed;
        }
    };
    let mut out = ParsedFile {
        file: file.to_string(),
        ..ParsedFile::default()
    };
    if text.trim().is_empty() {
        return ParsedFile::unreadable(file, EMPTY_FILE);
    }
    let starts = document_starts(text);
    let mut reader = text.as_bytes();
    let documents =
        serde_saphyr::read_with_options::<_, Spanned<RawDocument>>(&mut reader, options());
    for (index, result) in documents.enumerate() {
        match result {
            Ok(raw) => {
                let doc_pos = at(&raw);
                let mut checker = Checker {
                    file,
                    now,
                    diagnostics: Vec::new(),
                };
                let (name, doc) = checker.document(raw.value.0, doc_pos);
                let failed = checker.diagnostics.iter().any(Diagnostic::is_error);
                out.diagnostics.extend(checker.diagnostics);
                match doc {
                    Some(doc) if !failed => out.documents.push(doc),
                    _ => {
                        out.invalid_documents += 1;
                        if let Some(name) = name {
                            out.names_in_invalid_documents.push(name);
                        }
                    }
                }
            }
            Err(err) => {
                out.invalid_documents += 1;
                let p = err
                    .location()
                    .map(|l| pos(&l))
                    .filter(|p| p.line > 0)
                    .or_else(|| starts.get(index).copied())
                    .unwrap_or(Pos::FILE);
                out.diagnostics
                    .push(Diagnostic::error(file, p, yaml_message(&err)));
            }
        }
    }
    if out.documents.is_empty() && out.invalid_documents == 0 {
        return ParsedFile::unreadable(file, EMPTY_FILE);
    }
    out
}

/// The YAML library's message, made plain: budget breaches (YAML bombs, absurd
/// nesting) get one sentence each, and the library's own location suffix and advice
/// about its options are dropped (the diagnostic carries the position).
fn yaml_message(err: &serde_saphyr::Error) -> String {
    let full = err.without_snippet().to_string();
    let text = full.lines().next().unwrap_or_default().trim();
    if text.starts_with("alias replay limit exceeded") || text.contains("Alias") {
        return format!(
            "YAML aliases expand to more than {MAX_REPLAYED_EVENTS} nodes; the document was not read (a YAML bomb?)"
        );
    }
    if text.starts_with("recursion limit exceeded") || text.contains("Depth") {
        return format!(
            "YAML nesting is deeper than {MAX_DEPTH} levels; the document was not read"
        );
    }
    if let Some(what) = text.strip_prefix("budget breached: ") {
        return format!("the YAML exceeds a reading limit ({what}); the document was not read");
    }
    let text = strip_location_suffix(text);
    match text.find(", set DuplicateKeyPolicy") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// Drops a trailing ` at line N column M` (or `line N, column M`).
fn strip_location_suffix(text: &str) -> &str {
    if let Some(i) = text.rfind(" at line ") {
        let tail = &text[i + " at line ".len()..];
        if tail
            .chars()
            .all(|c| c.is_ascii_digit() || " ,column".contains(c))
        {
            return &text[..i];
        }
    }
    text
}

/// Where each non-empty document starts (its first line of content), for errors the
/// parser reports without a position. Empty documents are skipped, as the parser skips
/// them.
fn document_starts(text: &str) -> Vec<Pos> {
    let mut starts = Vec::new();
    let mut current: Option<Pos> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        if let Some(rest) = line.strip_prefix("---") {
            starts.extend(current.take());
            let rest = rest.trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                current = Some(Pos::new(n, 5));
            }
            continue;
        }
        if line.starts_with("...") || line.starts_with('%') {
            continue;
        }
        let content = line.trim_start();
        if current.is_none() && !content.is_empty() && !content.starts_with('#') {
            current = Some(Pos::new(n, (line.len() - content.len()) as u64 + 1));
        }
    }
    starts.extend(current);
    starts
}

struct Checker<'a> {
    file: &'a str,
    now: DateTime<Utc>,
    diagnostics: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, p: Pos, field: &str, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::error(self.file, p, message).at_field(field));
    }

    fn warning(&mut self, p: Pos, field: &str, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::warning(self.file, p, message).at_field(field));
    }

    /// Returns the document's name (when it has a valid one) and the document, which
    /// is only meaningful when no error was recorded.
    fn document(&mut self, raw: RawFields, doc_pos: Pos) -> (Option<String>, Option<Document>) {
        match &raw.api_version {
            None => self.error(
                doc_pos,
                "apiVersion",
                format!("missing; expected `{API_VERSION}`"),
            ),
            Some(v) if v.value != API_VERSION => self.error(
                at(v),
                "apiVersion",
                format!("unsupported `{}`; expected `{API_VERSION}`", v.value),
            ),
            Some(_) => {}
        }
        let Some(metadata) = raw.metadata else {
            self.error(
                doc_pos,
                "metadata",
                "missing (it must hold at least `name`)",
            );
            return (None, None);
        };
        let meta_pos = at(&metadata);
        let metadata = metadata.value;
        let name = match &metadata.name {
            None => {
                self.error(meta_pos, "metadata.name", "missing");
                None
            }
            Some(n) => match check_name(&n.value) {
                Ok(()) => Some(n.value.clone()),
                Err(m) => {
                    self.error(at(n), "metadata.name", m);
                    None
                }
            },
        };
        let name_pos = metadata.name.as_ref().map(at).unwrap_or(meta_pos);
        let Some(spec) = raw.spec else {
            self.error(doc_pos, "spec", "missing");
            return (name, None);
        };
        let spec_pos = at(&spec);
        let origin = Origin {
            file: self.file.to_string(),
            pos: name_pos,
        };
        let doc = match raw.kind.as_ref().map(|k| k.value.as_str()) {
            Some("ActivityDefinition") => self
                .activity(spec.value, spec_pos, metadata, name.clone(), origin)
                .map(|d| Document::Activity(Box::new(d))),
            Some("EventType") => self
                .event_type(spec.value, spec_pos, metadata, name.clone(), origin)
                .map(Document::EventType),
            Some(other) => {
                let p = raw.kind.as_ref().map(at).unwrap_or(doc_pos);
                self.error(
                    p,
                    "kind",
                    format!("unknown kind `{other}`; expected `ActivityDefinition` or `EventType`"),
                );
                None
            }
            None => {
                self.error(
                    doc_pos,
                    "kind",
                    "missing; expected `ActivityDefinition` or `EventType`",
                );
                None
            }
        };
        (name, doc)
    }

    fn activity(
        &mut self,
        spec: RawSpec,
        spec_pos: Pos,
        metadata: RawMetadata,
        name: Option<String>,
        origin: Origin,
    ) -> Option<ActivityDefinition> {
        if let Some(s) = &spec.subject {
            self.error(
                at(s),
                "spec.subject",
                "not allowed in an ActivityDefinition (it belongs to EventType)",
            );
        }
        if let Some(s) = &spec.schema {
            self.error(
                at(s),
                "spec.schema",
                "not allowed in an ActivityDefinition (it belongs to EventType)",
            );
        }
        let activity = match spec.activity {
            None => {
                self.error(
                    spec_pos,
                    "spec.activity",
                    "missing: name the activity the worker runs",
                );
                None
            }
            Some(a) if a.value.trim().is_empty() => {
                self.error(at(&a), "spec.activity", "must not be empty");
                None
            }
            Some(a) => Some(a.value),
        };
        let task_queue = match spec.task_queue {
            Some(q) if q.value.trim().is_empty() => {
                self.error(
                    at(&q),
                    "spec.taskQueue",
                    "must not be empty (omit it to use the default)",
                );
                None
            }
            other => other.map(|q| q.value),
        };
        let trigger = match spec.trigger {
            None => {
                self.error(
                    spec_pos,
                    "spec.trigger",
                    "missing: give exactly one of `cron`, `event` or `at`",
                );
                None
            }
            Some(t) => self.trigger(t),
        };
        let schedule = match spec.schedule {
            None => SchedulePolicy::default(),
            Some(s) => {
                if matches!(trigger, Some(Trigger::Event { .. })) {
                    self.error(
                        at(&s),
                        "spec.schedule",
                        "only allowed with a `cron` or `at` trigger (event-triggered definitions have no schedule)",
                    );
                }
                self.schedule(s.value)
            }
        };
        let execution = match spec.execution {
            None => Execution::default(),
            Some(e) => self.execution(e.value),
        };
        Some(ActivityDefinition {
            name: name?,
            description: metadata.description,
            labels: metadata.labels.unwrap_or_default(),
            enabled: spec.enabled.unwrap_or(true),
            activity: activity?,
            task_queue,
            input: spec.input,
            trigger: trigger?,
            schedule,
            execution,
            origin,
        })
    }

    fn trigger(&mut self, raw: Spanned<RawTrigger>) -> Option<Trigger> {
        let t_pos = at(&raw);
        let t = raw.value;
        let given: Vec<&str> = [
            t.cron.as_ref().map(|_| "cron"),
            t.event.as_ref().map(|_| "event"),
            t.at.as_ref().map(|_| "at"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if given.len() != 1 {
            let message = if given.is_empty() {
                "give exactly one of `cron`, `event` or `at`".to_string()
            } else {
                format!(
                    "give exactly one of `cron`, `event` or `at`, not {}",
                    given.join(" and ")
                )
            };
            self.error(t_pos, "spec.trigger", message);
            return None;
        }
        if let (Some(tz), None) = (&t.timezone, &t.cron) {
            self.error(
                at(tz),
                "spec.trigger.timezone",
                "only allowed with a `cron` trigger",
            );
            return None;
        }
        if let Some(c) = t.cron {
            let parsed = match cron::parse(&c.value) {
                Ok(p) => p,
                Err(e) => {
                    self.error(at(&c), "spec.trigger.cron", format!("`{}`: {e}", c.value));
                    return None;
                }
            };
            let zone = t
                .timezone
                .as_ref()
                .and_then(|tz| cron::validate_timezone(&tz.value).ok())
                .unwrap_or(chrono_tz::Tz::UTC);
            let epoch = DateTime::<Utc>::from_timestamp(946_684_800, 0).unwrap_or_default();
            if parsed.next_after(zone, epoch).is_none() {
                self.error(
                    at(&c),
                    "spec.trigger.cron",
                    format!(
                        "`{}` can never fire (no date matches all its fields)",
                        c.value
                    ),
                );
                return None;
            }
            if parsed.next_after(zone, self.now).is_none() {
                self.warning(
                    at(&c),
                    "spec.trigger.cron",
                    format!(
                        "`{}` will never fire again: all its times are in the past",
                        c.value
                    ),
                );
            }
            let timezone = match &t.timezone {
                None => None,
                Some(tz) => {
                    if let Err(m) = cron::validate_timezone(&tz.value) {
                        self.error(at(tz), "spec.trigger.timezone", m);
                        return None;
                    }
                    if let Some(prefix) = &parsed.timezone
                        && prefix != &tz.value
                    {
                        self.error(
                                at(tz),
                                "spec.trigger.timezone",
                                format!(
                                    "`{}` conflicts with the cron string's own `CRON_TZ={prefix}`; keep one of them",
                                    tz.value
                                ),
                            );
                        return None;
                    }
                    Some(tz.value.clone())
                }
            };
            return Some(Trigger::Cron {
                expression: c.value.trim().to_string(),
                timezone,
            });
        }
        if let Some(e) = t.event {
            if let Err(m) = check_name(&e.value) {
                self.error(at(&e), "spec.trigger.event", m);
                return None;
            }
            return Some(Trigger::Event { event: e.value });
        }
        let a = t.at?;
        let when = match DateTime::parse_from_rfc3339(a.value.trim()) {
            Ok(w) => w.with_timezone(&Utc),
            Err(_) => {
                self.error(
                    at(&a),
                    "spec.trigger.at",
                    format!(
                        "`{}` is not an RFC 3339 time with an offset, e.g. 2026-12-24T09:00:00Z",
                        a.value
                    ),
                );
                return None;
            }
        };
        let year = chrono::Datelike::year(&when);
        if !(cron::MIN_YEAR as i32..=cron::MAX_YEAR as i32).contains(&year) {
            self.error(
                at(&a),
                "spec.trigger.at",
                format!(
                    "year {year} is outside Temporal's calendar ({}-{})",
                    cron::MIN_YEAR,
                    cron::MAX_YEAR
                ),
            );
            return None;
        }
        if when <= self.now {
            self.warning(
                at(&a),
                "spec.trigger.at",
                format!(
                    "`{}` is in the past: it can never fire, so no schedule is created",
                    a.value
                ),
            );
        }
        Some(Trigger::At { at: when })
    }

    fn duration(&mut self, field: &str, raw: &Spanned<String>) -> Option<Duration> {
        match duration::parse(&raw.value) {
            Ok(d) => Some(d),
            Err(m) => {
                self.error(at(raw), field, m);
                None
            }
        }
    }

    fn schedule(&mut self, raw: RawSchedule) -> SchedulePolicy {
        let overlap = match &raw.overlap {
            None => Overlap::default(),
            Some(o) => Overlap::from_name(&o.value).unwrap_or_else(|| {
                self.error(
                    at(o),
                    "spec.schedule.overlap",
                    format!(
                        "unknown policy `{}`; expected one of {}",
                        o.value,
                        Overlap::NAMES.join(", ")
                    ),
                );
                Overlap::default()
            }),
        };
        let catchup_window = raw.catchup_window.as_ref().and_then(|c| {
            let d = self.duration("spec.schedule.catchupWindow", c)?;
            if d < Duration::from_secs(10) {
                self.error(at(c), "spec.schedule.catchupWindow", "must be at least 10s");
            }
            Some(d)
        });
        let jitter = raw
            .jitter
            .as_ref()
            .and_then(|j| self.duration("spec.schedule.jitter", j));
        SchedulePolicy {
            overlap,
            catchup_window,
            jitter,
            pause_on_failure: raw.pause_on_failure.unwrap_or(false),
        }
    }

    fn execution(&mut self, raw: RawExecution) -> Execution {
        let timeout = raw.timeout.as_ref().and_then(|t| {
            let d = self.duration("spec.execution.timeout", t)?;
            if d.is_zero() {
                self.error(at(t), "spec.execution.timeout", "must be longer than 0s");
            }
            Some(d)
        });
        let retry = raw.retry.map(|r| {
            let r = r.value;
            if let Some(b) = &r.backoff_coefficient
                && !(b.value >= 1.0 && b.value.is_finite())
            {
                self.error(
                    at(b),
                    "spec.execution.retry.backoffCoefficient",
                    "must be at least 1.0",
                );
            }
            RetryPolicy {
                maximum_attempts: r.maximum_attempts,
                initial_interval: r
                    .initial_interval
                    .as_ref()
                    .and_then(|d| self.duration("spec.execution.retry.initialInterval", d)),
                backoff_coefficient: r.backoff_coefficient.map(|b| b.value),
                maximum_interval: r
                    .maximum_interval
                    .as_ref()
                    .and_then(|d| self.duration("spec.execution.retry.maximumInterval", d)),
                non_retryable_error_types: r.non_retryable_error_types.unwrap_or_default(),
            }
        });
        Execution { timeout, retry }
    }

    fn event_type(
        &mut self,
        spec: RawSpec,
        spec_pos: Pos,
        metadata: RawMetadata,
        name: Option<String>,
        origin: Origin,
    ) -> Option<EventType> {
        let foreign: [(&str, Option<Pos>); 7] = [
            ("enabled", spec.enabled.map(|_| spec_pos)),
            ("activity", spec.activity.as_ref().map(at)),
            ("taskQueue", spec.task_queue.as_ref().map(at)),
            ("input", spec.input.as_ref().map(|_| spec_pos)),
            ("trigger", spec.trigger.as_ref().map(at)),
            ("schedule", spec.schedule.as_ref().map(at)),
            ("execution", spec.execution.as_ref().map(at)),
        ];
        for (field, p) in foreign {
            if let Some(p) = p {
                self.error(
                    p,
                    &format!("spec.{field}"),
                    "not allowed in an EventType (it belongs to ActivityDefinition); expected `subject` or `schema`",
                );
            }
        }
        let name = name?;
        let subject = match spec.subject {
            Some(s) if s.value.trim().is_empty() => {
                self.error(
                    at(&s),
                    "spec.subject",
                    "must not be empty (omit it to use the name)",
                );
                return None;
            }
            Some(s) => s.value,
            None => name.clone(),
        };
        let schema = match spec.schema {
            Some(s) if !(s.value.is_object() || s.value.is_boolean()) => {
                self.error(at(&s), "spec.schema", "must be a JSON Schema (a mapping)");
                None
            }
            other => other.map(|s| s.value),
        };
        Some(EventType {
            name,
            description: metadata.description,
            subject,
            schema,
            origin,
        })
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-04T20:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary bytes: a result, never a panic; every problem has a position in
        /// the file or names the whole file.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let parsed = parse_file("f.yaml", &bytes, now());
            for d in &parsed.diagnostics {
                prop_assert_eq!(&d.file, "f.yaml");
            }
        }

        /// YAML-shaped noise built from the tokens definition files use.
        #[test]
        fn yaml_shaped_noise_never_panics(tokens in prop::collection::vec(prop::sample::select(vec![
            "apiVersion: activity-core/v1\n", "kind: ActivityDefinition\n", "kind: EventType\n", "metadata:\n",
            "  name: x\n", "spec:\n", "  activity: a\n", "  trigger:\n", "    cron: '@daily'\n", "    at: 2030-01-01T00:00:00Z\n",
            "---\n", "- ", "[", "]", "{", "}", "&a ", "*a ", ": ", "\t", "'", "\"", "\n", "  ", "? ", "!!str ", "|\n",
        ]), 0..64)) {
            let text: String = tokens.concat();
            let parsed = parse_file("f.yaml", text.as_bytes(), now());
            prop_assert!(parsed.documents.len() + parsed.invalid_documents <= 64);
        }

        /// Generated valid definitions read back exactly.
        #[test]
        fn generated_definitions_round_trip(
            defs in prop::collection::btree_map("[a-z][a-z0-9-]{0,20}[a-z0-9]", (0u32..60, 0u32..24, any::<bool>()), 1..10)
        ) {
            let text: String = defs
                .iter()
                .map(|(name, (m, h, enabled))| format!(
                    "apiVersion: activity-core/v1\nkind: ActivityDefinition\nmetadata:\n  name: {name}\nspec:\n  enabled: {enabled}\n  activity: act\n  trigger:\n    cron: \"{m} {h} * * *\"\n---\n"
                ))
                .collect();
            let parsed = parse_file("f.yaml", text.as_bytes(), now());
            prop_assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
            prop_assert_eq!(parsed.documents.len(), defs.len());
            for (doc, (name, (m, h, enabled))) in parsed.documents.iter().zip(&defs) {
                let Document::Activity(d) = doc else { panic!("an activity") };
                prop_assert_eq!(&d.name, name);
                prop_assert_eq!(d.enabled, *enabled);
                prop_assert_eq!(&d.trigger, &Trigger::Cron { expression: format!("{m} {h} * * *"), timezone: None });
            }
        }
    }
}
