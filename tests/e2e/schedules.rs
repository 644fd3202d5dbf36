//! The schedules stage through the Temporal test server (real gRPC over loopback),
//! with a real database for the applied hashes.

use crate::support::{Backend, Dir, TestDb, cron_definition};
use activity_sync::config::Settings;
use activity_sync::report::{Report, ScheduleCounts, Trigger};
use activity_sync::store::Store;
use activity_sync::sync::{Engine, Request, Stages};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use temporal_test_server::{Code, TestServer};
use temporalio_common::protos::temporal::api::common::v1::{Memo, Payload, WorkflowType};
use temporalio_common::protos::temporal::api::schedule::v1::{
    Schedule, ScheduleAction, ScheduleSpec, schedule_action,
};
use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_common::protos::temporal::api::workflow::v1::NewWorkflowExecutionInfo;

struct Harness {
    engine: Engine,
    temporal: TestServer,
    defs: Dir,
    db: TestDb,
}

impl Harness {
    async fn new(backend: Backend) -> Harness {
        let temporal = TestServer::start().await;
        let db = TestDb::new(backend).await;
        let defs = Dir::new();
        let mut settings = Settings::defaults();
        settings.definitions_dir = defs.path().to_path_buf();
        settings.temporal.address = temporal.url();
        settings.temporal.max_rps = 0;
        let store = Store::open(&db.url).unwrap();
        Harness {
            engine: Engine::new(Arc::new(settings), store),
            temporal,
            defs,
            db,
        }
    }

    async fn run(&self, force: bool) -> Report {
        let request = Request {
            trigger: Trigger::Cli,
            caller: None,
            stages: Stages {
                definitions: true,
                event_types: false,
                schedules: true,
            },
            dry_run: false,
            force,
        };
        self.engine.run(&request).await
    }

    async fn sync(&self) -> Report {
        self.run(false).await
    }

    fn write(&self, name: &str, yaml: String) {
        self.defs.write(&format!("{name}.yaml"), yaml);
    }

    fn forget(&self, name: &str) {
        std::fs::remove_file(self.defs.path().join(format!("{name}.yaml"))).unwrap();
    }

    fn paused(&self, name: &str) -> (bool, String) {
        let s = self
            .temporal
            .schedule(&format!("activity:{name}"))
            .expect("schedule exists");
        let state = s.schedule.state.unwrap_or_default();
        (state.paused, state.notes)
    }

    async fn finish(self) {
        self.temporal.stop().await;
        self.db.drop_db().await;
    }
}

fn schedules(r: &Report) -> ScheduleCounts {
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    r.schedules.clone().expect("schedules stage ran")
}

fn disabled(name: &str, cron: &str) -> String {
    cron_definition(name, cron).replace("spec:\n", "spec:\n  enabled: false\n")
}

fn event_definition(name: &str) -> String {
    format!(
        "apiVersion: activity-core/v1\nkind: ActivityDefinition\nmetadata: {{name: {name}}}\nspec: {{activity: x, trigger: {{event: thing.happened}}}}\n"
    )
}

fn one_shot(name: &str, at: &str) -> String {
    format!(
        "apiVersion: activity-core/v1\nkind: ActivityDefinition\nmetadata: {{name: {name}}}\nspec: {{activity: x, trigger: {{at: \"{at}\"}}}}\n"
    )
}

fn memo(owner: &str) -> Memo {
    Memo {
        fields: HashMap::from([(
            "activity-sync/owner".to_string(),
            Payload {
                data: format!("\"{owner}\"").into_bytes(),
                ..Payload::default()
            },
        )]),
    }
}

fn foreign_schedule() -> Schedule {
    Schedule {
        spec: Some(ScheduleSpec {
            cron_string: vec!["@daily".into()],
            ..ScheduleSpec::default()
        }),
        action: Some(ScheduleAction {
            action: Some(schedule_action::Action::StartWorkflow(
                NewWorkflowExecutionInfo {
                    workflow_id: "theirs".into(),
                    workflow_type: Some(WorkflowType {
                        name: "Other".into(),
                    }),
                    task_queue: Some(TaskQueue {
                        name: "other".into(),
                        ..TaskQueue::default()
                    }),
                    ..NewWorkflowExecutionInfo::default()
                },
            )),
        }),
        ..Schedule::default()
    }
}

