//! The budgets of product.md §6 as a rerunnable benchmark (not a timed test):
//!
//!   cargo bench --bench budgets                 # N = 1,000 and 10,000
//!   cargo bench --bench budgets -- 1000 50000   # any sizes
//!
//! For each N it writes N definitions as N files, then measures against real
//! PostgreSQL (ACTIVITY_SYNC_TEST_POSTGRES_URL, as the tests use) and the in-process
//! Temporal test server: validate, first sync (rate limit off), no-op sync, and a sync
//! after one file changed — with rows written, mutating and List RPC counts, and peak
//! resident memory. It prints a table and marks each figure against its budget.

use activity_sync::config::Settings;
use activity_sync::report::{Report, Trigger};
use activity_sync::source;
use activity_sync::store::Store;
use activity_sync::sync::{Engine, Request};
use std::sync::Arc;
use std::time::{Duration, Instant};
use temporal_test_server::TestServer;

fn definition(i: usize, cron: &str) -> String {
    format!(
        "apiVersion: activity-core/v1\nkind: ActivityDefinition\nmetadata:\n  name: bench-{i:06}\n  labels: {{customer: c{}}}\nspec:\n  activity: usage_report\n  input: {{customer: c{}, n: {i}}}\n  trigger:\n    cron: \"{cron}\"\n    timezone: Europe/Berlin\n  schedule: {{overlap: skip, catchupWindow: 10m}}\n  execution: {{timeout: 5m, retry: {{maximumAttempts: 3}}}}\n",
        i % 97,
        i % 97
    )
}

/// Peak resident set size of this process so far, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Runs the built binary for one (no-op) sync under `/usr/bin/time` and returns its
/// maximum resident set size.
fn sidecar_peak_rss_mib(
    dir: &std::path::Path,
    database_url: &str,
    temporal_url: &str,
) -> Option<f64> {
    let out = std::process::Command::new("/usr/bin/time")
        .args([
            "-f",
            "%M",
            env!("CARGO_BIN_EXE_activity-sync"),
            "sync",
            "--format",
            "json",
        ])
        .env("ACTIVITY_SYNC_DEFINITIONS_DIR", dir)
        .env("ACTIVITY_SYNC_DATABASE_URL", database_url)
        .env("ACTIVITY_SYNC_TEMPORAL_ADDRESS", temporal_url)
        .env("ACTIVITY_SYNC_TEMPORAL_MAX_RPS", "0")
        .env("ACTIVITY_SYNC_LOG", "error")
        .output()
        .ok()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kb: f64 = stderr.lines().last()?.trim().parse().ok()?;
    Some(kb / 1024.0)
}

struct Row {
    what: String,
    value: String,
    budget: String,
    ok: Option<bool>,
}

