//! Temporal's cron dialect: a strict parser that mirrors the server's own
//! (`service/worker/scheduler/calendar.go`), so a string that passes here is accepted
//! by Temporal, and a string Temporal would reject, or would read differently from what
//! a person used to Vixie or Quartz cron expects, is refused before anything is sent.
//!
//! Differences from common cron that this module enforces: a 6th field is the *year*
//! (a 7th field puts seconds in front), day-of-month and day-of-week are ANDed, there is
//! no `?`, `L`, `W` or `#`, years run from 2000 to 2100, `@every <duration>[/<phase>]`
//! is an interval, and a `CRON_TZ=`/`TZ=` prefix names the time zone.
//!
//! The module is pure: it parses into a [`Cron`] and can compute next fire times, which
//! the tests use to prove that what is accepted can actually fire.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// Earliest year Temporal's calendar recognises.
pub const MIN_YEAR: u32 = 2000;
/// Latest year Temporal's calendar recognises.
pub const MAX_YEAR: u32 = 2100;

/// A parsed cron string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    /// The IANA zone from a `CRON_TZ=`/`TZ=` prefix, if there was one.
    pub timezone: Option<String>,
    pub kind: CronKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CronKind {
    Calendar(Calendar),
    /// `@every`: fires at `epoch + n * every + phase`, both in whole seconds.
    Interval {
        every_secs: u64,
        phase_secs: u64,
    },
}

/// One inclusive range with a step, as Temporal's `Range` after cleaning
/// (`end >= start`, `step >= 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u32,
    pub end: u32,
    pub step: u32,
}

impl Range {
    fn contains(&self, v: u32) -> bool {
        v >= self.start && v <= self.end && (v - self.start).is_multiple_of(self.step)
    }
}

/// Temporal's `StructuredCalendarSpec`: every field is a union of ranges. An empty
/// `year` list means every year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    pub second: Vec<Range>,
    pub minute: Vec<Range>,
    pub hour: Vec<Range>,
    pub day_of_month: Vec<Range>,
    pub month: Vec<Range>,
    pub day_of_week: Vec<Range>,
    pub year: Vec<Range>,
}

/// Why a cron string was refused, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CronError {
    /// The field at fault (`minute`, `day-of-week`, `time zone`, …), if one can be named.
    pub field: Option<&'static str>,
    pub message: String,
}

