//! PostgreSQL: the production backend, and the only one with a cluster-wide lock.

use super::{AppliedSchedule, Error, RunRecord, ScheduleWrite, Write};
use crate::plan::Observed;
use crate::plan::records::{DefinitionRecord, EventTypeRecord};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool, Postgres, Row};
use std::str::FromStr;
use std::time::{Duration, Instant};

const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "initial",
    include_str!("../../migrations/postgres/0001_initial.sql"),
)];

pub(super) fn open(url: &str) -> Result<PgPool, Error> {
    let options =
        PgConnectOptions::from_str(url).map_err(|e| Error::Url(redact(&e.to_string())))?;
    Ok(PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(super::ACQUIRE_TIMEOUT)
        .connect_lazy_with(options.application_name("activity-sync")))
}

/// sqlx quotes the URL in some parse errors; never let a password through.
fn redact(message: &str) -> String {
    match message.find("://") {
        Some(_) => "the URL could not be parsed".to_string(),
        None => message.to_string(),
    }
}

pub(super) async fn migrate(pool: &PgPool) -> Result<(), Error> {
    // sqlx takes its own advisory lock, so replicas starting together migrate once.
    super::migrator(MIGRATIONS)
        .run(pool)
        .await
        .map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(sqlx::Error::PoolTimedOut) => {
                Error::Unavailable("timed out waiting for a connection".into())
            }
            sqlx::migrate::MigrateError::Execute(inner) => Error::from(inner),
            other => Error::Migration(other.to_string()),
        })
}

