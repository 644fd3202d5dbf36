//! `activity-sync serve` as a process, over real HTTP, with real files, a real
//! database and the Temporal test server.

use crate::support::{
    Backend, Dir, Serve, TestDb, cron_definition, http, kubelet_publish, postgres_admin_url,
    run_with,
};
use std::time::{Duration, Instant};
use temporal_test_server::TestServer;

/// A runtime for the in-process Temporal test server (and database set-up), a
/// definitions directory and a SQLite database.
struct World {
    rt: tokio::runtime::Runtime,
    temporal: TestServer,
    defs: Dir,
    db: TestDb,
}

impl World {
    fn new() -> World {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let temporal = rt.block_on(TestServer::start());
        let db = rt.block_on(TestDb::new(Backend::Sqlite));
        World {
            rt,
            temporal,
            defs: Dir::new(),
            db,
        }
    }

    /// The environment of a sidecar on this world, plus `extra`.
    fn env<'a>(&'a self, url: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut env = vec![
            ("ACTIVITY_SYNC_DEFINITIONS_DIR", self.defs.str()),
            ("ACTIVITY_SYNC_DATABASE_URL", self.db.url.as_str()),
            ("ACTIVITY_SYNC_TEMPORAL_ADDRESS", url),
            ("ACTIVITY_SYNC_ADMIN_TOKEN", "s3cret"),
            ("ACTIVITY_SYNC_WATCH_MODE", "off"),
        ];
        env.extend_from_slice(extra);
        env
    }
}

const AUTH: (&str, &str) = ("Authorization", "Bearer s3cret");

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn ready(s: &Serve) -> Option<()> {
    (s.get("/readyz").0 == 200).then_some(())
}

#[test]
fn admin_auth_matrix() {
    let w = World::new();
    let url = w.temporal.url();
    // A token configured: missing or wrong → 401, right → 200; probes stay open.
    let s = Serve::start(&w.env(&url, &[]));
    assert_eq!(s.get("/healthz").0, 200);
    assert_eq!(s.get("/admin/status").0, 401);
    assert_eq!(
        s.post("/admin/sync", &[("Authorization", "Bearer wrong")])
            .0,
        401
    );
    assert_eq!(s.post("/admin/sync", &[("Authorization", "s3cret")]).0, 401);
    let (code, body) = s.get_with_auth("/admin/status");
    assert_eq!(code, 200);
    assert!(
        !body.contains("s3cret"),
        "the token leaked into status: {body}"
    );
    assert!(
        !s.log.lock().unwrap().contains("s3cret"),
        "the token leaked into the logs"
    );
    drop(s);

    // No token: the admin API is disabled.
    let env: Vec<_> = w
        .env(&url, &[])
        .into_iter()
        .filter(|(k, _)| *k != "ACTIVITY_SYNC_ADMIN_TOKEN")
        .collect();
    let s = Serve::start(&env);
    let (code, body) = s.post("/admin/sync", &[]);
    assert_eq!(
        (code, json(&body)["error"].as_str()),
        (403, Some("admin API disabled"))
    );
    assert_eq!(s.get("/admin/status").0, 403);
    drop(s);

    // Unauthenticated access: only on a loopback listener.
    let mut open = env.clone();
    open.push(("ACTIVITY_SYNC_ADMIN_ALLOW_UNAUTHENTICATED", "true"));
    let s = Serve::start(&open);
    assert_eq!(s.get("/admin/status").0, 200);
    drop(s);
    let refused = run_with(
        &["serve", "--listen", "0.0.0.0:0"],
        &open,
        Duration::from_secs(20),
    );
    assert_eq!(refused.code, 64, "{refused:?}");
    assert!(
        refused.stderr.contains("not a loopback address"),
        "{}",
        refused.stderr
    );
}

impl Serve {
    fn get_with_auth(&self, path: &str) -> (u16, String) {
        http(self.addr, "GET", path, &[AUTH])
    }
}

