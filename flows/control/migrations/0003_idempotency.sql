-- A client's Idempotency-Key: a repeated POST with the same key returns the same job.
ALTER TABLE export_jobs ADD COLUMN IF NOT EXISTS idempotency_key text;

CREATE UNIQUE INDEX IF NOT EXISTS export_jobs_idempotency ON export_jobs (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
