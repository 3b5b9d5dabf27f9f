-- Every delivery attempt of a finished export's notifications (email, webhook), in order:
-- {channel, event, attempt, at, outcome (delivered|retrying|failed), statusCode, error}.
-- Appended in one UPDATE per attempt, so concurrent channels never overwrite each other.
ALTER TABLE export_jobs ADD COLUMN IF NOT EXISTS notifications jsonb NOT NULL DEFAULT '[]';