#[test]
fn sync_parameters_are_validated() {
    let w = World::new();
    let url = w.temporal.url();
    let s = Serve::start(&w.env(&url, &[]));
    for bad in [
        "/admin/sync?forse=true",
        "/admin/sync?force=maybe",
        "/admin/sync?dry_run=1&dry_run=0",
    ] {
        let (code, body) = s.post(bad, &[AUTH]);
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(json(&body)["error"].as_str().is_some(), "{body}");
    }
    w.defs.write("a.yaml", cron_definition("a", "@daily"));
    let (code, body) = s.post(
        "/admin/sync?dry_run=true&schedules=false&event_types=true",
        &[AUTH],
    );
    assert_eq!(code, 200);
    let r = json(&body);
    assert_eq!(
        (r["dry_run"].as_bool(), r["schedules"].is_null()),
        (Some(true), true)
    );
    assert_eq!(r["event_types"]["created"], 0);
    assert_eq!(r["definitions"]["created"], 1);
}

#[test]
fn concurrent_admin_calls_are_coalesced() {
    let w = World::new();
    w.temporal.set_latency(Duration::from_millis(100));
    let url = w.temporal.url();
    for i in 0..5 {
        w.defs.write(
            &format!("d{i}.yaml"),
            cron_definition(&format!("d{i}"), "@daily"),
        );
    }
    let s = Serve::start(&w.env(&url, &[("ACTIVITY_SYNC_ON_STARTUP", "false")]));
    let addr = s.addr;
    let calls: Vec<_> = (0..20)
        .map(|_| std::thread::spawn(move || http(addr, "POST", "/admin/sync", &[AUTH])))
        .collect();
    let mut run_ids = std::collections::BTreeSet::new();
    for c in calls {
        let (code, body) = c.join().unwrap();
        assert_eq!(code, 200, "{body}");
        let r = json(&body);
        assert!(r["ok"].as_bool().unwrap(), "{body}");
        run_ids.insert(r["run_id"].as_str().unwrap().to_string());
    }
    assert!(
        !run_ids.is_empty() && run_ids.len() <= 3,
        "{} runs for 20 calls",
        run_ids.len()
    );
    let runs = w.rt.block_on(w.db.runs());
    assert_eq!(runs.len(), run_ids.len(), "every run recorded once");
    assert_eq!(
        w.temporal.calls("CreateSchedule"),
        5,
        "no schedule created twice"
    );
}

#[test]
fn auto_watch_applies_a_kubelet_swap_without_an_admin_call() {
    let w = World::new();
    let url = w.temporal.url();
    kubelet_publish(
        w.defs.path(),
        "..2026_01_01",
        &[("a.yaml", cron_definition("a", "@daily"))],
    );
    let s = Serve::start(&w.env(
        &url,
        &[
            ("ACTIVITY_SYNC_WATCH_MODE", "auto"),
            ("ACTIVITY_SYNC_WATCH_DEBOUNCE_MS", "200"),
        ],
    ));
    s.wait_for(Duration::from_secs(20), "the startup run", ready);
    assert!(w.temporal.schedule("activity:a").is_some());
    let changed_at = Instant::now();
    kubelet_publish(
        w.defs.path(),
        "..2026_01_02",
        &[
            ("a.yaml", cron_definition("a", "@daily")),
            ("b.yaml", cron_definition("b", "@hourly")),
        ],
    );
    let report = s.wait_for(Duration::from_secs(20), "a watch-triggered run", |s| {
        let status = json(&s.get_with_auth("/admin/status").1);
        (status["last_report"]["trigger"] == "watch").then(|| status["last_report"].clone())
    });
    let latency = changed_at.elapsed();
    eprintln!("auto-watch latency: {latency:?} (debounce 200 ms)");
    assert_eq!(report["definitions"]["created"], 1, "{report}");
    assert!(w.temporal.schedule("activity:b").is_some());
    let metrics = s.get("/metrics").1;
    assert!(
        metrics.contains("activity_sync_runs_total{trigger=\"watch\",result=\"success\"} 1"),
        "{metrics}"
    );
}

