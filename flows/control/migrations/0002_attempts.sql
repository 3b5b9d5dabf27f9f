-- Fencing: each (re)submitted run of a job gets the next attempt number, and every
-- update a run makes names its attempt, so a superseded run can change nothing.
ALTER TABLE export_jobs ADD COLUMN IF NOT EXISTS attempt integer NOT NULL DEFAULT 0;

-- Active jobs not (yet) handed to Prefect are found by the reconciler.
CREATE INDEX IF NOT EXISTS export_jobs_unsubmitted ON export_jobs (created_at)
    WHERE status IN ('pending', 'processing') AND flow_run_id IS NULL;
