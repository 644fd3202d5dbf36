//! Schedule spec canonicalisation, as the server does it on Create and Update: cron
//! strings and calendars are compiled into `structured_calendar` (plus `interval` and
//! `timezone_name` for `@every` and `CRON_TZ=`), ranges are cleaned, policy defaults
//! are filled in. Also computes future action times for Describe and List.

use activity_sync::definition::cron::{self, Calendar, CronKind, Range as CronRange};
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use prost_wkt_types::{Duration, Timestamp};
use temporalio_common::protos::temporal::api::schedule::v1::{
    IntervalSpec, Range, Schedule, SchedulePolicies, ScheduleSpec, StructuredCalendarSpec,
};

/// The catch-up window Describe shows when none was set: one year.
const DEFAULT_CATCHUP_SECS: i64 = 365 * 24 * 3600;
/// The smallest catch-up window; smaller ones are clamped.
const MIN_CATCHUP_SECS: i64 = 10;

fn range(r: &CronRange) -> Range {
    Range {
        start: r.start as i32,
        end: r.end as i32,
        step: r.step as i32,
    }
}

fn ranges(rs: &[CronRange]) -> Vec<Range> {
    rs.iter().map(range).collect()
}

/// A year list covering every calendar year is shown as empty (= every year).
fn years(rs: &[CronRange]) -> Vec<Range> {
    match rs {
        [r] if r.start == cron::MIN_YEAR && r.end == cron::MAX_YEAR && r.step == 1 => Vec::new(),
        other => ranges(other),
    }
}

fn clean(rs: &mut [Range]) {
    for r in rs {
        r.end = r.end.max(r.start);
        if r.step <= 0 {
            r.step = 1;
        }
    }
}

fn secs(seconds: i64) -> Duration {
    Duration { seconds, nanos: 0 }
}

/// Canonicalises a spec; the error is the reason after `Invalid schedule spec: `.
pub fn normalise_spec(mut spec: ScheduleSpec) -> Result<ScheduleSpec, String> {
    let mut strings = std::mem::take(&mut spec.cron_string);
    // Calendars are cron fields by name, with their own defaults for empty fields.
    for c in std::mem::take(&mut spec.calendar) {
        let field = |v: &str, default: &'static str| {
            if v.trim().is_empty() {
                default.to_string()
            } else {
                v.to_string()
            }
        };
        strings.push(format!(
            "{} {} {} {} {} {} {}",
            field(&c.second, "0"),
            field(&c.minute, "0"),
            field(&c.hour, "0"),
            field(&c.day_of_month, "*"),
            field(&c.month, "*"),
            field(&c.day_of_week, "*"),
            field(&c.year, "*"),
        ));
    }
    for s in strings {
        let parsed = cron::parse(&s).map_err(|e| e.to_string())?;
        if let Some(tz) = parsed.timezone {
            if !spec.timezone_name.is_empty() && spec.timezone_name != tz {
                return Err("conflicting timezone names".into());
            }
            spec.timezone_name = tz;
        }
        match parsed.kind {
            CronKind::Calendar(c) => spec.structured_calendar.push(StructuredCalendarSpec {
                second: ranges(&c.second),
                minute: ranges(&c.minute),
                hour: ranges(&c.hour),
                day_of_month: ranges(&c.day_of_month),
                month: ranges(&c.month),
                day_of_week: ranges(&c.day_of_week),
                year: years(&c.year),
                comment: String::new(),
            }),
            CronKind::Interval {
                every_secs,
                phase_secs,
            } => spec.interval.push(IntervalSpec {
                interval: Some(secs(every_secs as i64)),
                phase: (phase_secs > 0).then(|| secs(phase_secs as i64)),
            }),
        }
    }
    for cal in spec
        .structured_calendar
        .iter_mut()
        .chain(spec.exclude_structured_calendar.iter_mut())
    {
        for field in [
            &mut cal.second,
            &mut cal.minute,
            &mut cal.hour,
            &mut cal.day_of_month,
            &mut cal.month,
            &mut cal.day_of_week,
            &mut cal.year,
        ] {
            clean(field);
        }
    }
    for iv in &mut spec.interval {
        let every = iv.interval.as_ref().map(|d| d.seconds).unwrap_or(0);
        let phase = iv.phase.as_ref().map(|d| d.seconds).unwrap_or(0);
        if every < 1 {
            return Err("interval is too small".into());
        }
        if phase < 0 {
            return Err("phase is negative".into());
        }
        if phase >= every {
            return Err("phase cannot be greater than Interval".into());
        }
        iv.interval = Some(secs(every));
        iv.phase = (phase > 0).then(|| secs(phase));
    }
    if !spec.timezone_name.is_empty() && spec.timezone_name.parse::<Tz>().is_err() {
        return Err(format!("unknown time zone {}", spec.timezone_name));
    }
    Ok(spec)
}

/// Canonicalises a whole schedule: its spec, and the policy defaults Describe shows.
pub fn normalise_schedule(mut schedule: Schedule) -> Result<Schedule, String> {
    schedule.spec = Some(normalise_spec(schedule.spec.take().unwrap_or_default())?);
    let policies = schedule
        .policies
        .get_or_insert_with(SchedulePolicies::default);
    if policies.overlap_policy == 0 {
        policies.overlap_policy = 1;
    }
    let window = policies
        .catchup_window
        .as_ref()
        .map(|d| d.seconds)
        .unwrap_or(DEFAULT_CATCHUP_SECS);
    policies.catchup_window = Some(secs(window.max(MIN_CATCHUP_SECS)));
    Ok(schedule)
}

fn to_calendar(c: &StructuredCalendarSpec) -> Calendar {
    let conv = |rs: &[Range]| {
        rs.iter()
            .map(|r| CronRange {
                start: r.start.max(0) as u32,
                end: r.end.max(r.start).max(0) as u32,
                step: r.step.max(1) as u32,
            })
            .collect()
    };
    Calendar {
        second: conv(&c.second),
        minute: conv(&c.minute),
        hour: conv(&c.hour),
        day_of_month: conv(&c.day_of_month),
        month: conv(&c.month),
        day_of_week: conv(&c.day_of_week),
        year: conv(&c.year),
    }
}

pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// The next `n` nominal times after `after` (jitter left out).
pub fn future_times(spec: &ScheduleSpec, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    let tz: Tz = spec.timezone_name.parse().unwrap_or(Tz::UTC);
    let calendars: Vec<Calendar> = spec.structured_calendar.iter().map(to_calendar).collect();
    let mut out = Vec::new();
    let mut cursor = after;
    while out.len() < n {
        let mut next: Option<DateTime<Utc>> = None;
        for c in &calendars {
            if let Some(t) = c.next_after(tz, cursor) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        for iv in &spec.interval {
            let every = iv.interval.as_ref().map(|d| d.seconds).unwrap_or(0).max(1);
            let phase = iv.phase.as_ref().map(|d| d.seconds).unwrap_or(0);
            let k = (cursor.timestamp() - phase).div_euclid(every) + 1;
            if let Some(t) = Utc.timestamp_opt(k * every + phase, 0).single() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        match next {
            Some(t) => {
                out.push(t);
                cursor = t;
            }
            None => break,
        }
    }
    out
}
