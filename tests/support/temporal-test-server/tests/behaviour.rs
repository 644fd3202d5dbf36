//! Pins the test server's behaviour to temporal-schedules.md, through the same client
//! library activity-sync uses (so gzip, HTTP/2 and status details are real).

use std::collections::HashMap;
use std::time::Duration;
use temporal_test_server::{Code, Mode, TestServer};
use temporalio_client::grpc::WorkflowService;
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions, RetryOptions, Url};
use temporalio_common::protos::temporal::api::common::v1::{Memo, Payload, Payloads, WorkflowType};
use temporalio_common::protos::temporal::api::errordetails::v1::{
    NamespaceNotFoundFailure, WorkflowExecutionAlreadyStartedFailure,
};
use temporalio_common::protos::temporal::api::schedule::v1::{
    Range, Schedule, ScheduleAction, SchedulePatch, ScheduleSpec, ScheduleState, schedule_action,
};
use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_common::protos::temporal::api::workflow::v1::NewWorkflowExecutionInfo;
use temporalio_common::protos::temporal::api::workflowservice::v1::*;
use temporalio_common::protos::utilities::decode_status_detail;

async fn client(server: &TestServer) -> Client {
    let retry = RetryOptions::builder()
        .initial_interval(Duration::from_millis(10))
        .max_interval(Duration::from_millis(50))
        .max_elapsed_time(Some(Duration::from_secs(5)))
        .max_retries(5)
        .build();
    let options = ConnectionOptions::new(Url::parse(&server.url()).unwrap())
        .identity("behaviour-test".to_string())
        .retry_options(retry)
        .build();
    let connection = Connection::connect(options)
        .await
        .expect("connects (GetSystemInfo answered)");
    Client::new(
        connection,
        ClientOptions::new("default".to_string()).build(),
    )
    .unwrap()
}

fn schedule(cron: &str) -> Schedule {
    Schedule {
        spec: Some(ScheduleSpec {
            cron_string: vec![cron.to_string()],
            ..ScheduleSpec::default()
        }),
        action: Some(ScheduleAction {
            action: Some(schedule_action::Action::StartWorkflow(
                NewWorkflowExecutionInfo {
                    workflow_id: "wf".into(),
                    workflow_type: Some(WorkflowType { name: "W".into() }),
                    task_queue: Some(TaskQueue {
                        name: "q".into(),
                        ..TaskQueue::default()
                    }),
                    input: Some(Payloads { payloads: vec![] }),
                    ..NewWorkflowExecutionInfo::default()
                },
            )),
        }),
        policies: None,
        state: None,
    }
}

fn memo(owner: &str) -> Memo {
    Memo {
        fields: HashMap::from([(
            "owner".to_string(),
            Payload {
                data: format!("\"{owner}\"").into_bytes(),
                ..Payload::default()
            },
        )]),
    }
}

fn create(id: &str, cron: &str, request_id: &str) -> CreateScheduleRequest {
    CreateScheduleRequest {
        namespace: "default".into(),
        schedule_id: id.into(),
        schedule: Some(schedule(cron)),
        request_id: request_id.into(),
        memo: Some(memo("me")),
        ..CreateScheduleRequest::default()
    }
}

fn describe(id: &str) -> DescribeScheduleRequest {
    DescribeScheduleRequest {
        namespace: "default".into(),
        schedule_id: id.into(),
    }
}

fn r(start: i32, end: i32) -> Range {
    Range {
        start,
        end,
        step: 1,
    }
}