impl CronError {
    fn new(field: Option<&'static str>, message: impl Into<String>) -> Self {
        CronError {
            field,
            message: message.into(),
        }
    }
    fn field(field: &'static str, message: impl std::fmt::Display) -> Self {
        CronError::new(Some(field), format!("{field}: {message}"))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Int,
    Month,
    DayOfWeek,
}

struct FieldRule {
    name: &'static str,
    min: u32,
    max: u32,
    mode: Mode,
}

const SECOND: FieldRule = FieldRule {
    name: "second",
    min: 0,
    max: 59,
    mode: Mode::Int,
};
const MINUTE: FieldRule = FieldRule {
    name: "minute",
    min: 0,
    max: 59,
    mode: Mode::Int,
};
const HOUR: FieldRule = FieldRule {
    name: "hour",
    min: 0,
    max: 23,
    mode: Mode::Int,
};
const DAY_OF_MONTH: FieldRule = FieldRule {
    name: "day-of-month",
    min: 1,
    max: 31,
    mode: Mode::Int,
};
const MONTH: FieldRule = FieldRule {
    name: "month",
    min: 1,
    max: 12,
    mode: Mode::Month,
};
const DAY_OF_WEEK: FieldRule = FieldRule {
    name: "day-of-week",
    min: 0,
    max: 7,
    mode: Mode::DayOfWeek,
};
const YEAR: FieldRule = FieldRule {
    name: "year",
    min: MIN_YEAR,
    max: MAX_YEAR,
    mode: Mode::Int,
};

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const DAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

/// Parses a cron string in Temporal's dialect.
pub fn parse(input: &str) -> Result<Cron, CronError> {
    let mut rest = input.trim();
    if rest.is_empty() {
        return Err(CronError::new(None, "cron expression is empty"));
    }
    let mut timezone = None;
    if rest.starts_with("TZ=") || rest.starts_with("CRON_TZ=") {
        let (prefix, tail) = rest.split_once(char::is_whitespace).ok_or_else(|| {
            CronError::new(
                Some("time zone"),
                "a CRON_TZ=/TZ= prefix must be followed by a space and the cron fields",
            )
        })?;
        let name = prefix.split_once('=').map(|(_, n)| n).unwrap_or_default();
        if name.is_empty() {
            return Err(CronError::new(
                Some("time zone"),
                "CRON_TZ=/TZ= prefix names no time zone",
            ));
        }
        validate_timezone(name).map_err(|m| CronError::new(Some("time zone"), m))?;
        timezone = Some(name.to_string());
        rest = tail.trim_start();
        if rest.is_empty() {
            return Err(CronError::new(
                None,
                "a CRON_TZ=/TZ= prefix must be followed by the cron fields",
            ));
        }
    }
    if rest.contains('#') {
        return Err(CronError::new(
            None,
            "`#` is not supported: Temporal reads the rest of the line as a comment, not as an nth weekday",
        ));
    }
    if let Some(tail) = rest.strip_prefix("@every") {
        let kind = parse_every(tail)?;
        return Ok(Cron { timezone, kind });
    }
    let expanded = match rest {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other if other.starts_with('@') => {
            return Err(CronError::new(
                None,
                format!(
                    "unknown shortcut `{other}` (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>)"
                ),
            ));
        }
        other => other,
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    let (second, minute, hour, dom, month, dow, year) = match fields.as_slice() {
        [mi, h, dom, mo, dow] => ("0", *mi, *h, *dom, *mo, *dow, "*"),
        [mi, h, dom, mo, dow, y] => ("0", *mi, *h, *dom, *mo, *dow, *y),
        [s, mi, h, dom, mo, dow, y] => (*s, *mi, *h, *dom, *mo, *dow, *y),
        other => {
            return Err(CronError::new(
                None,
                format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week), 6 (… year) or 7 (second … year), found {}",
                    other.len()
                ),
            ));
        }
    };
    let calendar = Calendar {
        second: parse_field(second, &SECOND)?,
        minute: parse_field(minute, &MINUTE)?,
        hour: parse_field(hour, &HOUR)?,
        day_of_month: parse_field(dom, &DAY_OF_MONTH)?,
        month: parse_field(month, &MONTH)?,
        day_of_week: parse_field(dow, &DAY_OF_WEEK)?,
        year: parse_field(year, &YEAR)?,
    };
    Ok(Cron {
        timezone,
        kind: CronKind::Calendar(calendar),
    })
}

/// Checks that `name` is an IANA time zone known to the embedded tz database.
pub fn validate_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!("unknown time zone `{name}` (expected an IANA name such as Europe/Berlin)")
    })
}

fn parse_every(tail: &str) -> Result<CronKind, CronError> {
    let spec = tail.trim();
    if spec.is_empty() || !tail.starts_with(char::is_whitespace) {
        return Err(CronError::new(
            Some("interval"),
            "@every needs a duration, e.g. `@every 90m` or `@every 1d/6h`",
        ));
    }
    let (every, phase) = match spec.split_once('/') {
        Some((e, p)) => (e, Some(p)),
        None => (spec, None),
    };
    let every_secs = parse_go_duration(every).map_err(|m| CronError::field("interval", m))?;
    if every_secs < 1 {
        return Err(CronError::field(
            "interval",
            "interval is too small (minimum 1s)",
        ));
    }
    let phase_secs = match phase {
        Some(p) => parse_go_duration(p).map_err(|m| CronError::field("interval", m))?,
        None => 0,
    };
    if phase_secs >= every_secs {
        return Err(CronError::field(
            "interval",
            "phase cannot be greater than or equal to the interval",
        ));
    }
    Ok(CronKind::Interval {
        every_secs,
        phase_secs,
    })
}

