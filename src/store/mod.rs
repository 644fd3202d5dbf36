//! The database adapter: PostgreSQL in production, SQLite as the embedded default,
//! with one behaviour and each its own SQL. Migrations are embedded and applied before
//! first use. The store only reads and writes; deciding what to write is the planner's.
//!
//! Invariants: every statement that writes a definition or event type row filters on
//! `owner`, so another owner's rows cannot change; nothing is ever hard-deleted.

mod postgres;
mod sqlite;

use crate::plan::Observed;
use crate::plan::records::{DefinitionRecord, EventTypeRecord};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long to wait for a connection before a run reports the database unreachable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database unreachable: {0}")]
    Unavailable(String),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("database error: {0}")]
    Query(String),
    #[error("invalid database URL: {0}")]
    Url(String),
}

impl Error {
    /// A fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Unavailable(_) => "unavailable",
            Error::Migration(_) => "migration",
            Error::Query(_) => "query",
            Error::Url(_) => "url",
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolClosed => Error::Unavailable(e.to_string()),
            sqlx::Error::Migrate(m) => Error::Migration(m.to_string()),
            other => Error::Query(other.to_string()),
        }
    }
}

/// One write of a stage, applied in one transaction with the others.
#[derive(Debug, Clone)]
pub enum Write<'a, R> {
    Upsert(&'a R),
    Remove(&'a str),
}

/// What `activity_schedules` remembers of one schedule this sidecar applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedSchedule {
    pub id: String,
    pub owner: String,
    pub definition: String,
    pub hash: String,
}

/// One bookkeeping write for `activity_schedules`.
#[derive(Debug, Clone)]
pub enum ScheduleWrite<'a> {
    /// The schedule now matches `hash`.
    Applied {
        id: &'a str,
        definition: &'a str,
        hash: &'a str,
    },
    /// The schedule was deleted.
    Forget { id: &'a str },
}

/// One audit row of `activity_sync_runs`.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub run_id: String,
    pub owner: String,
    pub trigger: String,
    pub caller: Option<String>,
    pub dry_run: bool,
    pub ok: bool,
    pub source_revision: Option<String>,
    pub started_at: DateTime<Utc>,
    pub locked_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub errors: i32,
    /// The report, as JSON text.
    pub report: String,
}

/// A connection pool to one of the two backends.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// Rows written by stage writes (not the audit row): tests and benchmarks read it
    /// to prove that a no-op sync writes nothing.
    writes: Arc<AtomicU64>,
    migrated: Arc<tokio::sync::OnceCell<()>>,
}

