//! A Temporal test server: the real gRPC `WorkflowService` schedule RPCs served over
//! loopback, with the behaviour `../shared/spec/temporal-schedules.md` describes —
//! error codes and details, request-id deduplication, conflict tokens (V1: a mismatch
//! is silently dropped; V2: FailedPrecondition), immutable memo on V1, normalised
//! Describe, eventually consistent List with SQL-visibility paging, one-shot schedules
//! that stay after firing, and expiry — plus knobs for fault injection, latency, list
//! lag and per-RPC call counts, and direct access to seed and inspect state.
//!
//! It exists because no Temporal server can run where the tests run; activity-sync's
//! Temporal client is tested only through it (and, opt-in, against a real server).
//! Cron strings are compiled with activity-sync's own Temporal-dialect parser, which
//! mirrors the server's `calendar.go`; the normalisation examples of the spec are
//! pinned in this crate's tests.

mod proto {
    #![allow(clippy::all)]
    tonic::include_proto!("temporal.api.workflowservice.v1");
}
mod service;
mod spec;

pub use service::Mode;
use service::{Entry, Service, State};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use temporalio_common::protos::temporal::api::common::v1::Memo;
use temporalio_common::protos::temporal::api::schedule::v1::{Schedule, ScheduleInfo};
use tokio::sync::oneshot;
pub use tonic::Code;

/// The RPCs that change a schedule.
pub const MUTATING_RPCS: [&str; 4] = [
    "CreateSchedule",
    "UpdateSchedule",
    "PatchSchedule",
    "DeleteSchedule",
];

/// A running test server. Dropping it stops the server.
pub struct TestServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// What a test can see of one stored schedule.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub schedule: Schedule,
    pub info: ScheduleInfo,
    pub memo: Option<Memo>,
    pub conflict_token: i64,
    pub request_id: String,
}

impl TestServer {
    /// Starts a server on `127.0.0.1:0` with namespace `default`, V1 behaviour.
    pub async fn start() -> TestServer {
        Self::start_on("127.0.0.1:0".parse().expect("a loopback address"))
            .await
            .expect("the test server binds a loopback port")
    }

    /// Starts a server on `addr`.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<TestServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::new()));
        let svc =
            proto::workflow_service_server::WorkflowServiceServer::new(Service::new(state.clone()))
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                .send_compressed(tonic::codec::CompressionEncoding::Gzip)
                .max_decoding_message_size(8 * 1024 * 1024);
        let (stop, stopped) = oneshot::channel::<()>();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(TestServer {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, as ACTIVITY_SYNC_TEMPORAL_ADDRESS takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops serving and waits for the server task to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    // --- knobs -------------------------------------------------------------------

    /// V1 (workflow-backed, the default) or V2 (CHASM) behaviour.
    pub fn set_mode(&self, mode: Mode) {
        self.state().mode = mode;
    }

    /// The next `n` calls of `rpc` (e.g. "CreateSchedule") fail with `code`.
    pub fn fail_next(&self, rpc: &str, n: usize, code: Code) {
        let mut s = self.state();
        let queue = s.faults.entry(rpc.to_string()).or_default();
        queue.extend(std::iter::repeat_n(code, n));
    }

    /// Every RPC waits this long before it is answered.
    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    /// ListSchedules shows a schedule only this long after its creation, and keeps
    /// showing a deleted one this long after its deletion (visibility lag).
    pub fn set_list_lag(&self, lag: Duration) {
        self.state().list_lag = lag;
    }

    pub fn add_namespace(&self, namespace: &str) {
        self.state().namespaces.insert(namespace.to_string());
    }

    /// Calls of `rpc` so far (failed ones included).
    pub fn calls(&self, rpc: &str) -> u64 {
        self.state().calls.get(rpc).copied().unwrap_or(0)
    }

    /// Calls of the four mutating RPCs so far.
    pub fn mutating_calls(&self) -> u64 {
        MUTATING_RPCS.iter().map(|r| self.calls(r)).sum()
    }

    pub fn reset_calls(&self) {
        self.state().calls.clear();
    }

    /// The live schedule `id` in `default`, if any.
    pub fn schedule(&self, id: &str) -> Option<Snapshot> {
        self.state().live("default", id).map(|e| Snapshot {
            schedule: e.schedule.clone(),
            info: e.info.clone(),
            memo: e.memo.clone(),
            conflict_token: e.token,
            request_id: e.request_id.clone(),
        })
    }

    /// IDs of the live schedules in `default`, sorted.
    pub fn schedule_ids(&self) -> Vec<String> {
        self.state().live_ids("default")
    }

    /// Creates a schedule directly (no RPC, not counted): e.g. someone else's
    /// schedule, or one left over from an earlier deployment. The spec is normalised
    /// as Create would.
    pub fn seed(&self, id: &str, schedule: Schedule, memo: Option<Memo>) {
        let mut s = self.state();
        let normalised = spec::normalise_schedule(schedule).expect("a valid seeded schedule");
        s.insert(
            "default",
            id,
            Entry::new(normalised, memo, "seed".to_string()),
        );
    }

    /// Pauses (or unpauses) a schedule as an operator or pause-on-failure would.
    pub fn set_paused(&self, id: &str, paused: bool, notes: &str) {
        let mut s = self.state();
        if let Some(e) = s.live_mut("default", id) {
            let state = e.schedule.state.get_or_insert_with(Default::default);
            state.paused = paused;
            state.notes = notes.to_string();
            e.touch();
        }
    }

    /// Deletes a schedule out of band (no RPC, not counted).
    pub fn remove(&self, id: &str) {
        self.state().close("default", id);
    }

    /// Replaces a schedule's spec out of band (as an operator editing it in the UI
    /// would), bumping the conflict token.
    pub fn edit_spec(&self, id: &str, cron: &str) {
        let mut s = self.state();
        if let Some(e) = s.live_mut("default", id) {
            let spec = e.schedule.spec.get_or_insert_with(Default::default);
            spec.structured_calendar.clear();
            spec.cron_string = vec![cron.to_string()];
            let normalised = spec::normalise_spec(spec.clone()).expect("a valid cron string");
            e.schedule.spec = Some(normalised);
            e.touch();
        }
    }

    /// Takes one scheduled action now, as the scheduler would at a nominal time:
    /// counts it, records it and uses up one of `remaining_actions` when limited.
    /// Returns false when the schedule could not act (missing, paused, used up).
    pub fn fire(&self, id: &str) -> bool {
        let mut s = self.state();
        match s.live_mut("default", id) {
            Some(e) => e.fire(),
            None => false,
        }
    }

    /// Closes `id` if it qualifies for expiry (not paused and no future actions), as
    /// the server does 7 days after the last event. Returns whether it closed.
    pub fn expire(&self, id: &str) -> bool {
        let mut s = self.state();
        let qualifies = s.live("default", id).is_some_and(|e| e.expirable());
        if qualifies {
            s.close("default", id);
        }
        qualifies
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
