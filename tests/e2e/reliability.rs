//! Reliability: input at the limits, crashes, replicas under a burst, and a bounded
//! load test of the admin API. Everything runs on loopback and stops by itself.

use crate::support::{Backend, Dir, Serve, TestDb, cron_definition, http, run_with};
use std::time::{Duration, Instant};
use temporal_test_server::TestServer;

#[test]
fn a_one_mebibyte_file_with_five_thousand_definitions_is_read() {
    let dir = Dir::new();
    let text: String = (0..5000)
        .map(|i| {
            format!(
                "---\n{{apiVersion: activity-core/v1, kind: ActivityDefinition, metadata: {{name: d{i:05}}}, spec: {{activity: report, trigger: {{cron: '0 {} * * *'}}}}}}\n",
                i % 24
            )
        })
        .collect();
    assert!(text.len() <= 1024 * 1024, "{} bytes", text.len());
    dir.write("big.yaml", &text);
    let started = Instant::now();
    let out = run_with(&["validate", dir.str()], &[], Duration::from_secs(30));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("5000 definition(s)"), "{}", out.stdout);
    eprintln!(
        "validate of one 1 MiB file with 5,000 definitions: {:?}",
        started.elapsed()
    );
}

/// Settings shared by the replica tests: one PostgreSQL database, one Temporal.
fn replica_env<'a>(defs: &'a Dir, db: &'a TestDb, temporal: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("ACTIVITY_SYNC_DEFINITIONS_DIR", defs.str()),
        ("ACTIVITY_SYNC_DATABASE_URL", db.url.as_str()),
        ("ACTIVITY_SYNC_TEMPORAL_ADDRESS", temporal),
        ("ACTIVITY_SYNC_ADMIN_TOKEN", "t"),
        ("ACTIVITY_SYNC_WATCH_MODE", "off"),
        ("ACTIVITY_SYNC_TEMPORAL_MAX_RPS", "0"),
    ]
}

const AUTH: (&str, &str) = ("Authorization", "Bearer t");

#[test]
fn two_replicas_under_a_burst_never_overlap_and_converge() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let temporal = rt.block_on(TestServer::start());
    temporal.set_latency(Duration::from_millis(5));
    let db = rt.block_on(TestDb::new(Backend::Postgres));
    let defs = Dir::new();
    for i in 0..40 {
        defs.write(
            &format!("d{i:02}.yaml"),
            cron_definition(&format!("d{i:02}"), "@daily"),
        );
    }
    let url = temporal.url();
    let env = replica_env(&defs, &db, &url);
    let a = Serve::start(&env);
    let b = Serve::start(&env);
    let addrs = [a.addr, b.addr];
    let calls: Vec<_> = (0..30)
        .map(|i| {
            let addr = addrs[i % 2];
            std::thread::spawn(move || http(addr, "POST", "/admin/sync", &[AUTH]))
        })
        .collect();
    for c in calls {
        let (code, body) = c.join().unwrap();
        assert_eq!(code, 200, "{body}");
    }
    let mut runs = rt.block_on(db.runs());
    runs.retain(|r| r.3.is_some());
    runs.sort_by(|x, y| x.3.cmp(&y.3));
    assert!(runs.len() >= 2, "{runs:?}");
    for pair in runs.windows(2) {
        assert!(
            pair[0].4 <= *pair[1].3.as_ref().unwrap(),
            "runs overlapped: {runs:?}"
        );
    }
    assert_eq!(temporal.schedule_ids().len(), 40);
    assert_eq!(
        temporal.calls("CreateSchedule"),
        40,
        "every schedule created exactly once"
    );
    drop((a, b));
    rt.block_on(db.drop_db());
}

#[test]
fn kill_9_during_a_run_then_restart_converges() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let temporal = rt.block_on(TestServer::start());
    temporal.set_latency(Duration::from_millis(150));
    let db = rt.block_on(TestDb::new(Backend::Postgres));
    let defs = Dir::new();
    for i in 0..30 {
        defs.write(
            &format!("d{i:02}.yaml"),
            cron_definition(&format!("d{i:02}"), "@daily"),
        );
    }
    let url = temporal.url();
    let mut env = replica_env(&defs, &db, &url);
    env.push(("ACTIVITY_SYNC_ON_STARTUP", "false"));
    env.push(("ACTIVITY_SYNC_TEMPORAL_CONCURRENCY", "2"));
    let mut first = Serve::start(&env);
    let addr = first.addr;
    let call = std::thread::spawn(move || http(addr, "POST", "/admin/sync", &[AUTH]));
    first.wait_for(Duration::from_secs(20), "some schedules created", |_| {
        (temporal.schedule_ids().len() >= 3).then_some(())
    });
    first.child.kill().expect("kill -9");
    let _ = first.child.wait();
    let _ = call.join();
    let created_before = temporal.schedule_ids().len();
    assert!(
        created_before < 30,
        "the run was cut short ({created_before} created)"
    );

    // A restart's startup run finishes the job; the lock died with the session.
    env.retain(|(k, _)| *k != "ACTIVITY_SYNC_ON_STARTUP");
    temporal.set_latency(Duration::ZERO);
    let second = Serve::start(&env);
    second.wait_for(Duration::from_secs(60), "ready", |s| {
        (s.get("/readyz").0 == 200).then_some(())
    });
    let (_, body) = second.post("/admin/sync", &[AUTH]);
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["schedules"]["created"], 0,
        "converged already: {report}"
    );
    assert_eq!(temporal.schedule_ids().len(), 30);
    drop(second);
    rt.block_on(db.drop_db());
}

#[test]
fn a_burst_of_admin_calls_loses_none_and_answers_no_5xx() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let temporal = rt.block_on(TestServer::start());
    let db = rt.block_on(TestDb::new(Backend::Sqlite));
    let defs = Dir::new();
    defs.write("a.yaml", cron_definition("a", "@daily"));
    let url = temporal.url();
    let env = replica_env(&defs, &db, &url);
    let s = Serve::start(&env);
    let addr = s.addr;
    let started = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                for _ in 0..25 {
                    let t = Instant::now();
                    let (code, body) = http(addr, "POST", "/admin/sync?schedules=false", &[AUTH]);
                    assert_eq!(code, 200, "{body}");
                    assert!(body.contains("\"run_id\""), "{body}");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all: Vec<Duration> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    all.sort();
    let p = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    eprintln!(
        "200 admin calls from 8 clients in {:?}: p50 {:?}, p99 {:?}",
        started.elapsed(),
        p(0.5),
        p(0.99)
    );
    assert_eq!(all.len(), 200);
}