#[derive(Clone)]
enum Backend {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

/// Held while a run applies; other replicas wait for it. Released explicitly, or when
/// dropped (the connection holding it is then closed, which frees the lock).
pub struct Lock {
    inner: Option<postgres::AdvisoryLock>,
}

impl Lock {
    pub async fn release(mut self) {
        if let Some(l) = self.inner.take() {
            l.release().await;
        }
    }
}

impl Store {
    /// Opens a pool without connecting: an unreachable database shows up as an error
    /// of the first run that needs it (and the next run retries), never as a failure to
    /// start. SQLite files are created if missing.
    pub fn open(url: &str) -> Result<Store, Error> {
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite(sqlite::open(url)?)
        } else {
            Backend::Postgres(postgres::open(url)?)
        };
        Ok(Store {
            backend,
            writes: Arc::new(AtomicU64::new(0)),
            migrated: Arc::new(tokio::sync::OnceCell::new()),
        })
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// Rows written by stage writes since the store was opened.
    pub fn rows_written(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Applies the embedded migrations once per process (retried after a failure).
    pub async fn migrate(&self) -> Result<(), Error> {
        self.migrated
            .get_or_try_init(|| async {
                match &self.backend {
                    Backend::Postgres(p) => postgres::migrate(p).await,
                    Backend::Sqlite(p) => sqlite::migrate(p).await,
                }
            })
            .await
            .map(|_| ())
    }

    /// Takes the cluster-wide lock for `owner`, waiting up to `timeout`. `Ok(None)`
    /// means another process still held it when the time ran out. On SQLite the lock
    /// is only process-wide (the caller serialises runs); see docs/database.md.
    pub async fn lock(&self, owner: &str, timeout: Duration) -> Result<Option<Lock>, Error> {
        match &self.backend {
            Backend::Postgres(p) => Ok(postgres::AdvisoryLock::acquire(p, owner, timeout)
                .await?
                .map(|l| Lock { inner: Some(l) })),
            Backend::Sqlite(_) => Ok(Some(Lock { inner: None })),
        }
    }

    /// Every row of `activity_definitions` (any owner, so that a name taken by another
    /// owner is seen), with hash and removal state.
    pub async fn observe_definitions(&self) -> Result<Vec<Observed>, Error> {
        self.migrate().await?;
        match &self.backend {
            Backend::Postgres(p) => postgres::observe(p, "activity_definitions").await,
            Backend::Sqlite(p) => sqlite::observe(p, "activity_definitions").await,
        }
    }

    pub async fn observe_event_types(&self) -> Result<Vec<Observed>, Error> {
        self.migrate().await?;
        match &self.backend {
            Backend::Postgres(p) => postgres::observe(p, "activity_event_types").await,
            Backend::Sqlite(p) => sqlite::observe(p, "activity_event_types").await,
        }
    }

    /// Applies one stage's writes in one transaction; returns the rows written.
    pub async fn apply_definitions(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        writes: &[Write<'_, DefinitionRecord>],
    ) -> Result<u64, Error> {
        if writes.is_empty() {
            return Ok(0);
        }
        let n = match &self.backend {
            Backend::Postgres(p) => postgres::apply_definitions(p, owner, now, writes).await?,
            Backend::Sqlite(p) => sqlite::apply_definitions(p, owner, now, writes).await?,
        };
        self.writes.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    pub async fn apply_event_types(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        writes: &[Write<'_, EventTypeRecord>],
    ) -> Result<u64, Error> {
        if writes.is_empty() {
            return Ok(0);
        }
        let n = match &self.backend {
            Backend::Postgres(p) => postgres::apply_event_types(p, owner, now, writes).await?,
            Backend::Sqlite(p) => sqlite::apply_event_types(p, owner, now, writes).await?,
        };
        self.writes.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    /// The applied hashes of every schedule recorded for `namespace` (any owner).
    pub async fn observe_schedules(&self, namespace: &str) -> Result<Vec<AppliedSchedule>, Error> {
        self.migrate().await?;
        match &self.backend {
            Backend::Postgres(p) => postgres::observe_schedules(p, namespace).await,
            Backend::Sqlite(p) => sqlite::observe_schedules(p, namespace).await,
        }
    }

    /// Records applied schedules and forgets deleted ones, in one transaction.
    pub async fn apply_schedules(
        &self,
        owner: &str,
        namespace: &str,
        now: DateTime<Utc>,
        writes: &[ScheduleWrite<'_>],
    ) -> Result<u64, Error> {
        if writes.is_empty() {
            return Ok(0);
        }
        let n = match &self.backend {
            Backend::Postgres(p) => {
                postgres::apply_schedules(p, owner, namespace, now, writes).await?
            }
            Backend::Sqlite(p) => sqlite::apply_schedules(p, owner, namespace, now, writes).await?,
        };
        self.writes.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    /// Writes the audit row of a run (dry runs included).
    pub async fn record_run(&self, run: &RunRecord) -> Result<(), Error> {
        self.migrate().await?;
        match &self.backend {
            Backend::Postgres(p) => postgres::record_run(p, run).await,
            Backend::Sqlite(p) => sqlite::record_run(p, run).await,
        }
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        match &self.backend {
            Backend::Postgres(p) => p.close().await,
            Backend::Sqlite(p) => p.close().await,
        }
    }
}

/// The embedded migrations for one backend, as sqlx migrations.
fn migrator(sources: &[(i64, &'static str, &'static str)]) -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr;
    let migrations = sources
        .iter()
        .map(|(version, description, sql)| {
            sqlx::migrate::Migration::new(
                *version,
                (*description).into(),
                sqlx::migrate::MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    sqlx::migrate::Migrator::with_migrations(migrations)
}

/// Timestamps are bound as RFC 3339 text in UTC with microseconds, so that on SQLite
/// (where they are stored as text) they also sort correctly.
fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
