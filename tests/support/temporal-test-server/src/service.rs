//! The `WorkflowService` implementation: schedule state per (namespace, id), and the
//! RPCs' behaviour as temporal-schedules.md §1–§9 describe it.

use crate::proto::workflow_service_server::WorkflowService;
use crate::spec;
use chrono::Utc;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use temporalio_common::protos::google::rpc::Status as RpcStatus;
use temporalio_common::protos::temporal::api::common::v1::{
    Memo, SearchAttributes, WorkflowExecution,
};
use temporalio_common::protos::temporal::api::enums::v1::{
    ResourceExhaustedCause, ResourceExhaustedScope,
};
use temporalio_common::protos::temporal::api::errordetails::v1::{
    NamespaceNotFoundFailure, ResourceExhaustedFailure, WorkflowExecutionAlreadyStartedFailure,
};
use temporalio_common::protos::temporal::api::schedule::v1::{
    Schedule, ScheduleActionResult, ScheduleInfo, ScheduleListEntry, ScheduleListInfo,
    ScheduleState, schedule_action,
};
use temporalio_common::protos::temporal::api::workflowservice::v1::*;
use tonic::{Code, Request, Response, Status};

/// Which schedule backend to behave like (temporal-schedules.md §0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Workflow-backed: a mismatched conflict token is silently dropped, memo updates
    /// are refused, only pause/unpause bump the token on Patch.
    #[default]
    V1,
    /// CHASM: a mismatched token is FailedPrecondition, memo updates replace the memo.
    V2,
}

const MAX_ID_BYTES: usize = 977;
const MAX_WORKFLOW_ID_BYTES: usize = 979;
const MAX_REQUEST_ID_BYTES: usize = 1000;
const MAX_NOTES_BYTES: usize = 1000;
const MAX_BLOB_BYTES: usize = 2 * 1024 * 1024;
const MAX_PAGE: usize = 1000;
const RECENT_DESCRIBE: usize = 10;
const RECENT_LIST: usize = 5;

pub struct Entry {
    pub schedule: Schedule,
    pub info: ScheduleInfo,
    pub memo: Option<Memo>,
    pub search_attributes: Option<SearchAttributes>,
    pub token: i64,
    pub request_id: String,
    /// When ListSchedules starts showing it (creation + the list lag at the time).
    visible_from: Instant,
    /// Set when deleted or expired; List keeps showing it until `linger_until`.
    closed_at: Option<Instant>,
    linger_until: Option<Instant>,
    /// The next action times as of the last event: List shows these, as the V1
    /// scheduler refreshes list info only when it upserts its memo.
    list_future: Vec<prost_wkt_types::Timestamp>,
}

impl Entry {
    pub fn new(schedule: Schedule, memo: Option<Memo>, request_id: String) -> Entry {
        let now = spec::timestamp(Utc::now());
        Entry {
            schedule,
            info: ScheduleInfo {
                create_time: Some(now),
                ..ScheduleInfo::default()
            },
            memo: memo.filter(|m| !m.fields.is_empty()),
            search_attributes: None,
            token: 1,
            request_id,
            visible_from: Instant::now(),
            closed_at: None,
            linger_until: None,
            list_future: Vec::new(),
        }
    }

    /// Refreshes what List shows after an event.
    fn refresh_list_info(&mut self) {
        self.list_future = self.future(RECENT_LIST);
    }

    fn state(&self) -> ScheduleState {
        self.schedule.state.clone().unwrap_or_default()
    }

    /// Records an event: `update_time` and the conflict token move.
    pub fn touch(&mut self) {
        self.info.update_time = Some(spec::timestamp(Utc::now()));
        self.token += 1;
        self.refresh_list_info();
    }

    fn workflow_id(&self) -> String {
        match self
            .schedule
            .action
            .as_ref()
            .and_then(|a| a.action.as_ref())
        {
            Some(schedule_action::Action::StartWorkflow(w)) => w.workflow_id.clone(),
            _ => String::new(),
        }
    }

    fn record_action(&mut self) {
        let now = Utc::now();
        let nominal = now.format("%Y-%m-%dT%H:%M:%SZ");
        self.info.action_count += 1;
        self.info.recent_actions.push(ScheduleActionResult {
            schedule_time: Some(spec::timestamp(now)),
            actual_time: Some(spec::timestamp(now)),
            start_workflow_result: Some(WorkflowExecution {
                workflow_id: format!("{}-{nominal}", self.workflow_id()),
                run_id: uuid_like(self.info.action_count),
            }),
            start_workflow_status: 0,
        });
        let excess = self
            .info
            .recent_actions
            .len()
            .saturating_sub(RECENT_DESCRIBE);
        self.info.recent_actions.drain(..excess);
    }