#[tokio::test]
async fn describe_shows_the_normalised_schedule() {
    let server = TestServer::start().await;
    let mut c = client(&server).await;
    let resp = WorkflowService::create_schedule(
        &mut c,
        tonic::Request::new(create("s", "0 12 * * MON-FRI", "r1")),
    )
    .await
    .unwrap();
    assert_eq!(resp.into_inner().conflict_token, 1i64.to_be_bytes());
    let d = WorkflowService::describe_schedule(&mut c, tonic::Request::new(describe("s")))
        .await
        .unwrap()
        .into_inner();
    let spec = d.schedule.as_ref().unwrap().spec.as_ref().unwrap();
    assert!(spec.cron_string.is_empty());
    let cal = &spec.structured_calendar[0];
    assert_eq!(cal.second, [r(0, 0)]);
    assert_eq!(cal.minute, [r(0, 0)]);
    assert_eq!(cal.hour, [r(12, 12)]);
    assert_eq!(cal.day_of_month, [r(1, 31)]);
    assert_eq!(cal.month, [r(1, 12)]);
    assert_eq!(cal.day_of_week, [r(1, 5)]);
    assert!(cal.year.is_empty());
    let policies = d.schedule.as_ref().unwrap().policies.as_ref().unwrap();
    assert_eq!(policies.overlap_policy, 1, "UNSPECIFIED shows as SKIP");
    assert_eq!(
        policies.catchup_window.as_ref().unwrap().seconds,
        365 * 24 * 3600
    );
    assert_eq!(d.conflict_token, 1i64.to_be_bytes());
    assert_eq!(d.info.unwrap().future_action_times.len(), 10);
    assert!(d.memo.is_some());

    let tz = create("tz", "CRON_TZ=Europe/Berlin @every 90m", "r2");
    WorkflowService::create_schedule(&mut c, tonic::Request::new(tz))
        .await
        .unwrap();
    let d = WorkflowService::describe_schedule(&mut c, tonic::Request::new(describe("tz")))
        .await
        .unwrap()
        .into_inner();
    let spec = d.schedule.unwrap().spec.unwrap();
    assert_eq!(spec.timezone_name, "Europe/Berlin");
    assert_eq!(spec.interval[0].interval.as_ref().unwrap().seconds, 5400);
}

#[tokio::test]
async fn create_dedupes_by_request_id_and_refuses_a_taken_id() {
    let server = TestServer::start().await;
    let mut c = client(&server).await;
    WorkflowService::create_schedule(&mut c, tonic::Request::new(create("s", "@daily", "same")))
        .await
        .unwrap();
    let again = WorkflowService::create_schedule(
        &mut c,
        tonic::Request::new(create("s", "@daily", "same")),
    )
    .await
    .unwrap();
    assert_eq!(again.into_inner().conflict_token, 1i64.to_be_bytes());
    let err = WorkflowService::create_schedule(
        &mut c,
        tonic::Request::new(create("s", "@daily", "other")),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    assert_eq!(err.message(), "schedule \"s\" is already registered");
    assert!(
        decode_status_detail::<WorkflowExecutionAlreadyStartedFailure>(err.details()).is_some()
    );
    let missing_request_id =
        WorkflowService::create_schedule(&mut c, tonic::Request::new(create("t", "@daily", "")))
            .await
            .unwrap_err();
    assert_eq!(
        missing_request_id.message(),
        "RequestId is not set on request."
    );
}

#[tokio::test]
async fn invalid_specs_and_actions_are_invalid_argument() {
    let server = TestServer::start().await;
    let mut c = client(&server).await;
    for (cron, reason) in [
        ("61 * * * *", "minute"),
        ("0 0 * * * 2101", "year"),
        ("@every 0s", "interval"),
    ] {
        let err =
            WorkflowService::create_schedule(&mut c, tonic::Request::new(create("s", cron, "r")))
                .await
                .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{cron}");
        assert!(
            err.message().starts_with("Invalid schedule spec: "),
            "{}",
            err.message()
        );
        assert!(err.message().contains(reason), "{}", err.message());
    }
    let mut no_action = create("s", "@daily", "r");
    no_action.schedule.as_mut().unwrap().action = None;
    let err = WorkflowService::create_schedule(&mut c, tonic::Request::new(no_action))
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        "Only StartWorkflow action is supported for schedules"
    );
}