/// Parses a Go-style duration (`90s`, `1h30m`, `1.5h`, `2d`) into whole seconds,
/// truncating fractions as Temporal does.
fn parse_go_duration(s: &str) -> Result<u64, String> {
    const UNITS: [(&str, f64); 8] = [
        ("ns", 1e-9),
        ("us", 1e-6),
        ("µs", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
        ("d", 86400.0),
    ];
    let bad = || format!("invalid duration `{s}` (examples: 90s, 15m, 1h30m, 2d)");
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let factor = UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, f)| *f)
            .ok_or_else(bad)?;
        total += value * factor;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e12 {
        return Err(bad());
    }
    Ok(total as u64)
}

fn parse_field(text: &str, rule: &FieldRule) -> Result<Vec<Range>, CronError> {
    for bad in ['?', 'L', 'W', 'l', 'w'] {
        // Names such as `WED` or `JUL` legitimately contain these letters.
        if rule.mode == Mode::Int && text.contains(bad) {
            return Err(CronError::field(
                rule.name,
                format!("`{bad}` is not supported in Temporal's cron dialect (in `{text}`)"),
            ));
        }
    }
    if text == "?" {
        return Err(CronError::field(
            rule.name,
            "`?` is not supported in Temporal's cron dialect; use `*`",
        ));
    }
    let mut ranges = Vec::new();
    for part in text.split(',') {
        ranges.push(parse_part(part, rule)?);
    }
    Ok(ranges)
}

fn parse_part(part: &str, rule: &FieldRule) -> Result<Range, CronError> {
    let malformed = || CronError::field(rule.name, format!("malformed expression `{part}`"));
    let (body, step) = match part.split_once('/') {
        Some((body, step_text)) => {
            if step_text.contains('/') {
                return Err(malformed());
            }
            let step: u32 = step_text.parse().map_err(|_| {
                CronError::field(rule.name, format!("step `{step_text}` is not a number"))
            })?;
            if step < 1 {
                return Err(CronError::field(rule.name, "step must be at least 1"));
            }
            (body, Some(step))
        }
        None => (part, None),
    };
    let (start, end) = if body == "*" {
        (rule.min, rule.max)
    } else if let Some((a, b)) = body.split_once('-') {
        if b.contains('-') {
            return Err(malformed());
        }
        let start = parse_value(a, rule, rule.min)?;
        let end = parse_value(b, rule, start)?;
        (start, end)
    } else {
        let start = parse_value(body, rule, rule.min)?;
        // `x/y` runs from x to the field's maximum; a lone `x` is just x.
        (start, if step.is_some() { rule.max } else { start })
    };
    Ok(Range {
        start,
        end,
        step: step.unwrap_or(1),
    })
}

fn parse_value(text: &str, rule: &FieldRule, min: u32) -> Result<u32, CronError> {
    let lower = text.to_ascii_lowercase();
    let named = match rule.mode {
        Mode::Month if lower.len() >= 3 => MONTHS
            .iter()
            .position(|m| m.starts_with(&lower))
            .map(|i| i as u32 + 1),
        Mode::DayOfWeek if lower.len() >= 2 => DAYS
            .iter()
            .position(|d| d.starts_with(&lower))
            .map(|i| i as u32),
        _ => None,
    };
    let value = match named {
        Some(v) => v,
        None => {
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                let hint = match rule.mode {
                    Mode::Month => " (a number 1-12 or a month name of at least 3 letters)",
                    Mode::DayOfWeek => " (a number 0-7 or a day name of at least 2 letters)",
                    Mode::Int => "",
                };
                return Err(CronError::field(
                    rule.name,
                    format!("`{text}` is not a valid value{hint}"),
                ));
            }
            text.parse::<u32>()
                .map_err(|_| CronError::field(rule.name, format!("`{text}` is out of range")))?
        }
    };
    if value < min || value > rule.max {
        return Err(CronError::field(
            rule.name,
            format!(
                "value {value} is out of range (allowed {}-{})",
                min.max(rule.min),
                rule.max
            ),
        ));
    }
    Ok(value)
}

impl Calendar {
    fn matches(ranges: &[Range], v: u32) -> bool {
        ranges.iter().any(|r| r.contains(v))
    }

