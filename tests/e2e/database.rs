//! The database stages against real PostgreSQL (a fresh database per test) and real
//! SQLite: every behaviour is checked on both backends.

use crate::support::{BACKENDS, Backend, Dir, TestDb, cron_definition, run_with};
use activity_sync::config::Settings;
use activity_sync::report::{Report, Trigger};
use activity_sync::store::Store;
use activity_sync::sync::{Engine, Request, Stages};
use std::sync::Arc;
use std::time::Duration;

/// One sidecar (engine + store) over a definitions directory and a test database.
struct Harness {
    engine: Engine,
    store: Store,
    defs: Dir,
}

impl Harness {
    fn new(db: &TestDb, owner: &str) -> Harness {
        let defs = Dir::new();
        let mut settings = Settings::defaults();
        settings.definitions_dir = defs.path().to_path_buf();
        settings.owner = owner.to_string();
        settings.sync.lock_timeout = Duration::from_secs(2);
        let store = Store::open(&db.url).expect("open store");
        Harness {
            engine: Engine::new(Arc::new(settings), store.clone()),
            store,
            defs,
        }
    }

    async fn sync(&self) -> Report {
        self.run(false, false).await
    }

    async fn run(&self, dry_run: bool, force: bool) -> Report {
        let request = Request {
            trigger: Trigger::Cli,
            caller: Some("test".into()),
            stages: Stages {
                definitions: true,
                event_types: true,
                schedules: false,
            },
            dry_run,
            force,
        };
        self.engine.run(&request).await
    }

    /// Writes `names` as daily cron definitions, one file each.
    fn define(&self, names: &[&str]) {
        for n in names {
            self.defs
                .write(&format!("{n}.yaml"), cron_definition(n, "@daily"));
        }
    }

    fn forget(&self, name: &str) {
        std::fs::remove_file(self.defs.path().join(format!("{name}.yaml"))).unwrap();
    }
}

fn counts(r: &Report) -> (usize, usize, usize, usize) {
    let c = r.definitions.as_ref().expect("definitions stage ran");
    (c.created, c.updated, c.removed, c.unchanged)
}

async fn each_backend<F, Fut>(test: F)
where
    F: Fn(TestDb) -> Fut,
    Fut: std::future::Future<Output = TestDb>,
{
    for backend in BACKENDS {
        let db = TestDb::new(backend).await;
        let db = test(db).await;
        db.drop_db().await;
    }
}

#[tokio::test]
async fn create_update_unchanged_soft_remove_and_revive() {
    each_backend(|db| async move {
        let h = Harness::new(&db, "activity-sync");
        h.define(&["a", "b", "c"]);
        let r = h.sync().await;
        assert!(r.ok, "{:?}", r.errors);
        assert_eq!(counts(&r), (3, 0, 0, 0));

        h.defs.write("b.yaml", cron_definition("b", "0 7 * * *"));
        h.forget("c");
        let r = h.sync().await;
        assert!(r.ok, "{:?}", r.errors);
        assert_eq!(counts(&r), (0, 1, 1, 1), "{:?}", db.backend);
        let rows = db.rows("activity_definitions").await;
        let c = rows.iter().find(|r| r.name == "c").unwrap();
        assert!(
            !c.enabled && c.removed,
            "soft-removed, never deleted: {c:?}"
        );
        assert_eq!(rows.len(), 3);

        h.define(&["c"]);
        let r = h.sync().await;
        assert_eq!(counts(&r), (1, 0, 0, 2), "revival counts as created");
        assert!(
            r.changes
                .iter()
                .any(|c| c.name == "c" && c.action == "revive")
        );
        let c = db
            .rows("activity_definitions")
            .await
            .into_iter()
            .find(|r| r.name == "c")
            .unwrap();
        assert!(c.enabled && !c.removed, "{c:?}");
        db
    })
    .await;
}