#[test]
fn detect_sets_pending_and_does_not_sync() {
    let w = World::new();
    let url = w.temporal.url();
    w.defs.write("a.yaml", cron_definition("a", "@daily"));
    let s = Serve::start(&w.env(
        &url,
        &[
            ("ACTIVITY_SYNC_WATCH_MODE", "detect"),
            ("ACTIVITY_SYNC_WATCH_DEBOUNCE_MS", "100"),
        ],
    ));
    s.wait_for(Duration::from_secs(20), "the startup run", ready);
    assert!(
        s.get("/metrics")
            .1
            .contains("activity_sync_source_pending 0")
    );
    w.defs.write("b.yaml", cron_definition("b", "@daily"));
    s.wait_for(Duration::from_secs(20), "pending = 1", |s| {
        s.get("/metrics")
            .1
            .contains("activity_sync_source_pending 1")
            .then_some(())
    });
    let status = json(&s.get_with_auth("/admin/status").1);
    assert_eq!(status["source"]["changed_since_last_success"], true);
    assert_eq!(status["runs"], 1, "detect never syncs: {status}");
    assert!(w.temporal.schedule("activity:b").is_none());
    // An admin sync clears it.
    assert_eq!(s.post("/admin/sync", &[AUTH]).0, 200);
    assert!(
        s.get("/metrics")
            .1
            .contains("activity_sync_source_pending 0")
    );
}

/// Every sample line is `name{labels} value` with a number for the value.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            let v: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {l:?}"));
            (name.to_string(), v)
        })
        .collect()
}

#[test]
fn metrics_parse_and_move_after_runs() {
    let w = World::new();
    let url = w.temporal.url();
    w.defs.write("a.yaml", cron_definition("a", "@daily"));
    let s = Serve::start(&w.env(&url, &[]));
    s.wait_for(Duration::from_secs(20), "the startup run", ready);
    let before = parse_metrics(&s.get("/metrics").1);
    let value =
        |m: &[(String, f64)], name: &str| m.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    assert_eq!(value(&before, "activity_sync_last_run_success"), Some(1.0));
    assert_eq!(
        value(&before, "activity_sync_build_info{version=\"0.1.0\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(
            &before,
            "activity_sync_runs_total{trigger=\"startup\",result=\"success\"}"
        ),
        Some(1.0)
    );
    assert!(
        before
            .iter()
            .any(|(n, _)| n.starts_with("activity_sync_duration_seconds_bucket{stage=\"total\""))
    );
    w.defs.write("b.yaml", "kind: Broken\n");
    let (_, body) = s.post("/admin/sync", &[AUTH]);
    let report = json(&body);
    assert_eq!(report["ok"], false);
    let source_errors = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["stage"] == "source")
        .count();
    assert!(source_errors >= 1);
    let after = parse_metrics(&s.get("/metrics").1);
    assert_eq!(value(&after, "activity_sync_last_run_success"), Some(0.0));
    assert_eq!(
        value(
            &after,
            "activity_sync_runs_total{trigger=\"admin\",result=\"partial\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&after, "activity_sync_stage_errors_total{stage=\"source\"}"),
        Some(source_errors as f64)
    );
    assert_eq!(
        value(&after, "activity_sync_source_documents{state=\"invalid\"}"),
        Some(1.0)
    );
    assert!(value(&after, "activity_sync_last_error_timestamp_seconds").unwrap() > 0.0);
    let status = json(&s.get_with_auth("/admin/status").1);
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("apiVersion: missing"),
        "{status}"
    );
}