    /// A scheduled (not manual) action: honours pause and `remaining_actions`.
    pub fn fire(&mut self) -> bool {
        let state = self.state();
        if state.paused || (state.limited_actions && state.remaining_actions <= 0) {
            return false;
        }
        if state.limited_actions {
            if let Some(s) = self.schedule.state.as_mut() {
                s.remaining_actions -= 1;
            }
            self.token += 1;
        }
        self.record_action();
        self.refresh_list_info();
        true
    }

    fn future(&self, n: usize) -> Vec<prost_wkt_types::Timestamp> {
        let state = self.state();
        let n = if state.limited_actions {
            n.min(state.remaining_actions.max(0) as usize)
        } else {
            n
        };
        match &self.schedule.spec {
            Some(s) if n > 0 => spec::future_times(s, Utc::now(), n)
                .into_iter()
                .map(spec::timestamp)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Unpaused with nothing left to do: the server closes it after 7 idle days.
    pub fn expirable(&self) -> bool {
        !self.state().paused && self.future(1).is_empty()
    }

    fn is_live(&self) -> bool {
        self.closed_at.is_none()
    }
}

fn uuid_like(n: i64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

pub struct State {
    pub mode: Mode,
    pub namespaces: BTreeSet<String>,
    schedules: BTreeMap<(String, String), Entry>,
    pub calls: BTreeMap<String, u64>,
    pub faults: BTreeMap<String, VecDeque<Code>>,
    pub latency: Duration,
    pub list_lag: Duration,
}

impl State {
    pub fn new() -> State {
        State {
            mode: Mode::V1,
            namespaces: BTreeSet::from(["default".to_string()]),
            schedules: BTreeMap::new(),
            calls: BTreeMap::new(),
            faults: BTreeMap::new(),
            latency: Duration::ZERO,
            list_lag: Duration::ZERO,
        }
    }

    pub fn live(&self, ns: &str, id: &str) -> Option<&Entry> {
        self.schedules
            .get(&(ns.to_string(), id.to_string()))
            .filter(|e| e.is_live())
    }

    pub fn live_mut(&mut self, ns: &str, id: &str) -> Option<&mut Entry> {
        self.schedules
            .get_mut(&(ns.to_string(), id.to_string()))
            .filter(|e| e.is_live())
    }

    pub fn live_ids(&self, ns: &str) -> Vec<String> {
        self.schedules
            .iter()
            .filter(|((n, _), e)| n == ns && e.is_live())
            .map(|((_, id), _)| id.clone())
            .collect()
    }

    pub fn insert(&mut self, ns: &str, id: &str, mut entry: Entry) {
        entry.visible_from = Instant::now() + self.list_lag;
        entry.refresh_list_info();
        self.schedules
            .insert((ns.to_string(), id.to_string()), entry);
    }

    pub fn close(&mut self, ns: &str, id: &str) {
        let lag = self.list_lag;
        if let Some(e) = self.live_mut(ns, id) {
            let now = Instant::now();
            e.closed_at = Some(now);
            e.linger_until = Some(now + lag);
        }
    }

    fn not_found(&self, ns: &str, id: &str) -> Status {
        match self.schedules.get(&(ns.to_string(), id.to_string())) {
            Some(_) => Status::not_found("schedule not found"),
            None => Status::not_found(format!(
                "workflow not found for ID: temporal-sys-scheduler:{id}"
            )),
        }
    }
}

/// A gRPC status carrying one typed detail, as the server sends them.
fn with_detail<M: Message>(code: Code, message: String, type_name: &str, detail: &M) -> Status {
    let status = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details: vec![prost_wkt_types::Any {
            type_url: format!("type.googleapis.com/{type_name}"),
            value: detail.encode_to_vec(),
        }],
    };
    Status::with_details(code, message, status.encode_to_vec().into())
}

fn injected(code: Code) -> Status {
    match code {
        Code::ResourceExhausted => with_detail(
            code,
            "namespace rate limit exceeded".into(),
            "temporal.api.errordetails.v1.ResourceExhaustedFailure",
            &ResourceExhaustedFailure {
                cause: ResourceExhaustedCause::RpsLimit as i32,
                scope: ResourceExhaustedScope::Namespace as i32,
            },
        ),
        other => Status::new(other, format!("injected fault: {other:?}")),
    }
}

fn invalid_spec(reason: String) -> Status {
    Status::invalid_argument(format!("Invalid schedule spec: {reason}"))
}

fn token_bytes(token: i64) -> Vec<u8> {
    token.to_be_bytes().to_vec()
}

pub struct Service {
    state: Arc<Mutex<State>>,
}

impl Service {
    pub fn new(state: Arc<Mutex<State>>) -> Service {
        Service { state }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What every RPC does first: count the call, wait the configured latency, fail
    /// if a fault is queued, check the namespace.
    async fn enter(&self, rpc: &str, namespace: &str) -> Result<(), Status> {
        let latency = {
            let mut s = self.lock();
            *s.calls.entry(rpc.to_string()).or_default() += 1;
            s.latency
        };
        // The `set_latency` knob: this server answering slowly, as a loaded Temporal
        // would. It is simulated server behaviour, not a test waiting for a condition.
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let s = &mut *self.lock();
        if let Some(code) = s.faults.get_mut(rpc).and_then(|q| q.pop_front()) {
            return Err(injected(code));
        }
        if rpc == "GetSystemInfo" {
            return Ok(());
        }
        if namespace.is_empty() {
            return Err(Status::invalid_argument("Namespace not set on request."));
        }
        if !s.namespaces.contains(namespace) {
            return Err(with_detail(
                Code::NotFound,
                format!("Namespace {namespace} is not found."),
                "temporal.api.errordetails.v1.NamespaceNotFoundFailure",
                &NamespaceNotFoundFailure {
                    namespace: namespace.to_string(),
                },
            ));
        }
        Ok(())
    }
}

/// The checks Create and Update share for a schedule's action and size.
fn check_schedule(schedule: &Schedule, memo: Option<&Memo>) -> Result<(), Status> {
    let Some(schedule_action::Action::StartWorkflow(w)) =
        schedule.action.as_ref().and_then(|a| a.action.as_ref())
    else {
        return Err(Status::invalid_argument(
            "Only StartWorkflow action is supported for schedules",
        ));
    };
    if w.workflow_id.len() > MAX_WORKFLOW_ID_BYTES {
        return Err(Status::invalid_argument("WorkflowId exceeds length limit."));
    }
    if w.workflow_type.as_ref().is_none_or(|t| t.name.is_empty()) {
        return Err(Status::invalid_argument(
            "WorkflowType is not set on request.",
        ));
    }
    if w.task_queue.as_ref().is_none_or(|t| t.name.is_empty()) {
        return Err(Status::invalid_argument("taskQueue is not set"));
    }
    if !w.cron_schedule.is_empty() {
        return Err(Status::invalid_argument(
            "CronSchedule is not allowed in schedule actions",
        ));
    }
    let size = memo.map(|m| m.encoded_len()).unwrap_or(0)
        + w.input.as_ref().map(|i| i.encoded_len()).unwrap_or(0);
    if size > MAX_BLOB_BYTES {
        return Err(Status::invalid_argument("Blob data size exceeds limit."));
    }
    Ok(())
}

fn list_info(e: &Entry) -> ScheduleListInfo {
    let state = e.state();
    let mut spec = e.schedule.spec.clone().unwrap_or_default();
    spec.timezone_data.clear();
    spec.structured_calendar.truncate(10);
    spec.interval.truncate(10);
    spec.exclude_structured_calendar.truncate(10);
    let workflow_type = match e.schedule.action.as_ref().and_then(|a| a.action.as_ref()) {
        Some(schedule_action::Action::StartWorkflow(w)) => w.workflow_type.clone(),
        _ => None,
    };
    let recent = &e.info.recent_actions;
    ScheduleListInfo {
        spec: Some(spec),
        workflow_type,
        notes: state.notes,
        paused: state.paused,
        recent_actions: recent[recent.len().saturating_sub(RECENT_LIST)..].to_vec(),
        future_action_times: e.list_future.clone(),
        state_size_bytes: e.schedule.encoded_len() as i64,
    }
}

#[tonic::async_trait]
impl WorkflowService for Service {
    async fn get_system_info(
        &self,
        _request: Request<GetSystemInfoRequest>,
    ) -> Result<Response<GetSystemInfoResponse>, Status> {
        self.enter("GetSystemInfo", "").await?;
        Ok(Response::new(GetSystemInfoResponse::default()))
    }

    async fn create_schedule(
        &self,
        request: Request<CreateScheduleRequest>,
    ) -> Result<Response<CreateScheduleResponse>, Status> {
        let req = request.into_inner();
        self.enter("CreateSchedule", &req.namespace).await?;
        if req.schedule_id.len() > MAX_ID_BYTES {
            return Err(Status::invalid_argument("ScheduleId exceeds length limit."));
        }
        if req.request_id.is_empty() {
            return Err(Status::invalid_argument("RequestId is not set on request."));
        }
        if req.request_id.len() > MAX_REQUEST_ID_BYTES {
            return Err(Status::invalid_argument("RequestId length exceeds limit."));
        }
        let schedule = spec::normalise_schedule(req.schedule.clone().unwrap_or_default())
            .map_err(invalid_spec)?;
        check_schedule(&schedule, req.memo.as_ref())?;
        let s = &mut *self.lock();
        if let Some(existing) = s.live(&req.namespace, &req.schedule_id) {
            if existing.request_id == req.request_id {
                return Ok(Response::new(CreateScheduleResponse {
                    conflict_token: token_bytes(1),
                }));
            }
            return Err(with_detail(
                Code::AlreadyExists,
                format!("schedule {:?} is already registered", req.schedule_id),
                "temporal.api.errordetails.v1.WorkflowExecutionAlreadyStartedFailure",
                &WorkflowExecutionAlreadyStartedFailure::default(),
            ));
        }
        let mut entry = Entry::new(schedule, req.memo, req.request_id);
        entry.search_attributes = req.search_attributes;
        if let Some(patch) = req.initial_patch {
            let state = entry.schedule.state.get_or_insert_with(Default::default);
            if !patch.pause.is_empty() {
                state.paused = true;
                state.notes = patch.pause;
            } else if !patch.unpause.is_empty() {
                state.paused = false;
                state.notes = patch.unpause;
            }
            if patch.trigger_immediately.is_some() {
                entry.record_action();
            }
        }
        s.insert(&req.namespace, &req.schedule_id, entry);
        Ok(Response::new(CreateScheduleResponse {
            conflict_token: token_bytes(1),
        }))
    }

    async fn describe_schedule(
        &self,
        request: Request<DescribeScheduleRequest>,
    ) -> Result<Response<DescribeScheduleResponse>, Status> {
        let req = request.into_inner();
        self.enter("DescribeSchedule", &req.namespace).await?;
        let s = self.lock();
        let Some(e) = s.live(&req.namespace, &req.schedule_id) else {
            return Err(s.not_found(&req.namespace, &req.schedule_id));
        };
        let mut info = e.info.clone();
        info.future_action_times = e.future(RECENT_DESCRIBE);
        Ok(Response::new(DescribeScheduleResponse {
            schedule: Some(e.schedule.clone()),
            info: Some(info),
            memo: e.memo.clone(),
            search_attributes: e.search_attributes.clone(),
            conflict_token: token_bytes(e.token),
        }))
    }

    async fn update_schedule(
        &self,
        request: Request<UpdateScheduleRequest>,
    ) -> Result<Response<UpdateScheduleResponse>, Status> {
        let req = request.into_inner();
        self.enter("UpdateSchedule", &req.namespace).await?;
        if req.request_id.len() > MAX_REQUEST_ID_BYTES {
            return Err(Status::invalid_argument("RequestId length exceeds limit."));
        }
        let schedule = spec::normalise_schedule(req.schedule.clone().unwrap_or_default())
            .map_err(invalid_spec)?;
        let s = &mut *self.lock();
        let mode = s.mode;
        if s.live(&req.namespace, &req.schedule_id).is_none() {
            return Err(s.not_found(&req.namespace, &req.schedule_id));
        }
        let e = s
            .live_mut(&req.namespace, &req.schedule_id)
            .expect("checked above");
        check_schedule(&schedule, req.memo.as_ref().or(e.memo.as_ref()))?;
        if req.memo.is_some() && mode == Mode::V1 {
            return Err(Status::failed_precondition(
                "memo updates are not supported on workflow-backed schedules",
            ));
        }
        if req.conflict_token.len() >= 8 {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&req.conflict_token[..8]);
            if i64::from_be_bytes(bytes) != e.token {
                return match mode {
                    // V1 accepts the signal and the scheduler drops it with a warning.
                    Mode::V1 => Ok(Response::new(UpdateScheduleResponse::default())),
                    Mode::V2 => Err(Status::failed_precondition("mismatched conflict token")),
                };
            }
        }
        // Full replacement: a missing state is State{}, which unpauses.
        let mut schedule = schedule;
        schedule.state = Some(schedule.state.unwrap_or_default());
        e.schedule = schedule;
        if let Some(sa) = req.search_attributes {
            e.search_attributes = Some(sa);
        }
        if let Some(memo) = req.memo {
            e.memo = Some(memo).filter(|m| !m.fields.is_empty());
        }
        e.touch();
        Ok(Response::new(UpdateScheduleResponse::default()))
    }

    async fn patch_schedule(
        &self,
        request: Request<PatchScheduleRequest>,
    ) -> Result<Response<PatchScheduleResponse>, Status> {
        let req = request.into_inner();
        self.enter("PatchSchedule", &req.namespace).await?;
        let Some(patch) = req.patch else {
            return Err(Status::invalid_argument("Patch is not set on request."));
        };
        if patch.pause.len() > MAX_NOTES_BYTES || patch.unpause.len() > MAX_NOTES_BYTES {
            return Err(Status::invalid_argument("Schedule notes exceeds limit."));
        }
        let s = &mut *self.lock();
        let mode = s.mode;
        if s.live(&req.namespace, &req.schedule_id).is_none() {
            return Err(s.not_found(&req.namespace, &req.schedule_id));
        }
        let e = s
            .live_mut(&req.namespace, &req.schedule_id)
            .expect("checked above");
        let mut bumped = false;
        if !patch.pause.is_empty() || !patch.unpause.is_empty() {
            let state = e.schedule.state.get_or_insert_with(Default::default);
            if !patch.pause.is_empty() {
                state.paused = true;
                state.notes = patch.pause;
            } else {
                state.paused = false;
                state.notes = patch.unpause;
            }
            e.touch();
            bumped = true;
        }
        if patch.trigger_immediately.is_some() {
            // Runs even when paused and uses up no remaining action.
            e.record_action();
        }
        if mode == Mode::V2 && !bumped {
            e.touch();
        }
        Ok(Response::new(PatchScheduleResponse::default()))
    }

    async fn delete_schedule(
        &self,
        request: Request<DeleteScheduleRequest>,
    ) -> Result<Response<DeleteScheduleResponse>, Status> {
        let req = request.into_inner();
        self.enter("DeleteSchedule", &req.namespace).await?;
        let s = &mut *self.lock();
        match s
            .schedules
            .get(&(req.namespace.clone(), req.schedule_id.clone()))
        {
            Some(e) if e.is_live() => {
                s.close(&req.namespace, &req.schedule_id);
                Ok(Response::new(DeleteScheduleResponse::default()))
            }
            Some(_) => Err(Status::not_found("workflow execution already completed")),
            None => Err(s.not_found(&req.namespace, &req.schedule_id)),
        }
    }

    async fn list_schedules(
        &self,
        request: Request<ListSchedulesRequest>,
    ) -> Result<Response<ListSchedulesResponse>, Status> {
        let req = request.into_inner();
        self.enter("ListSchedules", &req.namespace).await?;
        if !req.query.trim().is_empty() {
            return Err(Status::invalid_argument(
                "the test server does not evaluate list queries; filter on the client",
            ));
        }
        let page = match req.maximum_page_size {
            n if n <= 0 || n as usize > MAX_PAGE => MAX_PAGE,
            n => n as usize,
        };
        let offset = if req.next_page_token.is_empty() {
            0
        } else {
            let text = std::str::from_utf8(&req.next_page_token).unwrap_or_default();
            text.strip_prefix("offset:")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| Status::invalid_argument("invalid page token"))?
        };
        let s = self.lock();
        let now = Instant::now();
        // Visibility: new schedules appear after the lag, deleted ones linger for it.
        let visible: Vec<(&String, &Entry)> = s
            .schedules
            .iter()
            .filter(|((ns, _), _)| *ns == req.namespace)
            .filter(|(_, e)| e.visible_from <= now && e.linger_until.is_none_or(|t| now < t))
            .map(|((_, id), e)| (id, e))
            .collect();
        let schedules: Vec<ScheduleListEntry> = visible
            .iter()
            .skip(offset)
            .take(page)
            .map(|(id, e)| ScheduleListEntry {
                schedule_id: (*id).clone(),
                memo: e.memo.clone(),
                search_attributes: e.search_attributes.clone(),
                info: Some(list_info(e)),
            })
            .collect();
        // SQL visibility returns a token whenever a page is exactly full, so the page
        // after the last one may be empty.
        let next_page_token = if schedules.len() == page {
            format!("offset:{}", offset + page).into_bytes()
        } else {
            Vec::new()
        };
        Ok(Response::new(ListSchedulesResponse {
            schedules,
            next_page_token,
        }))
    }
}