#[tokio::test]
async fn a_second_run_on_an_unchanged_source_writes_nothing() {
    each_backend(|db| async move {
        let h = Harness::new(&db, "activity-sync");
        h.define(&["a", "b"]);
        h.defs.write(
            "events.yaml",
            "apiVersion: activity-core/v1\nkind: EventType\nmetadata: {name: order.placed}\nspec: {}\n---\napiVersion: activity-core/v1\nkind: ActivityDefinition\nmetadata: {name: on-order}\nspec: {activity: x, trigger: {event: order.paid}}\n",
        );
        let first = h.sync().await;
        assert!(first.ok, "{:?}", first.errors);
        let written = h.store.rows_written();
        assert_eq!(written, 3 + 2, "3 definitions and 2 event types (one undeclared)");
        let before = (db.rows("activity_definitions").await, db.rows("activity_event_types").await);
        let xmin_before = xmin(&db).await;

        let second = h.sync().await;
        assert!(second.ok);
        assert_eq!(h.store.rows_written(), written, "a no-op run must write no rows");
        assert!(second.changes.is_empty(), "{:?}", second.changes);
        assert_eq!(counts(&second), (0, 0, 0, 3));
        assert_eq!(second.event_types.as_ref().unwrap().unchanged, 2);
        assert_eq!(before, (db.rows("activity_definitions").await, db.rows("activity_event_types").await));
        assert_eq!(xmin_before, xmin(&db).await, "no row version changed");

        // One changed file writes exactly one row.
        h.defs.write("a.yaml", cron_definition("a", "@hourly"));
        let third = h.sync().await;
        assert_eq!(h.store.rows_written(), written + 1);
        assert_eq!(counts(&third), (0, 1, 0, 2));
        db
    })
    .await;
}

/// PostgreSQL's row versions (`xmin`) change with every write, even one that sets the
/// same values; on SQLite the row contents stand in for them.
async fn xmin(db: &TestDb) -> Vec<String> {
    if db.backend != Backend::Postgres {
        return Vec::new();
    }
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT name || ':' || xmin::text FROM activity_definitions ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows
}

#[tokio::test]
async fn an_invalid_file_freezes_its_rows_and_suspends_pruning() {
    each_backend(|db| async move {
        let h = Harness::new(&db, "activity-sync");
        h.define(&["keep", "gone"]);
        h.defs.write(
            "shared.yaml",
            format!(
                "{}---\n{}",
                cron_definition("frozen-one", "@daily"),
                cron_definition("frozen-two", "@daily")
            ),
        );
        assert!(h.sync().await.ok);
        let before = db.rows("activity_definitions").await;

        // shared.yaml gets a typo in one document and a change in the other; gone.yaml
        // is deleted. Nothing of shared.yaml may change and nothing may be removed.
        h.defs.write(
            "shared.yaml",
            format!(
                "{}---\n{}",
                cron_definition("frozen-one", "@hourly"),
                cron_definition("frozen-two", "@daily").replace("cron:", "cronn:")
            ),
        );
        h.forget("gone");
        let r = h.sync().await;
        assert!(!r.ok);
        assert_eq!(r.pruning, "suspended: 1 invalid document(s)");
        assert_eq!(r.source.invalid, 1);
        let e = &r.errors[0];
        assert_eq!(
            (e.file.as_deref(), e.line, e.column),
            (Some("shared.yaml"), Some(17), Some(5)),
            "{e:?}"
        );
        assert!(e.message.contains("unknown field `cronn`"), "{}", e.message);
        assert_eq!(counts(&r), (0, 0, 0, 1));
        assert_eq!(
            before,
            db.rows("activity_definitions").await,
            "nothing changed"
        );
        db
    })
    .await;
}