#[tokio::test]
async fn the_hourly_to_daily_rename() {
    let h = Harness::new(Backend::Sqlite).await;
    h.write(
        "report-hourly",
        cron_definition("report-hourly", "0 * * * *"),
    );
    h.write("on-event", event_definition("on-event"));
    h.write("launch", one_shot("launch", "2099-06-01T09:00:00Z"));
    h.write("leftover", cron_definition("leftover", "@weekly"));
    h.write("keep-1", cron_definition("keep-1", "@daily"));
    h.write("keep-2", cron_definition("keep-2", "@daily"));
    let first = schedules(&h.sync().await);
    assert_eq!(first.created, 5);
    assert!(
        h.temporal.schedule("activity:on-event").is_none(),
        "event triggers never get a schedule"
    );

    // The rename: a new daily schedule, the hourly one kept but disabled, and the
    // leftover removed from the source.
    h.write("report-daily", cron_definition("report-daily", "0 6 * * *"));
    h.write("report-hourly", disabled("report-hourly", "0 * * * *"));
    h.forget("leftover");
    let r = h.sync().await;
    let c = schedules(&r);
    assert_eq!(
        (c.created, c.updated, c.paused, c.deleted),
        (1, 1, 1, 1),
        "{c:?}"
    );
    assert_eq!(c.unchanged, 3);
    assert_eq!(
        h.paused("report-hourly"),
        (true, "activity-sync: disabled in source".to_string())
    );
    assert!(!h.paused("report-daily").0);
    assert!(h.temporal.schedule("activity:leftover").is_none());
    assert!(
        h.temporal.schedule("activity:launch").is_some(),
        "the one-shot is not an orphan"
    );
    let actions: Vec<(&str, &str)> = r
        .changes
        .iter()
        .filter(|c| c.kind == "schedule")
        .map(|c| (c.name.as_str(), c.action))
        .collect();
    assert_eq!(
        actions,
        [
            ("leftover", "delete"),
            ("report-daily", "create"),
            ("report-hourly", "pause"),
            ("report-hourly", "update")
        ]
    );
    let created = h.temporal.schedule("activity:report-daily").unwrap();
    let memo = created.memo.unwrap();
    assert_eq!(
        memo.fields["activity-sync/owner"].data,
        b"\"activity-sync\""
    );
    assert_eq!(
        memo.fields["activity-sync/definition"].data,
        b"\"report-daily\""
    );
    let Some(schedule_action::Action::StartWorkflow(action)) =
        created.schedule.action.unwrap().action
    else {
        panic!("a start-workflow action");
    };
    assert_eq!(action.workflow_id, "activity:report-daily");
    assert_eq!(action.workflow_type.unwrap().name, "RunActivityWorkflow");
    assert_eq!(action.task_queue.unwrap().name, "activity-core");
    assert_eq!(
        action.input.unwrap().payloads[0].data,
        br#"{"definition":"report-daily"}"#
    );
    h.finish().await;
}

#[tokio::test]
async fn a_second_run_makes_no_mutating_call() {
    let h = Harness::new(Backend::Postgres).await;
    for i in 0..20 {
        let name = format!("d{i:02}");
        h.write(&name, cron_definition(&name, "@daily"));
    }
    h.write("off", disabled("off", "@hourly"));
    schedules(&h.sync().await);
    h.temporal.reset_calls();
    let c = schedules(&h.sync().await);
    assert_eq!(c.unchanged, 21);
    assert_eq!(h.temporal.mutating_calls(), 0);
    assert_eq!(h.temporal.calls("DescribeSchedule"), 0);
    assert_eq!(h.temporal.calls("ListSchedules"), 1);
    h.finish().await;
}

