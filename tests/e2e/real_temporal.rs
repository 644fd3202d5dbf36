//! The one test path against a real Temporal server. Opt-in: it runs only when
//! TEMPORAL_ADDRESS is set (e.g. `temporal server start-dev` → `127.0.0.1:7233`);
//! TEMPORAL_NAMESPACE defaults to `default`. It uses its own schedule-ID prefix and
//! owner, and deletes what it created.

use crate::support::{Backend, Dir, TestDb, cron_definition};
use activity_sync::config::Settings;
use activity_sync::report::Trigger;
use activity_sync::store::Store;
use activity_sync::sync::{Engine, Request};
use std::sync::Arc;

#[tokio::test]
async fn schedules_round_trip_against_a_real_temporal() {
    let Ok(address) = std::env::var("TEMPORAL_ADDRESS") else {
        eprintln!(
            "TEMPORAL_ADDRESS is not set: the real-Temporal test did nothing (see README, Tests)"
        );
        return;
    };
    let run = uuid::Uuid::now_v7().simple().to_string();
    let defs = Dir::new();
    defs.write("a.yaml", cron_definition("a", "0 6 * * *"));
    defs.write(
        "b.yaml",
        cron_definition("b", "@hourly").replace("spec:\n", "spec:\n  enabled: false\n"),
    );
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = Settings::defaults();
    settings.definitions_dir = defs.path().to_path_buf();
    settings.owner = format!("e2e-{run}");
    settings.temporal.address = if address.contains("://") {
        address
    } else {
        format!("http://{address}")
    };
    settings.temporal.namespace =
        std::env::var("TEMPORAL_NAMESPACE").unwrap_or_else(|_| "default".into());
    settings.temporal.schedule_id_prefix = format!("activity-sync-e2e-{run}:");
    let engine = Engine::new(Arc::new(settings), Store::open(&db.url).unwrap());

    let first = engine.run(&Request::new(Trigger::Cli)).await;
    assert!(first.ok, "{:?}", first.errors);
    let s = first.schedules.unwrap();
    assert_eq!(
        (s.created, s.paused),
        (2, 0),
        "b is created paused, not paused later"
    );

    // Real List is eventually consistent: the second run may Describe instead of
    // trusting List, but it must not create or change anything.
    let second = engine.run(&Request::new(Trigger::Cli)).await;
    assert!(second.ok, "{:?}", second.errors);
    let s = second.schedules.unwrap();
    assert_eq!((s.created, s.updated, s.deleted), (0, 0, 0), "{s:?}");

    std::fs::remove_file(defs.path().join("a.yaml")).unwrap();
    std::fs::remove_file(defs.path().join("b.yaml")).unwrap();
    let mut cleanup = Request::new(Trigger::Cli);
    cleanup.force = true;
    let last = engine.run(&cleanup).await;
    assert!(last.ok, "{:?}", last.errors);
}