#[tokio::test]
async fn an_empty_directory_removes_nothing_without_force() {
    each_backend(|db| async move {
        let h = Harness::new(&db, "activity-sync");
        h.define(&["a", "b"]);
        assert!(h.sync().await.ok);
        h.forget("a");
        h.forget("b");
        let r = h.sync().await;
        assert!(!r.ok);
        assert_eq!(counts(&r), (0, 0, 0, 0));
        assert!(
            r.pruning.contains("would remove all 2 owned definitions"),
            "{}",
            r.pruning
        );
        assert!(
            r.errors
                .iter()
                .any(|e| e.message.contains("rerun with force=true")),
            "{:?}",
            r.errors
        );
        assert!(
            db.rows("activity_definitions")
                .await
                .iter()
                .all(|r| r.enabled && !r.removed)
        );
        db
    })
    .await;
}

#[tokio::test]
async fn removing_sixty_percent_needs_force() {
    each_backend(|db| async move {
        let h = Harness::new(&db, "activity-sync");
        let names = ["d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9"];
        h.define(&names);
        assert!(h.sync().await.ok);
        for n in &names[..6] {
            h.forget(n);
        }
        let r = h.sync().await;
        assert!(!r.ok);
        assert!(
            r.pruning
                .contains("would remove 6 of 10 owned definitions (60%)"),
            "{}",
            r.pruning
        );
        assert_eq!(counts(&r).2, 0);
        assert_eq!(
            db.rows("activity_definitions")
                .await
                .iter()
                .filter(|r| r.removed)
                .count(),
            0
        );

        let dry = h.run(true, true).await;
        assert_eq!(counts(&dry).2, 6, "a forced dry run shows the removals");
        assert_eq!(
            db.rows("activity_definitions")
                .await
                .iter()
                .filter(|r| r.removed)
                .count(),
            0
        );

        let r = h.run(false, true).await;
        assert!(r.ok, "{:?}", r.errors);
        assert!(
            r.pruning.starts_with("forced (definitions)"),
            "{}",
            r.pruning
        );
        assert_eq!(counts(&r), (0, 0, 6, 4));
        assert_eq!(
            db.rows("activity_definitions")
                .await
                .iter()
                .filter(|r| r.removed)
                .count(),
            6
        );
        db
    })
    .await;
}

#[tokio::test]
async fn a_dry_run_changes_nothing_but_records_its_run() {
    each_backend(|db| async move {
        let h = Harness::new(&db, "activity-sync");
        h.define(&["a"]);
        let r = h.run(true, false).await;
        assert!(r.ok && r.dry_run);
        assert_eq!(counts(&r), (1, 0, 0, 0));
        assert_eq!(h.store.rows_written(), 0);
        assert!(db.rows("activity_definitions").await.is_empty());
        let runs = db.runs().await;
        assert_eq!(runs.len(), 1);
        assert_eq!(
            (runs[0].0.as_str(), runs[0].1, runs[0].2),
            ("cli", true, true)
        );
        db
    })
    .await;
}

#[tokio::test]
async fn another_owners_rows_stay_untouched() {
    each_backend(|db| async move {
        let other = Harness::new(&db, "other-team");
        other.define(&["theirs", "contested"]);
        assert!(other.sync().await.ok);
        let theirs_before = db.rows("activity_definitions").await;

        let mine = Harness::new(&db, "activity-sync");
        mine.define(&["mine", "contested"]);
        let r = mine.sync().await;
        assert!(!r.ok);
        assert!(
            r.errors
                .iter()
                .any(|e| e.name.as_deref() == Some("contested")
                    && e.message.contains("owned by `other-team`")),
            "{:?}",
            r.errors
        );
        let rows = db.rows("activity_definitions").await;
        for before in &theirs_before {
            assert!(rows.contains(before), "{} changed", before.name);
        }
        // Removing everything of ours never touches theirs, even with force.
        mine.forget("mine");
        mine.forget("contested");
        mine.run(false, true).await;
        let rows = db.rows("activity_definitions").await;
        for before in &theirs_before {
            assert!(rows.contains(before), "{} changed", before.name);
        }
        assert!(rows.iter().any(|r| r.name == "mine" && r.removed));
        db
    })
    .await;
}

