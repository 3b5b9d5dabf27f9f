-- A direct or streamed export runs in an API process, which holds a PostgreSQL advisory
-- lock for as long as it lives; the row names that lock, so the reconciler can tell an
-- export whose process died (the lock is free) from one still running.
ALTER TABLE export_jobs ADD COLUMN IF NOT EXISTS holder integer;

CREATE INDEX IF NOT EXISTS export_jobs_in_process ON export_jobs (holder)
    WHERE status IN ('pending', 'processing') AND strategy <> 'background';
