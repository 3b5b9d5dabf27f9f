-- The job record: every export, whatever its strategy, leaves one row.
CREATE TABLE IF NOT EXISTS export_jobs (
    id              uuid PRIMARY KEY,
    user_id         text        NOT NULL,
    module          text        NOT NULL,
    format          text        NOT NULL CHECK (format IN ('csv', 'xlsx')),
    strategy        text        NOT NULL CHECK (strategy IN ('direct', 'stream', 'background')),
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processing', 'completed', 'failed',
                                      'cancelled', 'expired')),
    total_rows      bigint,
    processed_rows  bigint      NOT NULL DEFAULT 0,
    options         jsonb       NOT NULL,
    checkpoint      jsonb,
    flow_run_id     uuid,
    file_key        text,
    file_bytes      bigint,
    sha256          text,
    error_code      text,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    expires_at      timestamptz
);

-- Rate limits count a user's recent exports; the cleanup flow scans by status and expiry.
CREATE INDEX IF NOT EXISTS export_jobs_user_created ON export_jobs (user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS export_jobs_status ON export_jobs (status, expires_at);