#[tokio::test]
async fn event_types_include_undeclared_trigger_events() {
    each_backend(|db| async move {
        let h = Harness::new(&db, "activity-sync");
        h.defs.write(
            "events.yaml",
            "apiVersion: activity-core/v1\nkind: EventType\nmetadata: {name: invoice.created}\nspec: {subject: events.invoice.created}\n---\napiVersion: activity-core/v1\nkind: ActivityDefinition\nmetadata: {name: on-refund}\nspec: {activity: x, trigger: {event: refund.issued}}\n",
        );
        let r = h.sync().await;
        assert!(r.ok, "{:?}", r.errors);
        assert_eq!(r.warnings.len(), 1, "the undeclared event is a warning: {:?}", r.warnings);
        let names: Vec<String> = db.rows("activity_event_types").await.into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["invoice.created", "refund.issued"]);
        db
    })
    .await;
}

#[tokio::test]
async fn a_held_lock_makes_the_run_wait_then_report() {
    let db = TestDb::new(Backend::Postgres).await;
    let h = Harness::new(&db, "activity-sync");
    h.define(&["a"]);
    assert!(h.sync().await.ok, "migrations ran");
    // Another replica holds the lock.
    let holder = h
        .store
        .lock("activity-sync", Duration::from_secs(1))
        .await
        .unwrap()
        .expect("free");
    let started = std::time::Instant::now();
    let r = h.sync().await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited for the lock timeout"
    );
    assert!(!r.ok);
    assert_eq!(r.errors[0].stage.as_str(), "lock", "{:?}", r.errors);
    holder.release().await;
    assert!(h.sync().await.ok, "free again after release");
    db.drop_db().await;
}

#[test]
fn concurrent_sync_processes_never_interleave() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new(Backend::Postgres));
    let defs = Dir::new();
    for i in 0..300 {
        defs.write(
            &format!("d{i:04}.yaml"),
            cron_definition(&format!("d{i:04}"), "@daily"),
        );
    }
    let env = [
        ("ACTIVITY_SYNC_DATABASE_URL", db.url.as_str()),
        ("ACTIVITY_SYNC_DEFINITIONS_DIR", defs.str()),
        ("ACTIVITY_SYNC_LOG", "warn"),
    ];
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            std::thread::spawn(move || {
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                run_with(
                    &["sync", "--schedules", "false", "--format", "json"],
                    &env,
                    Duration::from_secs(60),
                )
            })
        })
        .collect();
    let outputs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut created = 0;
    for out in &outputs {
        assert_eq!(out.code, 0, "{out:?}");
        let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        created += report["definitions"]["created"].as_u64().unwrap();
    }
    assert_eq!(created, 300, "exactly one run created each definition");
    let mut runs = rt.block_on(db.runs());
    assert_eq!(runs.len(), 4);
    runs.sort_by(|a, b| a.3.cmp(&b.3));
    for pair in runs.windows(2) {
        let (prev_end, next_start) = (&pair[0].4, pair[1].3.as_ref().unwrap());
        assert!(prev_end <= next_start, "runs overlapped: {runs:?}");
    }
    rt.block_on(db.drop_db());
}

