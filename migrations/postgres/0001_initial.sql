-- activity-sync schema, PostgreSQL. Every row carries `owner`: the sidecar reads and
-- writes only its own owner's rows. Rows are never deleted: a definition that leaves
-- the source gets `enabled = false` and `removed_at`.

CREATE TABLE activity_definitions (
    name          TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    enabled       BOOLEAN NOT NULL,
    activity      TEXT NOT NULL,
    task_queue    TEXT NOT NULL,
    trigger_type  TEXT NOT NULL CHECK (trigger_type IN ('cron', 'event', 'at')),
    cron          TEXT,
    timezone      TEXT,
    event         TEXT,
    fire_at       TIMESTAMPTZ,
    input         JSONB,
    execution     JSONB NOT NULL,
    description   TEXT,
    labels        JSONB NOT NULL,
    spec          JSONB NOT NULL,
    content_hash  TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    removed_at    TIMESTAMPTZ
);
CREATE INDEX activity_definitions_owner ON activity_definitions (owner);
CREATE INDEX activity_definitions_event ON activity_definitions (event) WHERE event IS NOT NULL;

CREATE TABLE activity_event_types (
    name          TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    subject       TEXT NOT NULL,
    description   TEXT,
    schema        JSONB,
    declared      BOOLEAN NOT NULL,
    content_hash  TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    removed_at    TIMESTAMPTZ
);
CREATE INDEX activity_event_types_owner ON activity_event_types (owner);

CREATE TABLE activity_schedules (
    namespace     TEXT NOT NULL,
    schedule_id   TEXT NOT NULL,
    owner         TEXT NOT NULL,
    definition    TEXT NOT NULL,
    applied_hash  TEXT NOT NULL,
    applied_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (namespace, schedule_id)
);
CREATE INDEX activity_schedules_owner ON activity_schedules (owner);

CREATE TABLE activity_sync_runs (
    run_id           TEXT PRIMARY KEY,
    owner            TEXT NOT NULL,
    trigger          TEXT NOT NULL,
    caller           TEXT,
    dry_run          BOOLEAN NOT NULL,
    ok               BOOLEAN NOT NULL,
    source_revision  TEXT,
    started_at       TIMESTAMPTZ NOT NULL,
    locked_at        TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ NOT NULL,
    duration_ms      BIGINT NOT NULL,
    errors           INTEGER NOT NULL,
    report           JSONB NOT NULL
);
CREATE INDEX activity_sync_runs_owner_started ON activity_sync_runs (owner, started_at DESC);
