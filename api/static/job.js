// One background export followed to its end: progress, plain-words state, cancel, download.

import { call, json } from "./api.js";
import { saveJob } from "./download.js";
import * as fmt from "./format.js";

const $ = (id) => document.getElementById(id);
const JOB_KEY = "exportflow.job";
const FIRST_DELAY = 1000;
const MAX_DELAY = 5000;

let current = null;
let handlers = { announce: () => {}, changed: () => {} };

export function setup(options) {
  handlers = options;
  $("job-cancel").addEventListener("click", cancel);
  $("job-download").addEventListener("click", download);
  $("job-close").addEventListener("click", close);
  // A hidden tab polls nothing; it catches up the moment it is shown again.
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && current && current.waiting) {
      current.waiting = false;
      poll(current);
    }
  });
}

export function remembered() {
  return sessionStorage.getItem(JOB_KEY);
}

export function follow(jobId) {
  stop();
  current = { id: jobId, delay: FIRST_DELAY, timer: null, waiting: false, status: null };
  sessionStorage.setItem(JOB_KEY, jobId);
  $("job").hidden = false;
  $("job-title").textContent = "Export in progress";
  $("job-error").hidden = true;
  $("job-download").hidden = true;
  $("job-expiry").textContent = "";
  $("job-cancel").hidden = false;
  $("job-cancel").disabled = false;
  render({ status: "pending", progress: null, processedRows: 0, totalRows: null });
  poll(current);
}

function stop() {
  if (current && current.timer) clearTimeout(current.timer);
  current = null;
}

function close() {
  stop();
  sessionStorage.removeItem(JOB_KEY);
  $("job").hidden = true;
  $("export-button").focus();
}

async function poll(me) {
  if (me !== current) return;
  me.timer = null;
  if (document.hidden) {
    me.waiting = true;
    return;
  }
  try {
    const job = await json(`/api/exports/${me.id}`);
    if (me !== current) return;
    me.job = job;
    render(job);
    if (job.status !== me.status) {
      me.status = job.status;
      handlers.announce(`Export status: ${fmt.statusWords(job)}.`);
      handlers.changed();
    }
    if (fmt.isSettled(job)) return;
  } catch (err) {
    if (me !== current || err.status === 401) return;
    if (err.status === 404) {
      showError(err);
      return;
    }
    // A restart or a dropped connection: say so, and keep trying at the slower pace.
    $("job-state").textContent = `Lost contact with the server (${err.message}); trying again…`;
  }
  me.timer = setTimeout(() => poll(me), me.delay);
  me.delay = Math.min(MAX_DELAY, me.delay * 1.5);
}

function render(job) {
  const bar = $("progress");
  const known = job.progress != null;
  const percent = known ? Math.round(job.progress * 100) : 0;
  if (known) bar.setAttribute("aria-valuenow", String(percent));
  else bar.removeAttribute("aria-valuenow");
  const done = `${fmt.count(job.processedRows)} of ${job.totalRows == null ? "?" : fmt.rows(job.totalRows)}`;
  bar.setAttribute("aria-valuetext", known ? `${percent}%, ${done}` : "not started yet");
  bar.querySelector(".bar").style.width = `${percent}%`;
  bar.classList.toggle("indeterminate", !known && fmt.isActive(job));
  $("job-state").textContent = `Status: ${fmt.statusWords(job)}`;
  const parts = [done];
  if (job.rowsPerSecond) parts.push(`${fmt.count(Math.round(job.rowsPerSecond))} rows/s`);
  if (fmt.isActive(job) && job.etaSeconds != null) parts.push(`${fmt.duration(job.etaSeconds)} left`);
  $("job-figures").textContent = parts.join(" · ");
  const active = fmt.isActive(job);
  $("job-cancel").hidden = !active;
  if (job.status === "completed") {
    $("job-title").textContent = "Export ready";
    $("job-download").hidden = false;
    const size = job.fileBytes == null ? "" : ` (${fmt.bytes(job.fileBytes)})`;
    $("job-expiry").textContent = `The file${size} is kept until ${fmt.dateTime(job.expiresAt)}.`;
  } else if (!active) {
    $("job-title").textContent = job.status === "cancelled" ? "Export cancelled" : "Export ended";
  }
  if (job.error) showError(job.error);
}

function showError(err) {
  const box = $("job-error");
  box.textContent = `${err.message} [${err.code}]`;
  box.hidden = false;
}

async function cancel() {
  if (!current) return;
  const me = current;
  $("job-cancel").disabled = true;
  try {
    await call(`/api/exports/${me.id}`, { method: "DELETE" });
    handlers.announce("Cancelling the export…");
    if (me.timer) clearTimeout(me.timer);
    me.delay = FIRST_DELAY;
    poll(me);
  } catch (err) {
    if (err.status !== 401) showError(err);
    $("job-cancel").disabled = false;
  }
}

async function download() {
  if (!current) return;
  const button = $("job-download");
  button.disabled = true;
  try {
    const name = await saveJob(current.id);
    handlers.announce(`Downloading ${name || "the file"}.`);
  } catch (err) {
    if (err.status !== 401) showError(err);
  } finally {
    button.disabled = false;
  }
}