#[tokio::test]
async fn enabled_flips_both_ways() {
    let h = Harness::new(Backend::Sqlite).await;
    h.write("a", disabled("a", "@daily"));
    let c = schedules(&h.sync().await);
    assert_eq!(c.created, 1);
    assert_eq!(
        h.paused("a"),
        (true, "activity-sync: disabled in source".into()),
        "created paused"
    );
    h.write("a", cron_definition("a", "@daily"));
    let c = schedules(&h.sync().await);
    assert_eq!((c.updated, c.unpaused), (1, 1));
    assert!(!h.paused("a").0);
    h.write("a", disabled("a", "@daily"));
    let c = schedules(&h.sync().await);
    assert_eq!((c.updated, c.paused), (1, 1));
    assert!(h.paused("a").0);
    h.finish().await;
}

#[tokio::test]
async fn a_schedule_deleted_out_of_band_is_recreated() {
    let h = Harness::new(Backend::Sqlite).await;
    h.write("a", cron_definition("a", "@daily"));
    schedules(&h.sync().await);
    h.temporal.remove("activity:a");
    let c = schedules(&h.sync().await);
    assert_eq!(c.created, 1);
    assert!(h.temporal.schedule("activity:a").is_some());
    h.finish().await;
}

#[tokio::test]
async fn an_out_of_band_edit_is_overwritten_when_the_definition_changes() {
    let h = Harness::new(Backend::Sqlite).await;
    h.write("a", cron_definition("a", "@daily"));
    schedules(&h.sync().await);
    h.temporal.edit_spec("activity:a", "0 3 * * *");
    // Unchanged definition: the edit is not noticed (no Describe on a no-op run).
    assert_eq!(schedules(&h.sync().await).unchanged, 1);
    h.write("a", cron_definition("a", "0 9 * * *"));
    let c = schedules(&h.sync().await);
    assert_eq!(c.updated, 1);
    let s = h.temporal.schedule("activity:a").unwrap();
    // The V1 server drops an update whose token is stale: the spec only changes when
    // the token from Describe was sent.
    assert_eq!(
        s.schedule.spec.unwrap().structured_calendar[0].hour[0].start,
        9
    );
    assert_eq!(s.conflict_token, 3);
    h.finish().await;
}

#[tokio::test]
async fn an_operator_pause_is_held_until_forced() {
    let h = Harness::new(Backend::Sqlite).await;
    h.write("a", cron_definition("a", "@daily"));
    schedules(&h.sync().await);
    h.temporal.set_paused("activity:a", true, "incident 4711");
    let c = schedules(&h.sync().await);
    assert_eq!(c.held, 1);
    assert_eq!(h.paused("a"), (true, "incident 4711".into()));
    // A change of the definition keeps the pause too.
    h.write("a", cron_definition("a", "@hourly"));
    let c = schedules(&h.sync().await);
    assert_eq!((c.updated, c.held, c.unpaused), (1, 1, 0));
    assert_eq!(h.paused("a"), (true, "incident 4711".into()));
    let c = schedules(&h.run(true).await);
    assert_eq!(c.unpaused, 1);
    assert!(!h.paused("a").0);
    h.finish().await;
}

#[tokio::test]
async fn transient_failures_are_retried_within_the_run() {
    let h = Harness::new(Backend::Sqlite).await;
    h.write("a", cron_definition("a", "@daily"));
    h.write("b", cron_definition("b", "@daily"));
    h.temporal.fail_next("ListSchedules", 2, Code::Unavailable);
    h.temporal
        .fail_next("CreateSchedule", 2, Code::ResourceExhausted);
    let c = schedules(&h.sync().await);
    assert_eq!(c.created, 2);
    assert_eq!(h.temporal.calls("ListSchedules"), 3);
    assert_eq!(h.temporal.calls("CreateSchedule"), 4);
    assert_eq!(
        h.temporal.schedule_ids().len(),
        2,
        "no duplicates from retried creates"
    );
    h.finish().await;
}

#[tokio::test]
async fn non_retryable_failures_name_the_item_and_the_next_run_converges() {
    let h = Harness::new(Backend::Sqlite).await;
    h.write("a", cron_definition("a", "@daily"));
    h.temporal
        .fail_next("CreateSchedule", 1, Code::PermissionDenied);
    let r = h.sync().await;
    assert!(!r.ok);
    let e = &r.errors[0];
    assert_eq!(
        (e.stage.as_str(), e.name.as_deref()),
        ("schedules", Some("a"))
    );
    assert!(e.message.contains("PermissionDenied"), "{}", e.message);
    assert!(
        r.definitions.as_ref().unwrap().created == 1,
        "the database stage still ran"
    );
    assert_eq!(schedules(&h.sync().await).created, 1);
    h.finish().await;
}

