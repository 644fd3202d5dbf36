//! SQLite: the embedded local default. One file, WAL journal, a busy timeout, and
//! `BEGIN IMMEDIATE` for writes so concurrent writers queue instead of failing.

use super::{AppliedSchedule, Error, RunRecord, ScheduleWrite, Write};
use crate::plan::Observed;
use crate::plan::records::{DefinitionRecord, EventTypeRecord};
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "initial",
    include_str!("../../migrations/sqlite/0001_initial.sql"),
)];

pub(super) fn open(url: &str) -> Result<SqlitePool, Error> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| Error::Url(e.to_string()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    // An in-memory database exists per connection: keep exactly one.
    let max = if url.contains(":memory:") || url.contains("mode=memory") {
        1
    } else {
        4
    };
    Ok(SqlitePoolOptions::new()
        .max_connections(max)
        .acquire_timeout(super::ACQUIRE_TIMEOUT)
        .connect_lazy_with(options))
}

pub(super) async fn migrate(pool: &SqlitePool) -> Result<(), Error> {
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

pub(super) async fn observe(pool: &SqlitePool, table: &str) -> Result<Vec<Observed>, Error> {
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
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
     $11, $12, $13, $14, $15, $16, $17, $17, NULL)
ON CONFLICT (name) DO UPDATE SET
    enabled = EXCLUDED.enabled, activity = EXCLUDED.activity, task_queue = EXCLUDED.task_queue,
    trigger_type = EXCLUDED.trigger_type, cron = EXCLUDED.cron, timezone = EXCLUDED.timezone,
    event = EXCLUDED.event, fire_at = EXCLUDED.fire_at, input = EXCLUDED.input,
    execution = EXCLUDED.execution, description = EXCLUDED.description, labels = EXCLUDED.labels,
    spec = EXCLUDED.spec, content_hash = EXCLUDED.content_hash, updated_at = EXCLUDED.updated_at,
    removed_at = NULL
WHERE activity_definitions.owner = EXCLUDED.owner";

const REMOVE_DEFINITION: &str = "
UPDATE activity_definitions SET enabled = 0, removed_at = $3, updated_at = $3
WHERE owner = $1 AND name = $2 AND removed_at IS NULL";

pub(super) async fn apply_definitions(
    pool: &SqlitePool,
    owner: &str,
    now: DateTime<Utc>,
    writes: &[Write<'_, DefinitionRecord>],
) -> Result<u64, Error> {
    let now = super::timestamp(&now);
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
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
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, NULL)
ON CONFLICT (name) DO UPDATE SET
    subject = EXCLUDED.subject, description = EXCLUDED.description, schema = EXCLUDED.schema,
    declared = EXCLUDED.declared, content_hash = EXCLUDED.content_hash,
    updated_at = EXCLUDED.updated_at, removed_at = NULL
WHERE activity_event_types.owner = EXCLUDED.owner";

const REMOVE_EVENT_TYPE: &str = "
UPDATE activity_event_types SET removed_at = $3, updated_at = $3
WHERE owner = $1 AND name = $2 AND removed_at IS NULL";

pub(super) async fn apply_event_types(
    pool: &SqlitePool,
    owner: &str,
    now: DateTime<Utc>,
    writes: &[Write<'_, EventTypeRecord>],
) -> Result<u64, Error> {
    let now = super::timestamp(&now);
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
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
    pool: &SqlitePool,
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
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (namespace, schedule_id) DO UPDATE SET
    owner = EXCLUDED.owner, definition = EXCLUDED.definition,
    applied_hash = EXCLUDED.applied_hash, applied_at = EXCLUDED.applied_at";

const FORGET_SCHEDULE: &str =
    "DELETE FROM activity_schedules WHERE namespace = $1 AND schedule_id = $2 AND owner = $3";

pub(super) async fn apply_schedules(
    pool: &SqlitePool,
    owner: &str,
    namespace: &str,
    now: DateTime<Utc>,
    writes: &[ScheduleWrite<'_>],
) -> Result<u64, Error> {
    let now = super::timestamp(&now);
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
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
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

pub(super) async fn record_run(pool: &SqlitePool, run: &RunRecord) -> Result<(), Error> {
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