#[tokio::test]
async fn unknown_namespace_is_not_found_with_its_detail() {
    let server = TestServer::start().await;
    let mut c = client(&server).await;
    let mut req = describe("s");
    req.namespace = "nope".into();
    let err = WorkflowService::describe_schedule(&mut c, tonic::Request::new(req))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(err.message(), "Namespace nope is not found.");
    let detail = decode_status_detail::<NamespaceNotFoundFailure>(err.details()).unwrap();
    assert_eq!(detail.namespace, "nope");
}

#[tokio::test]
async fn not_found_wording_and_delete_twice() {
    let server = TestServer::start().await;
    let mut c = client(&server).await;
    let err = WorkflowService::describe_schedule(&mut c, tonic::Request::new(describe("s")))
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        "workflow not found for ID: temporal-sys-scheduler:s"
    );
    WorkflowService::create_schedule(&mut c, tonic::Request::new(create("s", "@daily", "r")))
        .await
        .unwrap();
    let del = DeleteScheduleRequest {
        namespace: "default".into(),
        schedule_id: "s".into(),
        identity: String::new(),
    };
    WorkflowService::delete_schedule(&mut c, tonic::Request::new(del.clone()))
        .await
        .unwrap();
    let err = WorkflowService::describe_schedule(&mut c, tonic::Request::new(describe("s")))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (tonic::Code::NotFound, "schedule not found")
    );
    let err = WorkflowService::delete_schedule(&mut c, tonic::Request::new(del))
        .await
        .unwrap_err();
    assert_eq!(err.message(), "workflow execution already completed");
    // The ID is free again.
    WorkflowService::create_schedule(&mut c, tonic::Request::new(create("s", "@daily", "r2")))
        .await
        .unwrap();
}

fn update(id: &str, schedule: Schedule, token: Vec<u8>) -> UpdateScheduleRequest {
    UpdateScheduleRequest {
        namespace: "default".into(),
        schedule_id: id.into(),
        schedule: Some(schedule),
        conflict_token: token,
        request_id: "u".into(),
        ..UpdateScheduleRequest::default()
    }
}

