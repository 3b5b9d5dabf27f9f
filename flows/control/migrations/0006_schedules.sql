-- Scheduled exports: a saved request and when to run it. This table is the source of
-- truth; each row is mirrored as a schedule (slug `export-schedule-<id>`) on Prefect's
-- `scheduled-export` deployment, which is rebuilt from here when it is missing.
CREATE TABLE IF NOT EXISTS export_schedules (
    id          uuid PRIMARY KEY,
    user_id     text        NOT NULL,
    name        text        NOT NULL,
    module      text        NOT NULL,
    cron        text        NOT NULL,
    timezone    text        NOT NULL,
    options     jsonb       NOT NULL,
    notify      jsonb,
    active      boolean     NOT NULL DEFAULT true,
    error_code  text,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS export_schedules_user ON export_schedules (user_id, created_at);

-- The job a scheduled run created names its schedule; deleting the schedule keeps its jobs.
ALTER TABLE export_jobs ADD COLUMN IF NOT EXISTS schedule_id uuid
    REFERENCES export_schedules (id) ON DELETE SET NULL;

-- Each user's permissions as their last valid token carried them: a scheduled run happens
-- without a token, and runs with what its owner held when last seen.
CREATE TABLE IF NOT EXISTS user_permissions (
    user_id     text        PRIMARY KEY,
    permissions text[]      NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now()
);