#[tokio::test]
async fn list_lag_never_causes_duplicate_creates() {
    let h = Harness::new(Backend::Sqlite).await;
    h.temporal.set_list_lag(Duration::from_secs(3600));
    h.write("a", cron_definition("a", "@daily"));
    assert_eq!(schedules(&h.sync().await).created, 1);
    let c = schedules(&h.sync().await);
    assert_eq!(c.unchanged, 1, "{c:?}");
    assert_eq!(h.temporal.calls("CreateSchedule"), 1);
    assert_eq!(h.temporal.calls("UpdateSchedule"), 0);
    h.finish().await;
}

#[tokio::test]
async fn a_foreign_schedule_on_our_id_is_left_alone() {
    let h = Harness::new(Backend::Sqlite).await;
    h.temporal.seed(
        "activity:taken",
        foreign_schedule(),
        Some(memo("someone-else")),
    );
    h.temporal
        .seed("activity:no-memo", foreign_schedule(), None);
    h.temporal.seed("unrelated", foreign_schedule(), None);
    h.write("taken", cron_definition("taken", "@daily"));
    h.write("mine", cron_definition("mine", "@daily"));
    let r = h.sync().await;
    assert!(!r.ok);
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert!(
        r.errors[0].message.contains("belongs to `someone-else`"),
        "{}",
        r.errors[0].message
    );
    assert_eq!(h.temporal.mutating_calls(), 1, "only `mine` was created");
    // Removing everything of ours never touches the foreign ones.
    h.forget("mine");
    h.forget("taken");
    h.run(true).await;
    assert!(h.temporal.schedule("activity:taken").is_some());
    assert!(h.temporal.schedule("activity:no-memo").is_some());
    assert!(h.temporal.schedule("unrelated").is_some());
    assert!(h.temporal.schedule("activity:mine").is_none());
    h.finish().await;
}

#[tokio::test]
async fn one_shots_in_the_past_are_skipped_and_fired_ones_never_recreated() {
    let h = Harness::new(Backend::Sqlite).await;
    h.write("past", one_shot("past", "2001-01-01T00:00:00Z"));
    h.write("soon", one_shot("soon", "2099-01-01T00:00:00Z"));
    let r = h.sync().await;
    assert_eq!(
        r.warnings.len(),
        1,
        "the past one is a warning: {:?}",
        r.warnings
    );
    let c = schedules(&r);
    assert_eq!(c.created, 1);
    assert!(h.temporal.schedule("activity:past").is_none());
    let s = h.temporal.schedule("activity:soon").unwrap();
    let state = s.schedule.state.unwrap();
    assert!(state.limited_actions);
    assert_eq!(state.remaining_actions, 1);
    let cal = &s.schedule.spec.unwrap().structured_calendar[0];
    assert_eq!(
        (
            cal.year[0].start,
            cal.month[0].start,
            cal.day_of_month[0].start
        ),
        (2099, 1, 1)
    );
    assert!(h.temporal.fire("activity:soon"));
    // Once its time has passed the definition is "past", but the fired schedule stays.
    h.write("soon", one_shot("soon", "2002-01-01T00:00:00Z"));
    let c = schedules(&h.sync().await);
    assert_eq!((c.created, c.deleted), (0, 0), "{c:?}");
    assert!(h.temporal.schedule("activity:soon").is_some());
    h.finish().await;
}

#[tokio::test]
async fn more_than_a_thousand_schedules_are_paginated() {
    let h = Harness::new(Backend::Sqlite).await;
    for i in 0..1200 {
        let name = format!("d{i:04}");
        h.write(&name, cron_definition(&name, "@daily"));
    }
    assert_eq!(schedules(&h.sync().await).created, 1200);
    h.temporal.reset_calls();
    let c = schedules(&h.sync().await);
    assert_eq!(c.unchanged, 1200);
    assert_eq!(h.temporal.calls("ListSchedules"), 2);
    assert_eq!(h.temporal.mutating_calls(), 0);
    h.finish().await;
}