    fn matches_year(&self, y: u32) -> bool {
        self.year.is_empty() || Self::matches(&self.year, y)
    }

    fn matches_dow(&self, weekday_from_sunday: u32) -> bool {
        // 7 is Sunday as well as 0.
        Self::matches(&self.day_of_week, weekday_from_sunday)
            || (weekday_from_sunday == 0 && Self::matches(&self.day_of_week, 7))
    }

    /// The first time strictly after `after` that matches, interpreting fields as wall
    /// clock time in `tz` (a skipped local hour never fires; a repeated one fires
    /// twice). `None` when nothing matches up to the year 2100.
    pub fn next_after(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&tz);
        let mut day = local.date_naive().pred_opt()?;
        let last = NaiveDate::from_ymd_opt(MAX_YEAR as i32, 12, 31)?;
        while day <= last {
            let (y, m, d) = (day.year() as u32, day.month(), day.day());
            if !self.matches_year(y) {
                day = NaiveDate::from_ymd_opt(y as i32 + 1, 1, 1)?;
                continue;
            }
            if !Self::matches(&self.month, m) {
                day = first_of_next_month(day)?;
                continue;
            }
            if Self::matches(&self.day_of_month, d)
                && self.matches_dow(day.weekday().num_days_from_sunday())
                && let Some(t) = self.first_in_day(tz, day, after)
            {
                return Some(t);
            }
            day = day.succ_opt()?;
        }
        None
    }

    fn first_in_day(&self, tz: Tz, day: NaiveDate, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        for h in (0..24).filter(|h| Self::matches(&self.hour, *h)) {
            for mi in (0..60).filter(|m| Self::matches(&self.minute, *m)) {
                for s in (0..60).filter(|s| Self::matches(&self.second, *s)) {
                    let naive = day.and_hms_opt(h, mi, s)?;
                    // Ambiguous local times (a repeated hour) fire at both instants.
                    let candidates = tz.from_local_datetime(&naive);
                    let found = candidates
                        .earliest()
                        .into_iter()
                        .chain(candidates.latest())
                        .map(|t| t.with_timezone(&Utc))
                        .find(|t| *t > after);
                    if found.is_some() {
                        return found;
                    }
                }
            }
        }
        None
    }
}