#[test]
fn an_unreachable_database_gives_an_error_report_and_exit_1() {
    let defs = Dir::new();
    defs.write("a.yaml", cron_definition("a", "@daily"));
    let out = run_with(
        &["sync", "--format", "json"],
        &[
            (
                "ACTIVITY_SYNC_DATABASE_URL",
                "postgres://postgres@127.0.0.1:1/none",
            ),
            ("ACTIVITY_SYNC_DEFINITIONS_DIR", defs.str()),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, 1, "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("a JSON report");
    assert_eq!(report["ok"], false);
    assert_eq!(report["errors"][0]["stage"], "definitions");
    assert!(
        report["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("database"),
        "{report}"
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn plan_exit_codes_follow_pending_changes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new(Backend::Sqlite));
    let temporal = rt.block_on(temporal_test_server::TestServer::start());
    let url = temporal.url();
    let defs = Dir::new();
    defs.write("a.yaml", cron_definition("a", "@daily"));
    let env = [
        ("ACTIVITY_SYNC_DATABASE_URL", db.url.as_str()),
        ("ACTIVITY_SYNC_DEFINITIONS_DIR", defs.str()),
        ("ACTIVITY_SYNC_TEMPORAL_ADDRESS", url.as_str()),
    ];
    let t = Duration::from_secs(30);
    let plan = run_with(&["plan"], &env, t);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout.contains("+ definition a (create)"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("+ schedule a (create)"),
        "{}",
        plan.stdout
    );
    assert_eq!(temporal.mutating_calls(), 0, "plan changes nothing");
    assert_eq!(run_with(&["sync"], &env, t).code, 0);
    assert!(temporal.schedule("activity:a").is_some());
    assert_eq!(run_with(&["plan"], &env, t).code, 0);
    defs.write("b.yaml", "kind: Broken\n");
    let broken = run_with(&["plan"], &env, t);
    assert_eq!(broken.code, 1, "{broken:?}");
    assert!(
        broken.stdout.contains("[source] b.yaml:1:1:"),
        "{}",
        broken.stdout
    );
    assert_eq!(run_with(&["sync"], &env, t).code, 1);
}

#[tokio::test]
async fn a_failure_in_the_middle_of_a_stage_commits_nothing_and_the_next_run_converges() {
    each_backend(|db| async move {
        let h = Harness::new(&db, "activity-sync");
        h.define(&["a", "b"]);
        assert!(h.sync().await.ok);
        // The database refuses one row half-way through the stage's transaction.
        let trigger = match db.backend {
            Backend::Postgres => vec![
                "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN IF NEW.name = 'poison' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER refuse BEFORE INSERT ON activity_definitions FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
            ],
            Backend::Sqlite => vec![
                "CREATE TRIGGER refuse BEFORE INSERT ON activity_definitions WHEN NEW.name = 'poison' BEGIN SELECT RAISE(ABORT, 'refused'); END",
            ],
        };
        for sql in &trigger {
            db.execute(sql).await;
        }
        h.define(&["c", "poison", "z"]);
        h.defs.write("a.yaml", cron_definition("a", "@hourly"));
        let before = db.rows("activity_definitions").await;
        let r = h.sync().await;
        assert!(!r.ok);
        assert_eq!(r.errors[0].stage.as_str(), "definitions", "{:?}", r.errors);
        assert_eq!(before, db.rows("activity_definitions").await, "no partial stage was committed");
        let drop = match db.backend {
            Backend::Postgres => "DROP TRIGGER refuse ON activity_definitions",
            Backend::Sqlite => "DROP TRIGGER refuse",
        };
        db.execute(drop).await;
        let r = h.sync().await;
        assert!(r.ok, "{:?}", r.errors);
        assert_eq!(counts(&r), (3, 1, 0, 1));
        db
    })
    .await;
}

#[tokio::test]
async fn an_unreadable_file_is_an_error_and_nothing_is_pruned() {
    each_backend(|db| async move {
        let h = Harness::new(&db, "activity-sync");
        h.define(&["a", "b", "c"]);
        assert!(h.sync().await.ok);
        // b.yaml becomes a dangling link (its target vanished); c.yaml is deleted.
        h.forget("b");
        std::os::unix::fs::symlink("..data/b.yaml", h.defs.path().join("b.yaml")).unwrap();
        h.forget("c");
        let r = h.sync().await;
        assert!(!r.ok);
        let e = &r.errors[0];
        assert_eq!(e.file.as_deref(), Some("b.yaml"), "{e:?}");
        assert!(e.message.contains("does not exist"), "{}", e.message);
        assert_eq!(r.pruning, "suspended: 1 invalid document(s)");
        assert!(
            db.rows("activity_definitions")
                .await
                .iter()
                .all(|r| !r.removed)
        );
        db
    })
    .await;
}