#[tokio::test]
async fn temporal_unreachable_is_a_schedules_error_while_the_database_stages_run() {
    let defs = Dir::new();
    defs.write("a.yaml", cron_definition("a", "@daily"));
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = Settings::defaults();
    settings.definitions_dir = defs.path().to_path_buf();
    settings.temporal.address = "http://127.0.0.1:1".into();
    let engine = Engine::new(Arc::new(settings), Store::open(&db.url).unwrap());
    let r = engine.run(&Request::new(Trigger::Cli)).await;
    assert!(!r.ok);
    assert_eq!(r.definitions.as_ref().unwrap().created, 1);
    assert!(r.schedules.is_none());
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].stage.as_str(), "schedules");
    assert!(
        r.errors[0].message.contains("unreachable"),
        "{}",
        r.errors[0].message
    );
}

#[tokio::test]
async fn schedule_deletion_obeys_the_prune_guards() {
    let h = Harness::new(Backend::Sqlite).await;
    for n in ["a", "b", "c"] {
        h.write(n, cron_definition(n, "@daily"));
    }
    schedules(&h.sync().await);
    h.forget("a");
    h.forget("b");
    let r = h.sync().await;
    assert!(!r.ok);
    assert!(r.pruning.contains("schedules"), "{}", r.pruning);
    assert_eq!(h.temporal.schedule_ids().len(), 3, "nothing deleted");
    let forced = h.run(true).await;
    assert_eq!(forced.schedules.unwrap().deleted, 2);
    assert_eq!(h.temporal.schedule_ids(), ["activity:c"]);
    h.finish().await;
}

#[tokio::test]
async fn every_retried_code_is_retried_and_every_other_code_names_the_item() {
    let h = Harness::new(Backend::Sqlite).await;
    for n in ["a", "b", "c"] {
        h.write(n, cron_definition(n, "@daily"));
    }
    for code in [
        Code::Unavailable,
        Code::ResourceExhausted,
        Code::DeadlineExceeded,
        Code::Internal,
        Code::Unknown,
        Code::Aborted,
        Code::DataLoss,
    ] {
        h.temporal.fail_next("ListSchedules", 1, code);
        let r = h.sync().await;
        assert!(r.ok, "{code:?} must be retried: {:?}", r.errors);
    }
    assert_eq!(h.temporal.schedule_ids().len(), 3);

    // Mid-stage failures that are not retried: the item is named, the rest applied,
    // nothing deleted by mistake, and the next run converges.
    for (i, code) in [
        Code::InvalidArgument,
        Code::PermissionDenied,
        Code::FailedPrecondition,
    ]
    .into_iter()
    .enumerate()
    {
        for n in ["a", "b", "c"] {
            h.write(n, cron_definition(n, &format!("{} 6 * * *", i + 1)));
        }
        h.temporal.fail_next("UpdateSchedule", 1, code);
        let r = h.sync().await;
        assert!(!r.ok, "{code:?}");
        assert_eq!(r.errors.len(), 1, "{code:?}: {:?}", r.errors);
        assert!(
            r.errors[0].name.is_some(),
            "the item is named: {:?}",
            r.errors[0]
        );
        assert_eq!(r.schedules.as_ref().unwrap().updated, 2, "{code:?}");
        assert_eq!(h.temporal.schedule_ids().len(), 3, "nothing deleted");
        let next = schedules(&h.sync().await);
        assert_eq!(next.updated, 1, "{code:?}: the next run converges");
    }
    h.finish().await;
}

#[tokio::test]
async fn thousands_of_schedules_with_visibility_lag_are_never_created_twice() {
    let h = Harness::new(Backend::Sqlite).await;
    h.temporal.set_list_lag(Duration::from_secs(3600));
    for i in 0..2000 {
        let name = format!("d{i:04}");
        h.write(&name, cron_definition(&name, "@daily"));
    }
    assert_eq!(schedules(&h.sync().await).created, 2000);
    let c = schedules(&h.sync().await);
    assert_eq!(c.unchanged, 2000, "{c:?}");
    assert_eq!(h.temporal.calls("CreateSchedule"), 2000);
    assert_eq!(h.temporal.calls("UpdateSchedule"), 0);
    h.finish().await;
}
