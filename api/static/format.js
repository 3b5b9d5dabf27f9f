// Figures and words as a person reads them, in the browser's own locale.

const numbers = new Intl.NumberFormat();

export function count(n) {
  return n == null ? "–" : numbers.format(n);
}

export function rows(n) {
  return n === 1 ? "1 row" : `${count(n)} rows`;
}

export function bytes(n) {
  if (n == null) return "–";
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)} ${units[unit]}`;
}

export function duration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 60) return `about ${m} min`;
  return `about ${Math.floor(m / 60)} h ${m % 60} min`;
}

export function dateTime(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

// For a table: the year only when it is not this one, so the columns stay narrow.
export function shortDateTime(iso) {
  if (!iso) return "–";
  const when = new Date(iso);
  const options = { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" };
  if (when.getFullYear() !== new Date().getFullYear()) options.year = "numeric";
  return when.toLocaleString(undefined, options);
}

// The server's strategy, as what will happen when the person presses Export.
export const STRATEGY = {
  direct: "downloads now",
  stream: "streams as it downloads",
  background: "runs in the background",
};

// Prefect's state names mean nothing to the person waiting: say what is going on.
const STATES = {
  Scheduled: "waiting for a free worker",
  Pending: "waiting for a free worker",
  Late: "waiting for a free worker",
  AwaitingConcurrencySlot: "waiting for a free worker",
  AwaitingRetry: "waiting to try again",
  Paused: "paused",
  Suspended: "paused",
  Running: "exporting",
  Retrying: "trying again after a problem",
  Crashed: "restarting after an interruption",
  Cancelling: "cancelling",
  Cancelled: "cancelled",
  Completed: "finished",
  Failed: "failed",
};

const STATUSES = {
  pending: "waiting to start",
  processing: "exporting",
  completed: "ready to download",
  failed: "failed",
  cancelled: "cancelled",
  expired: "expired (the file was deleted)",
};

export function statusWords(job) {
  const final = ["completed", "failed", "cancelled", "expired"].includes(job.status);
  if (!final && job.stateName && STATES[job.stateName]) return STATES[job.stateName];
  // A direct or streamed export went to the browser as it was made: no file is kept.
  if (job.status === "completed" && job.strategy && job.strategy !== "background") return "downloaded";
  return STATUSES[job.status] || job.status;
}

export function isActive(job) {
  return job.status === "pending" || job.status === "processing";
}

// The status endpoint reads the flow run's state only while the job's own record is still
// open, so a final status with a state name is the run's word ahead of the record's (a
// cancel under way): the record's ending, its error included, is yet to come.
export function isSettled(job) {
  return !isActive(job) && job.stateName == null;
}
