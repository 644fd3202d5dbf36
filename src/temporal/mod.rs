//! The Temporal adapter: raw `WorkflowService` schedule RPCs through
//! `temporalio-client` (the high-level schedule API lacks memo, catch-up window,
//! limited actions and conflict tokens). Generated proto types never leave this module:
//! callers pass [`ScheduleRecord`]s and get plain structs back.
//!
//! Every call goes through a client-side rate limit and retries transient failures
//! (the client library retries Unavailable, ResourceExhausted and the other transient
//! codes with the same request; DeadlineExceeded is retried here). Connection is lazy
//! and re-established after a failure, so an unreachable Temporal is one run's error,
//! never a failure to start.

mod limiter;
mod mapping;

use crate::config::TemporalSettings;
use crate::plan::records::ScheduleRecord;
use limiter::RateLimiter;
use std::time::Duration;
use temporalio_client::grpc::WorkflowService;
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions, RetryOptions, Url};
use temporalio_common::protos::temporal::api::schedule::v1::{SchedulePatch, ScheduleState};
use temporalio_common::protos::temporal::api::workflowservice::v1::{
    CreateScheduleRequest, DeleteScheduleRequest, DescribeScheduleRequest, ListSchedulesRequest,
    PatchScheduleRequest, UpdateScheduleRequest,
};
use tonic::Code;

pub use mapping::{MEMO_DEFINITION, MEMO_OWNER};

/// Notes prefix of every pause activity-sync makes; any other pause is someone else's.
pub const NOTE_PREFIX: &str = "activity-sync:";
/// The note of a schedule paused because its definition is disabled.
pub const NOTE_DISABLED: &str = "activity-sync: disabled in source";
/// The note activity-sync unpauses with.
pub const NOTE_ENABLED: &str = "activity-sync: enabled in source";

const PAGE_SIZE: i32 = 1000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEADLINE_RETRIES: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Temporal is unreachable at {address}: {message}")]
    Unreachable { address: String, message: String },
    #[error("Temporal answered {code:?}: {message}")]
    Rpc { code: Code, message: String },
    #[error("invalid Temporal settings: {0}")]
    Settings(String),
}