pub(super) async fn observe(pool: &PgPool, table: &str) -> Result<Vec<Observed>, Error> {
    let sql = match table {
        "activity_definitions" => {
            "SELECT name, owner, content_hash, removed_at IS NOT NULL AS removed FROM activity_definitions"
        }
        _ => {
            "SELECT name, owner, content_hash, removed_at IS NOT NULL AS removed FROM activity_event_types"
        }
    };
    let rows = sqlx::query(sql).fetch_all(pool).await?;
    rows.iter()
        .map(|r| {
            Ok(Observed {
                name: r.try_get("name")?,
                owner: r.try_get("owner")?,
                hash: r.try_get("content_hash")?,
                removed: r.try_get("removed")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Error::from)
}

const UPSERT_DEFINITION: &str = "
INSERT INTO activity_definitions
    (name, owner, enabled, activity, task_queue, trigger_type, cron, timezone, event, fire_at,
     input, execution, description, labels, spec, content_hash, created_at, updated_at, removed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::timestamptz,
     $11::jsonb, $12::jsonb, $13, $14::jsonb, $15::jsonb, $16, $17::timestamptz, $17::timestamptz, NULL)
ON CONFLICT (name) DO UPDATE SET
    enabled = EXCLUDED.enabled, activity = EXCLUDED.activity, task_queue = EXCLUDED.task_queue,
    trigger_type = EXCLUDED.trigger_type, cron = EXCLUDED.cron, timezone = EXCLUDED.timezone,
    event = EXCLUDED.event, fire_at = EXCLUDED.fire_at, input = EXCLUDED.input,
    execution = EXCLUDED.execution, description = EXCLUDED.description, labels = EXCLUDED.labels,
    spec = EXCLUDED.spec, content_hash = EXCLUDED.content_hash, updated_at = EXCLUDED.updated_at,
    removed_at = NULL
WHERE activity_definitions.owner = EXCLUDED.owner";

const REMOVE_DEFINITION: &str = "
UPDATE activity_definitions SET enabled = FALSE, removed_at = $3::timestamptz, updated_at = $3::timestamptz
WHERE owner = $1 AND name = $2 AND removed_at IS NULL";

pub(super) async fn apply_definitions(
    pool: &PgPool,
    owner: &str,
    now: DateTime<Utc>,
    writes: &[Write<'_, DefinitionRecord>],
) -> Result<u64, Error> {
    let now = super::timestamp(&now);
    let mut tx = pool.begin().await?;
    let mut written = 0;
    for w in writes {
        let result = match w {
            Write::Upsert(r) => {
                sqlx::query(UPSERT_DEFINITION)
                    .bind(&r.name)
                    .bind(owner)
                    .bind(r.enabled)
                    .bind(&r.activity)
                    .bind(&r.task_queue)
                    .bind(r.trigger_type)
                    .bind(&r.cron)
                    .bind(&r.timezone)
                    .bind(&r.event)
                    .bind(r.fire_at.as_ref().map(super::timestamp))
                    .bind(&r.input)
                    .bind(&r.execution)
                    .bind(&r.description)
                    .bind(&r.labels)
                    .bind(&r.spec)
                    .bind(&r.hash)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?
            }
            Write::Remove(name) => {
                sqlx::query(REMOVE_DEFINITION)
                    .bind(owner)
                    .bind(*name)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?
            }
        };
        written += result.rows_affected();
    }
    tx.commit().await?;
    Ok(written)
}

const UPSERT_EVENT_TYPE: &str = "
INSERT INTO activity_event_types
    (name, owner, subject, description, schema, declared, content_hash, created_at, updated_at, removed_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8::timestamptz, $8::timestamptz, NULL)
ON CONFLICT (name) DO UPDATE SET
    subject = EXCLUDED.subject, description = EXCLUDED.description, schema = EXCLUDED.schema,
    declared = EXCLUDED.declared, content_hash = EXCLUDED.content_hash,
    updated_at = EXCLUDED.updated_at, removed_at = NULL
WHERE activity_event_types.owner = EXCLUDED.owner";

const REMOVE_EVENT_TYPE: &str = "
UPDATE activity_event_types SET removed_at = $3::timestamptz, updated_at = $3::timestamptz
WHERE owner = $1 AND name = $2 AND removed_at IS NULL";

pub(super) async fn apply_event_types(
    pool: &PgPool,
    owner: &str,
    now: DateTime<Utc>,
    writes: &[Write<'_, EventTypeRecord>],
) -> Result<u64, Error> {
    let now = super::timestamp(&now);
    let mut tx = pool.begin().await?;
    let mut written = 0;
    for w in writes {
        let result = match w {
            Write::Upsert(r) => {
                sqlx::query(UPSERT_EVENT_TYPE)
                    .bind(&r.name)
                    .bind(owner)
                    .bind(&r.subject)
                    .bind(&r.description)
                    .bind(&r.schema)
                    .bind(r.declared)
                    .bind(&r.hash)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?
            }
            Write::Remove(name) => {
                sqlx::query(REMOVE_EVENT_TYPE)
                    .bind(owner)
                    .bind(*name)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?
            }
        };
        written += result.rows_affected();
    }
    tx.commit().await?;
    Ok(written)
}

pub(super) async fn observe_schedules(
    pool: &PgPool,
    namespace: &str,
) -> Result<Vec<AppliedSchedule>, Error> {
    let rows = sqlx::query(
        "SELECT schedule_id, owner, definition, applied_hash FROM activity_schedules WHERE namespace = $1",
    )
    .bind(namespace)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AppliedSchedule {
                id: r.try_get("schedule_id")?,
                owner: r.try_get("owner")?,
                definition: r.try_get("definition")?,
                hash: r.try_get("applied_hash")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Error::from)
}

const UPSERT_SCHEDULE: &str = "
INSERT INTO activity_schedules (namespace, schedule_id, owner, definition, applied_hash, applied_at)
VALUES ($1, $2, $3, $4, $5, $6::timestamptz)
ON CONFLICT (namespace, schedule_id) DO UPDATE SET
    owner = EXCLUDED.owner, definition = EXCLUDED.definition,
    applied_hash = EXCLUDED.applied_hash, applied_at = EXCLUDED.applied_at";

const FORGET_SCHEDULE: &str =
    "DELETE FROM activity_schedules WHERE namespace = $1 AND schedule_id = $2 AND owner = $3";

pub(super) async fn apply_schedules(
    pool: &PgPool,
    owner: &str,
    namespace: &str,
    now: DateTime<Utc>,
    writes: &[ScheduleWrite<'_>],
) -> Result<u64, Error> {
    let now = super::timestamp(&now);
    let mut tx = pool.begin().await?;
    let mut written = 0;
    for w in writes {
        let result = match w {
            ScheduleWrite::Applied {
                id,
                definition,
                hash,
            } => {
                sqlx::query(UPSERT_SCHEDULE)
                    .bind(namespace)
                    .bind(*id)
                    .bind(owner)
                    .bind(*definition)
                    .bind(*hash)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?
            }
            ScheduleWrite::Forget { id } => {
                sqlx::query(FORGET_SCHEDULE)
                    .bind(namespace)
                    .bind(*id)
                    .bind(owner)
                    .execute(&mut *tx)
                    .await?
            }
        };
        written += result.rows_affected();
    }
    tx.commit().await?;
    Ok(written)
}

const INSERT_RUN: &str = "
INSERT INTO activity_sync_runs
    (run_id, owner, trigger, caller, dry_run, ok, source_revision, started_at, locked_at,
     finished_at, duration_ms, errors, report)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::timestamptz, $9::timestamptz, $10::timestamptz, $11, $12, $13::jsonb)";

pub(super) async fn record_run(pool: &PgPool, run: &RunRecord) -> Result<(), Error> {
    sqlx::query(INSERT_RUN)
        .bind(&run.run_id)
        .bind(&run.owner)
        .bind(&run.trigger)
        .bind(&run.caller)
        .bind(run.dry_run)
        .bind(run.ok)
        .bind(&run.source_revision)
        .bind(super::timestamp(&run.started_at))
        .bind(run.locked_at.as_ref().map(super::timestamp))
        .bind(super::timestamp(&run.finished_at))
        .bind(run.duration_ms)
        .bind(run.errors)
        .bind(&run.report)
        .execute(pool)
        .await?;
    Ok(())
}

/// A session-level advisory lock keyed by the owner, held on a dedicated connection
/// for the whole run (which spans several transactions and Temporal calls). If the
/// process dies, PostgreSQL ends the session and frees the lock.
pub(super) struct AdvisoryLock {
    conn: Option<PoolConnection<Postgres>>,
    key: i64,
}

/// How often a waiting replica retries the lock.
const LOCK_POLL: Duration = Duration::from_millis(100);

impl AdvisoryLock {
    fn key(owner: &str) -> i64 {
        let digest = Sha256::digest(format!("activity-sync:{owner}").as_bytes());
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(bytes)
    }

    pub(super) async fn acquire(
        pool: &PgPool,
        owner: &str,
        timeout: Duration,
    ) -> Result<Option<AdvisoryLock>, Error> {
        let key = Self::key(owner);
        let mut conn = pool.acquire().await?;
        let deadline = Instant::now() + timeout;
        loop {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut *conn)
                .await?;
            if got {
                return Ok(Some(AdvisoryLock {
                    conn: Some(conn),
                    key,
                }));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
    }

    pub(super) async fn release(mut self) {
        if let Some(mut conn) = self.conn.take() {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(self.key)
                .execute(&mut *conn)
                .await;
            if unlocked.is_err() {
                // Closing the session is the other way to free a session lock.
                let _ = conn.detach().close().await;
            }
        }
    }
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        // Dropped without release (a cancelled run): never hand a connection that may
        // still hold the lock back to the pool.
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}