fn row(
    what: impl Into<String>,
    value: impl Into<String>,
    budget: impl Into<String>,
    ok: Option<bool>,
) -> Row {
    Row {
        what: what.into(),
        value: value.into(),
        budget: budget.into(),
        ok,
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

async fn timed(engine: &Engine) -> (Report, Duration) {
    let started = Instant::now();
    let report = engine.run(&Request::new(Trigger::Cli)).await;
    (report, started.elapsed())
}

async fn fresh_postgres() -> (String, String, String) {
    let admin_url = std::env::var("ACTIVITY_SYNC_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let name = format!("activity_sync_bench_{}", std::process::id());
    let admin = sqlx::PgPool::connect(&admin_url)
        .await
        .expect("PostgreSQL is reachable");
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create the bench database");
    admin.close().await;
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .unwrap_or(admin_url.clone());
    (format!("{base}/{name}"), admin_url, name)
}

async fn bench(n: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    let dir = tempfile::tempdir().expect("a temp dir");
    // One definition per file up to the 10,000-file limit; beyond it, several per file.
    let files = n.min(activity_sync::source::MAX_FILES);
    let per_file = n.div_ceil(files);
    let file_text = |f: usize, changed: Option<usize>| -> String {
        (f * per_file..((f + 1) * per_file).min(n))
            .map(|i| {
                let cron = if Some(i) == changed {
                    "0 7 * * *"
                } else {
                    "0 6 * * *"
                };
                format!("---\n{}", definition(i, cron))
            })
            .collect()
    };
    for f in 0..files {
        std::fs::write(
            dir.path().join(format!("def-{f:06}.yaml")),
            file_text(f, None),
        )
        .unwrap();
    }

    let started = Instant::now();
    let src = source::load(dir.path(), chrono::Utc::now()).expect("readable");
    let validate = started.elapsed();
    assert_eq!(src.set.definitions.len(), n);
    let budget = if n <= 10_000 {
        Some(validate <= Duration::from_secs(1))
    } else {
        None
    };
    rows.push(row(
        format!("validate {n} definitions in {files} files"),
        secs(validate),
        "≤ 1 s at 10,000",
        budget,
    ));
    drop(src);

    let temporal = TestServer::start().await;
    let (url, admin_url, db_name) = fresh_postgres().await;
    let mut settings = Settings::defaults();
    settings.definitions_dir = dir.path().to_path_buf();
    settings.database_url = activity_sync::config::Secret::new(url.clone());
    settings.temporal.address = temporal.url();
    settings.temporal.max_rps = 0;
    settings.temporal.concurrency = 16;
    let store = Store::open(&url).unwrap();
    let engine = Engine::new(Arc::new(settings), store.clone());

    let (first, took) = timed(&engine).await;
    assert!(first.ok, "{:?}", first.errors);
    let at_10k = n <= 10_000;
    rows.push(row(
        format!("first sync of {n}"),
        secs(took),
        "≤ 20 s at 10,000",
        at_10k.then_some(took <= Duration::from_secs(20)),
    ));

    let written = store.rows_written();
    temporal.reset_calls();
    let (noop, took) = timed(&engine).await;
    assert!(noop.ok, "{:?}", noop.errors);
    let rows_written = store.rows_written() - written;
    let mutating = temporal.mutating_calls();
    let pages = temporal.calls("ListSchedules");
    let stages: Vec<String> = noop
        .stage_durations
        .iter()
        .map(|(stage, d)| format!("{} {:.0} ms", stage.as_str(), d.as_secs_f64() * 1000.0))
        .collect();
    rows.push(row(
        "no-op: plan + apply per stage, after observing",
        stages.join(", "),
        "",
        None,
    ));
    rows.push(row(
        format!("no-op sync of {n}"),
        secs(took),
        "≤ 1 s",
        at_10k.then_some(took <= Duration::from_secs(1)),
    ));
    rows.push(row(
        "  rows written",
        rows_written.to_string(),
        "0",
        Some(rows_written == 0),
    ));
    rows.push(row(
        "  mutating RPCs",
        mutating.to_string(),
        "0",
        Some(mutating == 0),
    ));
    rows.push(row(
        "  ListSchedules pages",
        pages.to_string(),
        "≤ 11 at 10,000",
        at_10k.then_some(pages <= 11),
    ));

    // Change one definition (number 7) and nothing else.
    let file = 7 / per_file;
    std::fs::write(
        dir.path().join(format!("def-{file:06}.yaml")),
        file_text(file, Some(7)),
    )
    .unwrap();
    let written = store.rows_written();
    temporal.reset_calls();
    let (one, took) = timed(&engine).await;
    assert!(one.ok, "{:?}", one.errors);
    let changed_rows = store.rows_written() - written;
    let mutating = temporal.mutating_calls();
    rows.push(row(
        format!("one-change sync of {n}"),
        secs(took),
        "≤ 1 s",
        at_10k.then_some(took <= Duration::from_secs(1)),
    ));
    rows.push(row(
        "  rows written (definition + applied hash)",
        changed_rows.to_string(),
        "2",
        Some(changed_rows == 2),
    ));
    rows.push(row(
        "  mutating RPCs",
        mutating.to_string(),
        "1 (that item)",
        Some(mutating == 1),
    ));
    match sidecar_peak_rss_mib(dir.path(), &url, &temporal.url()) {
        Some(rss) => rows.push(row(
            format!("  peak RSS of `activity-sync sync` with {n} loaded"),
            format!("{rss:.0} MiB"),
            "≤ 150 MiB at 10,000",
            at_10k.then_some(rss <= 150.0),
        )),
        None => rows.push(row(
            "  peak RSS of `activity-sync sync`",
            "not measured (/usr/bin/time missing)",
            "",
            None,
        )),
    }
    rows.push(row(
        "  peak RSS of this bench process (test server inside)",
        format!("{:.0} MiB", peak_rss_mib()),
        "",
        None,
    ));

    store.close().await;
    temporal.stop().await;
    if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"
        )))
        .execute(&admin)
        .await;
    }
    rows
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000]
    } else {
        sizes
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut failed = false;
    println!("| work | measured | budget | |");
    println!("|---|---|---|---|");
    for n in sizes {
        for r in runtime.block_on(bench(n)) {
            let mark = match r.ok {
                Some(true) => "ok",
                Some(false) => {
                    failed = true;
                    "OVER"
                }
                None => "",
            };
            println!("| {} | {} | {} | {mark} |", r.what, r.value, r.budget);
        }
    }
    if failed {
        std::process::exit(1);
    }
}