#[tokio::test]
async fn update_replaces_state_and_checks_the_token_v1_and_v2() {
    let server = TestServer::start().await;
    let mut c = client(&server).await;
    WorkflowService::create_schedule(&mut c, tonic::Request::new(create("s", "@daily", "r")))
        .await
        .unwrap();
    server.set_paused("s", true, "incident");
    let token = server.schedule("s").unwrap().conflict_token;
    assert_eq!(token, 2, "an operator pause bumps the token");
    // No state in the update: State{} unpauses.
    WorkflowService::update_schedule(
        &mut c,
        tonic::Request::new(update(
            "s",
            schedule("@hourly"),
            token.to_be_bytes().to_vec(),
        )),
    )
    .await
    .unwrap();
    let snap = server.schedule("s").unwrap();
    assert!(!snap.schedule.state.unwrap().paused);
    assert_eq!(snap.conflict_token, 3);
    assert_eq!(
        snap.schedule.spec.unwrap().structured_calendar[0].hour,
        [r(0, 23)]
    );

    // V1: a stale token is accepted and silently dropped.
    WorkflowService::update_schedule(
        &mut c,
        tonic::Request::new(update(
            "s",
            schedule("@weekly"),
            1i64.to_be_bytes().to_vec(),
        )),
    )
    .await
    .unwrap();
    assert_eq!(server.schedule("s").unwrap().conflict_token, 3, "dropped");
    // V1: memo updates are refused.
    let mut with_memo = update("s", schedule("@hourly"), Vec::new());
    with_memo.memo = Some(memo("someone"));
    let err = WorkflowService::update_schedule(&mut c, tonic::Request::new(with_memo.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        err.message(),
        "memo updates are not supported on workflow-backed schedules"
    );

    server.set_mode(Mode::V2);
    let err = WorkflowService::update_schedule(
        &mut c,
        tonic::Request::new(update(
            "s",
            schedule("@weekly"),
            1i64.to_be_bytes().to_vec(),
        )),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (tonic::Code::FailedPrecondition, "mismatched conflict token")
    );
    WorkflowService::update_schedule(&mut c, tonic::Request::new(with_memo))
        .await
        .unwrap();
}

fn patch(id: &str, patch: Option<SchedulePatch>) -> PatchScheduleRequest {
    PatchScheduleRequest {
        namespace: "default".into(),
        schedule_id: id.into(),
        patch,
        identity: String::new(),
        request_id: "p".into(),
    }
}

#[tokio::test]
async fn patch_pauses_with_notes_and_ignores_empty_strings() {
    let server = TestServer::start().await;
    let mut c = client(&server).await;
    WorkflowService::create_schedule(&mut c, tonic::Request::new(create("s", "@daily", "r")))
        .await
        .unwrap();
    let err = WorkflowService::patch_schedule(&mut c, tonic::Request::new(patch("s", None)))
        .await
        .unwrap_err();
    assert_eq!(err.message(), "Patch is not set on request.");
    WorkflowService::patch_schedule(
        &mut c,
        tonic::Request::new(patch("s", Some(SchedulePatch::default()))),
    )
    .await
    .unwrap();
    assert_eq!(
        server.schedule("s").unwrap().conflict_token,
        1,
        "an empty patch is a no-op in V1"
    );
    let pause = SchedulePatch {
        pause: "why".into(),
        ..SchedulePatch::default()
    };
    WorkflowService::patch_schedule(&mut c, tonic::Request::new(patch("s", Some(pause))))
        .await
        .unwrap();
    let snap = server.schedule("s").unwrap();
    let state = snap.schedule.state.unwrap();
    assert!(state.paused);
    assert_eq!(state.notes, "why");
    assert_eq!(snap.conflict_token, 2);
    let long = SchedulePatch {
        pause: "x".repeat(1001),
        ..SchedulePatch::default()
    };
    let err = WorkflowService::patch_schedule(&mut c, tonic::Request::new(patch("s", Some(long))))
        .await
        .unwrap_err();
    assert_eq!(err.message(), "Schedule notes exceeds limit.");
}

fn list(token: Vec<u8>, size: i32) -> ListSchedulesRequest {
    ListSchedulesRequest {
        namespace: "default".into(),
        maximum_page_size: size,
        next_page_token: token,
        query: String::new(),
    }
}

#[tokio::test]
async fn list_pages_like_sql_visibility_and_lags() {
    let server = TestServer::start().await;
    for i in 0..2000 {
        server.seed(&format!("s{i:04}"), schedule("@daily"), Some(memo("me")));
    }
    let mut c = client(&server).await;
    let mut pages = Vec::new();
    let mut token = Vec::new();
    loop {
        let page = WorkflowService::list_schedules(&mut c, tonic::Request::new(list(token, 0)))
            .await
            .unwrap()
            .into_inner();
        pages.push(page.schedules.len());
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    // Page size 0 means 1000; a full last page still returns a token, then an empty page.
    assert_eq!(pages, [1000, 1000, 0]);
    let big = WorkflowService::list_schedules(&mut c, tonic::Request::new(list(Vec::new(), 5000)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(big.schedules.len(), 1000, "clamped");
    let entry = &big.schedules[0];
    assert!(entry.memo.is_some());
    assert_eq!(entry.info.as_ref().unwrap().future_action_times.len(), 5);

    server.set_list_lag(Duration::from_secs(3600));
    WorkflowService::create_schedule(&mut c, tonic::Request::new(create("new", "@daily", "r")))
        .await
        .unwrap();
    server.remove("s0000");
    let all = WorkflowService::list_schedules(
        &mut c,
        tonic::Request::new(list(b"offset:1000".to_vec(), 1000)),
    )
    .await
    .unwrap();
    let ids: Vec<String> = all
        .into_inner()
        .schedules
        .into_iter()
        .map(|s| s.schedule_id)
        .collect();
    assert!(
        !ids.contains(&"new".to_string()),
        "a new schedule is not listed yet"
    );
    let first = WorkflowService::list_schedules(&mut c, tonic::Request::new(list(Vec::new(), 1)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first.schedules[0].schedule_id, "s0000",
        "a deleted schedule lingers"
    );
    // Describe is consistent at once.
    WorkflowService::describe_schedule(&mut c, tonic::Request::new(describe("new")))
        .await
        .unwrap();
}

#[tokio::test]
async fn injected_faults_are_retried_by_the_client_and_counted() {
    let server = TestServer::start().await;
    let mut c = client(&server).await;
    server.fail_next("CreateSchedule", 2, Code::Unavailable);
    WorkflowService::create_schedule(&mut c, tonic::Request::new(create("s", "@daily", "r")))
        .await
        .unwrap();
    assert_eq!(server.calls("CreateSchedule"), 3);
    server.fail_next("DescribeSchedule", 1, Code::ResourceExhausted);
    WorkflowService::describe_schedule(&mut c, tonic::Request::new(describe("s")))
        .await
        .unwrap();
    assert_eq!(server.calls("DescribeSchedule"), 2);
    server.fail_next("DeleteSchedule", 1, Code::PermissionDenied);
    let err = WorkflowService::delete_schedule(
        &mut c,
        tonic::Request::new(DeleteScheduleRequest {
            namespace: "default".into(),
            schedule_id: "s".into(),
            identity: String::new(),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "not retried");
    assert_eq!(server.calls("DeleteSchedule"), 1);
    assert_eq!(server.mutating_calls(), 4);
}

#[tokio::test]
async fn a_one_shot_stays_after_firing_until_it_expires() {
    let server = TestServer::start().await;
    let mut c = client(&server).await;
    let mut req = create("once", "0 30 14 5 12 * 2099", "r");
    req.schedule.as_mut().unwrap().state = Some(ScheduleState {
        limited_actions: true,
        remaining_actions: 1,
        ..ScheduleState::default()
    });
    WorkflowService::create_schedule(&mut c, tonic::Request::new(req))
        .await
        .unwrap();
    let d = WorkflowService::describe_schedule(&mut c, tonic::Request::new(describe("once")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        d.info.unwrap().future_action_times.len(),
        1,
        "capped by remaining actions"
    );
    assert!(server.fire("once"));
    assert!(!server.fire("once"), "no action left");
    let d = WorkflowService::describe_schedule(&mut c, tonic::Request::new(describe("once")))
        .await
        .unwrap()
        .into_inner();
    let info = d.info.unwrap();
    assert_eq!((info.action_count, info.future_action_times.len()), (1, 0));
    assert!(
        info.recent_actions[0]
            .start_workflow_result
            .as_ref()
            .unwrap()
            .workflow_id
            .starts_with("wf-")
    );
    assert_eq!(d.schedule.unwrap().state.unwrap().remaining_actions, 0);
    let err = WorkflowService::create_schedule(
        &mut c,
        tonic::Request::new(create("once", "@daily", "r2")),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::AlreadyExists,
        "still registered after firing"
    );
    assert!(server.expire("once"));
    WorkflowService::create_schedule(&mut c, tonic::Request::new(create("once", "@daily", "r3")))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_paused_schedule_never_expires() {
    let server = TestServer::start().await;
    server.seed("done", schedule("0 0 1 1 * 2001"), None);
    server.set_paused("done", true, "kept");
    assert!(!server.expire("done"));
    server.set_paused("done", false, "");
    assert!(server.expire("done"));
}