#[test]
fn the_database_down_then_up_recovers_without_a_restart() {
    let w = World::new();
    let url = w.temporal.url();
    w.defs.write("a.yaml", cron_definition("a", "@daily"));
    let name = format!("activity_sync_late_{}", uuid::Uuid::now_v7().simple());
    let admin = postgres_admin_url();
    let base = admin.rsplit_once('/').unwrap().0.to_string();
    let db_url = format!("{base}/{name}");
    let env: Vec<_> = w
        .env(&url, &[("ACTIVITY_SYNC_ON_STARTUP", "false")])
        .into_iter()
        .map(|(k, v)| {
            if k == "ACTIVITY_SYNC_DATABASE_URL" {
                (k, db_url.as_str())
            } else {
                (k, v)
            }
        })
        .collect();
    let s = Serve::start(&env);
    let (code, body) = s.post("/admin/sync", &[AUTH]);
    assert_eq!(code, 200);
    let r = json(&body);
    assert_eq!(r["ok"], false);
    assert_eq!(r["errors"][0]["stage"], "definitions", "{r}");
    // The database appears.
    w.rt.block_on(async {
        let pool = sqlx::PgPool::connect(&admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&pool)
            .await
            .unwrap();
    });
    let (_, body) = s.post("/admin/sync", &[AUTH]);
    let r = json(&body);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["definitions"]["created"], 1);
    drop(s);
    w.rt.block_on(async {
        let pool = sqlx::PgPool::connect(&admin).await.unwrap();
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&pool)
        .await;
    });
}

#[test]
fn sigterm_during_a_run_exits_cleanly_after_the_run() {
    let w = World::new();
    w.temporal.set_latency(Duration::from_millis(700));
    let url = w.temporal.url();
    w.defs.write("a.yaml", cron_definition("a", "@daily"));
    let s = Serve::start(&w.env(&url, &[("ACTIVITY_SYNC_ON_STARTUP", "false")]));
    let addr = s.addr;
    let call = std::thread::spawn(move || http(addr, "POST", "/admin/sync", &[AUTH]));
    s.wait_for(Duration::from_secs(10), "a run in flight", |s| {
        s.get("/metrics")
            .1
            .contains("activity_sync_in_progress 1")
            .then_some(())
    });
    assert_eq!(s.terminate(Duration::from_secs(30)), 0);
    let (code, body) = call.join().unwrap();
    assert_eq!(code, 200, "the run in flight finished and answered: {body}");
    assert!(w.temporal.schedule("activity:a").is_some());
}

#[test]
fn readyz_turns_ready_when_the_startup_run_finishes() {
    let w = World::new();
    w.temporal.set_latency(Duration::from_millis(1500));
    let url = w.temporal.url();
    w.defs.write("a.yaml", cron_definition("a", "@daily"));
    let s = Serve::start(&w.env(&url, &[]));
    // The listener is up at once; the startup run is still waiting on Temporal.
    assert_eq!(s.get("/healthz").0, 200);
    assert_eq!(s.get("/readyz").0, 503);
    s.wait_for(Duration::from_secs(30), "ready", ready);
    let status = json(&s.get_with_auth("/admin/status").1);
    assert_eq!(status["last_report"]["trigger"], "startup");
}

#[test]
fn the_rename_through_the_admin_api() {
    let w = World::new();
    let url = w.temporal.url();
    w.defs.write(
        "report-hourly.yaml",
        cron_definition("report-hourly", "0 * * * *"),
    );
    w.defs
        .write("other.yaml", cron_definition("other", "@daily"));
    let s = Serve::start(&w.env(&url, &[]));
    s.wait_for(Duration::from_secs(20), "the startup run", ready);
    w.defs.write(
        "report-daily.yaml",
        cron_definition("report-daily", "0 6 * * *"),
    );
    w.defs.write(
        "report-hourly.yaml",
        cron_definition("report-hourly", "0 * * * *")
            .replace("spec:\n", "spec:\n  enabled: false\n"),
    );
    let (code, body) = s.post("/admin/sync", &[AUTH]);
    assert_eq!(code, 200);
    let r = json(&body);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["schedules"]["created"], 1);
    assert_eq!(r["schedules"]["paused"], 1);
    let hourly = w.temporal.schedule("activity:report-hourly").unwrap();
    assert!(hourly.schedule.state.unwrap().paused);
}