impl Error {
    /// A fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Unreachable { .. } => "unreachable",
            Error::Rpc { .. } => "rpc",
            Error::Settings(_) => "settings",
        }
    }

    fn code(&self) -> Option<Code> {
        match self {
            Error::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    fn is(&self, code: Code) -> bool {
        self.code() == Some(code)
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        Error::Rpc {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

/// One schedule as ListSchedules shows it (possibly stale: List is eventually
/// consistent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    /// The memo's `activity-sync/owner`, if any.
    pub owner: Option<String>,
    pub paused: bool,
    pub notes: String,
}

/// One schedule as DescribeSchedule shows it.
#[derive(Debug, Clone)]
pub struct Described {
    pub owner: Option<String>,
    pub paused: bool,
    pub notes: String,
    pub limited_actions: bool,
    pub remaining_actions: i64,
    conflict_token: Vec<u8>,
}

impl Described {
    /// Paused by someone other than activity-sync (an operator, pause-on-failure).
    pub fn paused_by_other(&self) -> bool {
        self.paused && !self.notes.starts_with(NOTE_PREFIX)
    }
}

/// The state an Update should leave the schedule in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetState {
    pub paused: bool,
    pub notes: String,
    /// Re-arm a one-shot: limited to one more action.
    pub rearm_once: bool,
}

/// Create's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    /// The ID is taken (by us, lagging, or by someone else): describe and reconcile.
    AlreadyExists,
}

/// A Temporal connection for one namespace.
pub struct Temporal {
    settings: TemporalSettings,
    identity: String,
    owner: String,
    client: tokio::sync::Mutex<Option<Client>>,
    limiter: RateLimiter,
}

impl Temporal {
    pub fn new(settings: &TemporalSettings, owner: &str) -> Temporal {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_string());
        Temporal {
            settings: settings.clone(),
            identity: format!("activity-sync/{owner}@{host}"),
            owner: owner.to_string(),
            client: tokio::sync::Mutex::new(None),
            limiter: RateLimiter::new(settings.max_rps),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.settings.namespace
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    async fn client(&self) -> Result<Client, Error> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let client = self.connect().await?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Forgets the connection so the next call reconnects.
    async fn reset(&self) {
        *self.client.lock().await = None;
    }

    async fn connect(&self) -> Result<Client, Error> {
        let s = &self.settings;
        let url =
            Url::parse(&s.address).map_err(|e| Error::Settings(format!("{}: {e}", s.address)))?;
        let tls = mapping::tls_options(s).map_err(Error::Settings)?;
        let retry = RetryOptions::builder()
            .initial_interval(Duration::from_millis(100))
            .max_interval(Duration::from_secs(2))
            .max_elapsed_time(Some(Duration::from_secs(10)))
            .max_retries(8)
            .build();
        let options = ConnectionOptions::new(url)
            .identity(self.identity.clone())
            .maybe_api_key(s.api_key.as_ref().map(|k| k.expose().to_string()))
            .maybe_tls_options(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .retry_options(retry)
            .build();
        let unreachable = |message: String| Error::Unreachable {
            address: s.address.clone(),
            message,
        };
        let connection = tokio::time::timeout(2 * CONNECT_TIMEOUT, Connection::connect(options))
            .await
            .map_err(|_| unreachable("connection timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        Client::new(connection, ClientOptions::new(s.namespace.clone()).build())
            .map_err(|e| unreachable(e.to_string()))
    }

    /// Runs one RPC: rate limit, DeadlineExceeded retry, reconnect after transport loss.
    async fn call<T, F, Fut>(&self, mut rpc: F) -> Result<T, Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let mut attempt = 0;
        loop {
            self.limiter.acquire().await;
            let client = self.client().await?;
            match rpc(client).await {
                Ok(v) => return Ok(v),
                Err(status) => {
                    let err = Error::from(status);
                    if err.is(Code::DeadlineExceeded) && attempt < DEADLINE_RETRIES {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                        continue;
                    }
                    if err.is(Code::Unavailable) {
                        // The client already retried; start afresh next time.
                        self.reset().await;
                    }
                    return Err(err);
                }
            }
        }
    }

    /// Every schedule whose ID starts with `prefix`, across all pages. Returns the
    /// schedules and the number of pages read.
    pub async fn list(&self, prefix: &str) -> Result<(Vec<Listed>, usize), Error> {
        let mut out = Vec::new();
        let mut token = Vec::new();
        let mut pages = 0;
        loop {
            let request = ListSchedulesRequest {
                namespace: self.settings.namespace.clone(),
                maximum_page_size: PAGE_SIZE,
                next_page_token: token.clone(),
                query: String::new(),
            };
            let page = self
                .call(|mut c| {
                    let r = request.clone();
                    async move { WorkflowService::list_schedules(&mut c, tonic::Request::new(r)).await }
                })
                .await?
                .into_inner();
            pages += 1;
            for entry in page.schedules {
                if entry.schedule_id.starts_with(prefix) {
                    out.push(mapping::listed(entry));
                }
            }
            if page.next_page_token.is_empty() {
                return Ok((out, pages));
            }
            token = page.next_page_token;
        }
    }

    /// `Ok(None)` when the schedule does not exist.
    pub async fn describe(&self, id: &str) -> Result<Option<Described>, Error> {
        let request = DescribeScheduleRequest {
            namespace: self.settings.namespace.clone(),
            schedule_id: id.to_string(),
        };
        let result = self
            .call(|mut c| {
                let r = request.clone();
                async move { WorkflowService::describe_schedule(&mut c, tonic::Request::new(r)).await }
            })
            .await;
        match result {
            Ok(resp) => Ok(Some(mapping::described(resp.into_inner()))),
            Err(e) if e.is(Code::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates the schedule with our memo; paused with [`NOTE_DISABLED`] when the
    /// definition is disabled. One request ID for all retries, so a retried create that
    /// had succeeded is deduplicated by the server.
    pub async fn create(&self, record: &ScheduleRecord) -> Result<Created, Error> {
        let state = ScheduleState {
            paused: !record.enabled,
            notes: if record.enabled {
                String::new()
            } else {
                NOTE_DISABLED.to_string()
            },
            ..mapping::initial_state(record)
        };
        let request = CreateScheduleRequest {
            namespace: self.settings.namespace.clone(),
            schedule_id: record.id.clone(),
            schedule: Some(mapping::schedule(record, state)),
            initial_patch: None,
            identity: self.identity.clone(),
            request_id: uuid::Uuid::now_v7().to_string(),
            memo: Some(mapping::memo(&self.owner, &record.definition)),
            search_attributes: None,
        };
        let result = self
            .call(|mut c| {
                let r = request.clone();
                async move { WorkflowService::create_schedule(&mut c, tonic::Request::new(r)).await }
            })
            .await;
        match result {
            Ok(_) => Ok(Created::Created),
            Err(e) if e.is(Code::AlreadyExists) => Ok(Created::AlreadyExists),
            Err(e) => Err(e),
        }
    }

    /// Replaces spec, action, policies and state, guarded by the conflict token from
    /// `current`. Never sends a memo (immutable on workflow-backed schedules).
    pub async fn update(
        &self,
        record: &ScheduleRecord,
        current: &Described,
        target: &TargetState,
    ) -> Result<(), Error> {
        let state = if target.rearm_once {
            ScheduleState {
                notes: target.notes.clone(),
                paused: target.paused,
                ..mapping::initial_state(record)
            }
        } else {
            ScheduleState {
                notes: target.notes.clone(),
                paused: target.paused,
                limited_actions: current.limited_actions,
                remaining_actions: current.remaining_actions,
            }
        };
        let request = UpdateScheduleRequest {
            namespace: self.settings.namespace.clone(),
            schedule_id: record.id.clone(),
            schedule: Some(mapping::schedule(record, state)),
            conflict_token: current.conflict_token.clone(),
            identity: self.identity.clone(),
            request_id: uuid::Uuid::now_v7().to_string(),
            search_attributes: None,
            memo: None,
        };
        self.call(|mut c| {
            let r = request.clone();
            async move { WorkflowService::update_schedule(&mut c, tonic::Request::new(r)).await }
        })
        .await
        .map(|_| ())
    }

    /// Pauses (`pause = true`) or unpauses with `note`.
    pub async fn set_paused(&self, id: &str, pause: bool, note: &str) -> Result<(), Error> {
        let patch = if pause {
            SchedulePatch {
                pause: note.to_string(),
                ..SchedulePatch::default()
            }
        } else {
            SchedulePatch {
                unpause: note.to_string(),
                ..SchedulePatch::default()
            }
        };
        let request = PatchScheduleRequest {
            namespace: self.settings.namespace.clone(),
            schedule_id: id.to_string(),
            patch: Some(patch),
            identity: self.identity.clone(),
            request_id: uuid::Uuid::now_v7().to_string(),
        };
        self.call(|mut c| {
            let r = request.clone();
            async move { WorkflowService::patch_schedule(&mut c, tonic::Request::new(r)).await }
        })
        .await
        .map(|_| ())
    }

    /// Deletes the schedule; one that is already gone counts as deleted.
    pub async fn delete(&self, id: &str) -> Result<(), Error> {
        let request = DeleteScheduleRequest {
            namespace: self.settings.namespace.clone(),
            schedule_id: id.to_string(),
            identity: self.identity.clone(),
        };
        let result = self
            .call(|mut c| {
                let r = request.clone();
                async move { WorkflowService::delete_schedule(&mut c, tonic::Request::new(r)).await }
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.is(Code::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