fn first_of_next_month(day: NaiveDate) -> Option<NaiveDate> {
    if day.month() == 12 {
        NaiveDate::from_ymd_opt(day.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(day.year(), day.month() + 1, 1)
    }
}

impl Cron {
    /// The next fire time after `after`, in `default_tz` unless the string names its own.
    pub fn next_after(&self, default_tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tz = self
            .timezone
            .as_deref()
            .and_then(|n| n.parse::<Tz>().ok())
            .unwrap_or(default_tz);
        match &self.kind {
            CronKind::Calendar(cal) => cal.next_after(tz, after),
            CronKind::Interval {
                every_secs,
                phase_secs,
            } => {
                let every = *every_secs as i64;
                let phase = *phase_secs as i64;
                let t = after.timestamp();
                let n = (t - phase).div_euclid(every) + 1;
                Utc.timestamp_opt(n * every + phase, 0).single()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u32, end: u32, step: u32) -> Range {
        Range { start, end, step }
    }

    fn cal(s: &str) -> Calendar {
        match parse(s).unwrap().kind {
            CronKind::Calendar(c) => c,
            other => panic!("expected a calendar, got {other:?}"),
        }
    }

    #[test]
    fn five_fields_compile_like_temporal() {
        let c = cal("0 12 * * MON-FRI");
        assert_eq!(c.second, vec![r(0, 0, 1)]);
        assert_eq!(c.minute, vec![r(0, 0, 1)]);
        assert_eq!(c.hour, vec![r(12, 12, 1)]);
        assert_eq!(c.day_of_month, vec![r(1, 31, 1)]);
        assert_eq!(c.month, vec![r(1, 12, 1)]);
        assert_eq!(c.day_of_week, vec![r(1, 5, 1)]);
        assert_eq!(c.year, vec![r(2000, 2100, 1)]);
    }

    #[test]
    fn sixth_field_is_the_year_and_seventh_puts_seconds_first() {
        assert_eq!(cal("0 6 * * * 2030").year, vec![r(2030, 2030, 1)]);
        let c = cal("15 30 14 5 12 * 2026");
        assert_eq!(c.second, vec![r(15, 15, 1)]);
        assert_eq!(c.minute, vec![r(30, 30, 1)]);
        assert_eq!(c.year, vec![r(2026, 2026, 1)]);
    }

    #[test]
    fn steps_lists_and_names() {
        let c = cal("*/15 1-5/2,8 * jan,Mar-may su-sat");
        assert_eq!(c.minute, vec![r(0, 59, 15)]);
        assert_eq!(c.hour, vec![r(1, 5, 2), r(8, 8, 1)]);
        assert_eq!(c.month, vec![r(1, 1, 1), r(3, 5, 1)]);
        assert_eq!(c.day_of_week, vec![r(0, 6, 1)]);
        assert_eq!(cal("0 0 * * 3/2").day_of_week, vec![r(3, 7, 2)]);
    }

    #[test]
    fn shortcuts_expand() {
        assert_eq!(cal("@daily"), cal("0 0 * * *"));
        assert_eq!(cal("@midnight"), cal("0 0 * * *"));
        assert_eq!(cal("@hourly"), cal("0 * * * *"));
        assert_eq!(cal("@weekly"), cal("0 0 * * 0"));
        assert_eq!(cal("@monthly"), cal("0 0 1 * *"));
        assert_eq!(cal("@yearly"), cal("0 0 1 1 *"));
        assert_eq!(cal("@annually"), cal("0 0 1 1 *"));
    }

    #[test]
    fn every_and_timezone_prefix() {
        assert_eq!(
            parse("@every 90m").unwrap().kind,
            CronKind::Interval {
                every_secs: 5400,
                phase_secs: 0
            }
        );
        assert_eq!(
            parse("@every 1d/6h").unwrap().kind,
            CronKind::Interval {
                every_secs: 86400,
                phase_secs: 21600
            }
        );
        let c = parse("CRON_TZ=Europe/Berlin 0 6 * * *").unwrap();
        assert_eq!(c.timezone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(
            parse("TZ=America/New_York @daily")
                .unwrap()
                .timezone
                .as_deref(),
            Some("America/New_York")
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let cases: &[(&str, Option<&str>)] = &[
            ("61 * * * *", Some("minute")),
            ("* 24 * * *", Some("hour")),
            ("0 0 0 * *", Some("day-of-month")),
            ("0 0 L * *", Some("day-of-month")),
            ("0 0 15W * *", Some("day-of-month")),
            ("0 0 ? * *", Some("day-of-month")),
            ("0 0 * 13 *", Some("month")),
            ("0 0 * * 8", Some("day-of-week")),
            ("0 0 * * MON#2", None),
            ("0 0 * * 5L", Some("day-of-week")),
            ("0 0 * * * 2101", Some("year")),
            ("0 0 * * * 1999", Some("year")),
            ("0 0 * * *  * 2030 x", None),
            ("* * * *", None),
            ("5-2 * * * *", Some("minute")),
            ("*/0 * * * *", Some("minute")),
            ("1/2/3 * * * *", Some("minute")),
            ("1-2-3 * * * *", Some("minute")),
            ("CRON_TZ=Mars/Olympus 0 0 * * *", Some("time zone")),
            ("CRON_TZ=Europe/Berlin", Some("time zone")),
            ("@every", Some("interval")),
            ("@every 0s", Some("interval")),
            ("@every 1h/2h", Some("interval")),
            ("@every fortnight", Some("interval")),
            ("@reboot", None),
            ("", None),
            ("0 0 * ju *", Some("month")),
            ("0 0 * * t", Some("day-of-week")),
        ];
        for (input, field) in cases {
            let err = parse(input).expect_err(input);
            assert_eq!(err.field, *field, "{input}: {err}");
        }
    }

    #[test]
    fn day_of_month_and_day_of_week_are_anded() {
        // The 13th that is a Friday: 2026-02-13 and 2026-03-13 are Fridays.
        let c = cal("0 0 13 * FRI");
        let after = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let next = c.next_after(Tz::UTC, after).unwrap();
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 2, 13, 0, 0, 0).unwrap());
    }

    #[test]
    fn next_fire_respects_zone_and_dst() {
        let c = cal("30 2 * * *");
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-03-29 02:30 does not exist in Berlin; the next fire is the 30th.
        let after = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();
        let next = c.next_after(berlin, after).unwrap();
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 3, 30, 0, 30, 0).unwrap());
        // A pinned year in the past never fires again.
        let past = cal("0 0 1 1 * 2001");
        assert_eq!(past.next_after(Tz::UTC, after), None);
    }

    #[test]
    fn interval_next_fire_is_aligned_to_the_epoch_plus_phase() {
        let c = parse("@every 1h/15m").unwrap();
        let after = Utc.with_ymd_and_hms(2026, 1, 1, 10, 20, 0).unwrap();
        assert_eq!(
            c.next_after(Tz::UTC, after).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 1, 11, 15, 0).unwrap()
        );
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// One field part within [lo, hi]: `*`, `a`, `a-b`, `*/s`, `a/s` or `a-b/s`.
        fn part(lo: u32, hi: u32) -> impl Strategy<Value = String> {
            (lo..=hi, lo..=hi, 1u32..=10, 0u8..6).prop_map(move |(a, b, s, shape)| {
                let (a, b) = (a.min(b), a.max(b));
                match shape {
                    0 => "*".to_string(),
                    1 => a.to_string(),
                    2 => format!("{a}-{b}"),
                    3 => format!("*/{s}"),
                    4 => format!("{a}/{s}"),
                    _ => format!("{a}-{b}/{s}"),
                }
            })
        }

        fn field(lo: u32, hi: u32) -> impl Strategy<Value = String> {
            prop::collection::vec(part(lo, hi), 1..3).prop_map(|parts| parts.join(","))
        }

        /// Expressions that must fire: day-of-month stays within 1-28 so every month
        /// has it, and a year field, when present, reaches 2100.
        fn firing_cron() -> impl Strategy<Value = String> {
            let year = prop_oneof![
                Just(String::new()),
                Just(" *".to_string()),
                (2030u32..=2100).prop_map(|y| format!(" {y}-2100")),
            ];
            (field(0, 59), field(0, 23), field(1, 28), field(1, 12), year)
                .prop_map(|(mi, h, dom, mo, y)| format!("{mi} {h} {dom} {mo} *{y}"))
        }

        proptest! {
            #[test]
            fn what_is_accepted_has_a_next_fire_time(expr in firing_cron(), zone in prop::sample::select(vec!["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])) {
                let cron = parse(&expr).map_err(|e| TestCaseError::fail(format!("{expr}: {e}")))?;
                let tz: Tz = zone.parse().unwrap();
                let now = Utc.with_ymd_and_hms(2026, 12, 4, 20, 0, 0).unwrap();
                let next = cron.next_after(tz, now);
                prop_assert!(next.is_some(), "{expr} in {zone} never fires");
                prop_assert!(next.unwrap() > now);
            }

            #[test]
            fn out_of_range_values_name_their_field(index in 0usize..5, offset in 0u32..40, minimum in any::<bool>()) {
                let rules = [&MINUTE, &HOUR, &DAY_OF_MONTH, &MONTH, &DAY_OF_WEEK];
                let rule = rules[index];
                let bad = if minimum && rule.min > 0 { rule.min - 1 } else { rule.max + 1 + offset };
                let mut fields = vec!["0", "0", "1", "1", "*"].into_iter().map(String::from).collect::<Vec<_>>();
                fields[index] = bad.to_string();
                let expr = fields.join(" ");
                let err = parse(&expr).expect_err(&expr);
                prop_assert_eq!(err.field, Some(rule.name), "{}: {}", expr, err);
                prop_assert!(err.message.starts_with(rule.name));
            }

            #[test]
            fn arbitrary_input_never_panics(s in "\\PC{0,40}") {
                let _ = parse(&s);
            }
        }
    }
}
