// The export page: sign in, choose what to export, see what will happen, export.

import { call, json, token, whenSignedOut } from "./api.js";
import { saveResponse } from "./download.js";
import * as form from "./form.js";
import { rows, STRATEGY } from "./format.js";
import * as history from "./history.js";
import * as job from "./job.js";
import * as schedules from "./schedules.js";

const $ = (id) => document.getElementById(id);
const PREVIEW_DELAY_MS = 400;

let catalogue = null;
let previewTimer = null;
let previewAbort = null;
let busy = false;

function announce(text) {
  $("status").textContent = text;
}

function moduleNamed(name) {
  return catalogue.modules.find((m) => m.name === name);
}

// --- Signing in -------------------------------------------------------------------------

// The development token endpoint exists only on a development server; the API's own
// document says whether this one has it, without minting anything.
async function devTokenOffered() {
  try {
    const resp = await fetch("/openapi.json");
    return resp.ok && Boolean((await resp.json()).paths["/api/dev/token"]);
  } catch {
    return false;
  }
}

async function showSignIn(message) {
  for (const id of ["exporter", "job", "history", "schedules", "sign-out"]) $(id).hidden = true;
  $("signin").hidden = false;
  $("token-error").textContent = message || "";
  $("token-error").hidden = !message;
  if (message) announce(message);
  $("dev-signin").hidden = !(await devTokenOffered());
}

async function signInWith(value) {
  token.set(value);
  $("token").value = "";
  await start();
}

async function useDevToken() {
  $("dev-token").disabled = true;
  try {
    const data = await json("/api/dev/token", { method: "POST", body: {} });
    await signInWith(data.token);
  } catch (err) {
    $("token-error").textContent = `${err.message} [${err.code}]`;
    $("token-error").hidden = false;
  } finally {
    $("dev-token").disabled = false;
  }
}

// --- The dialog -------------------------------------------------------------------------

async function start() {
  try {
    catalogue = await json("/api/modules");
  } catch (err) {
    if (err.status !== 401) await showSignIn(`${err.message} [${err.code}]`);
    return;
  }
  $("signin").hidden = true;
  $("exporter").hidden = false;
  $("history").hidden = false;
  schedules.show(false);
  $("sign-out").hidden = false;
  if (catalogue.modules.length === 0) {
    form.showError("module", "Your access permits no module to export.");
    $("export-button").disabled = true;
    return;
  }
  form.fillModules(catalogue.modules);
  changeModule();
  announce("Signed in.");
  $("module").focus();
  schedules.refresh();
  const items = await history.refresh();
  // An export still running when the page was reloaded is picked up again.
  const active = items.find((j) => j.status === "pending" || j.status === "processing");
  const again = job.remembered() || (active && active.id);
  if (again) job.follow(again);
}

function changeModule() {
  form.showModule(moduleNamed($("module").value), catalogue.operators);
  schedulePreview();
}

function syncControls() {
  const csv = document.querySelector("input[name=format]:checked").value === "csv";
  $("csv-options").hidden = !csv;
  $("ids").disabled = document.querySelector("input[name=scope]:checked").value !== "selected";
}

function schedulePreview() {
  syncControls();
  clearTimeout(previewTimer);
  previewTimer = setTimeout(preview, PREVIEW_DELAY_MS);
}

async function preview() {
  const { body, problems } = form.readOptions(catalogue.limits);
  form.showProblems(problems);
  if (previewAbort) previewAbort.abort();
  if (Object.keys(problems).length) {
    $("preview").textContent = "Correct the marked fields to see what will be exported.";
    return;
  }
  previewAbort = new AbortController();
  $("preview").textContent = "Counting rows…";
  try {
    const resp = await call(`/api/${$("module").value}/export/preview`, {
      method: "POST",
      body,
      signal: previewAbort.signal,
    });
    const p = await resp.json();
    $("preview").textContent = `${rows(p.totalRows)} — ${STRATEGY[p.strategy] || p.strategy} (${p.filename})`;
  } catch (err) {
    if (err.name === "AbortError" || err.status === 401) return;
    $("preview").textContent = "Nothing can be exported as it stands.";
    form.showServerError(err);
  }
}

function idempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // Plain http on another host is no secure context: build a v4 UUID by hand.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function focusFirstError() {
  const box = document.querySelector(".error:not([hidden]):not(:empty)");
  const field = box && box.closest(".field, fieldset");
  const control = field && field.querySelector("input:not([disabled]), select, textarea");
  if (control) control.focus();
}

async function submit(event) {
  event.preventDefault();
  if (busy) return;
  const { body, problems } = form.readOptions(catalogue.limits);
  form.showProblems(problems);
  if (Object.keys(problems).length) {
    announce("The export was not started: correct the marked fields.");
    focusFirstError();
    return;
  }
  const module = $("module").value;
  // Only a background job is worth a key: a double click then finds the same job again.
  const headers = body.mode === "background" ? { "Idempotency-Key": idempotencyKey() } : {};
  busy = true;
  const button = $("export-button");
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  announce("Exporting…");
  try {
    const resp = await call(`/api/${module}/export`, { method: "POST", body, headers });
    if (resp.status === 202) {
      const accepted = await resp.json();
      announce(`The export runs in the background: ${rows(accepted.totalRows)}.`);
      job.follow(accepted.jobId);
    } else {
      const name = await saveResponse(resp, `${module}-export.${body.format}`);
      announce(`Downloaded ${name}.`);
    }
    history.refresh();
  } catch (err) {
    if (err.status === 401) return;
    if (err.status === 429) {
      const when = new Date(Date.now() + (err.retryAfter || 0) * 1000).toLocaleTimeString();
      form.showError("form", `${err.message} [${err.code}] — try again after ${when}.`);
    } else {
      form.showServerError(err);
    }
    announce("The export was not started.");
    focusFirstError();
  } finally {
    busy = false;
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

// The dialog's export, saved to run on a timetable instead of now.
async function saveSchedule() {
  const { body, problems } = form.readOptions(catalogue.limits);
  form.showProblems(problems);
  if (Object.keys(problems).length) {
    announce("The schedule was not saved: correct the marked fields.");
    focusFirstError();
    return;
  }
  const button = $("schedule-button");
  button.disabled = true;
  try {
    await schedules.save($("module").value, body);
  } finally {
    button.disabled = false;
  }
}

// --- Wiring -----------------------------------------------------------------------------

function init() {
  whenSignedOut((err) => showSignIn(`Please sign in again: ${err.message}`));
  $("dev-token").addEventListener("click", useDevToken);
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("token").value.trim().replace(/^Bearer\s+/i, "");
    if (value) signInWith(value);
    else {
      $("token-error").textContent = "Paste a token first.";
      $("token-error").hidden = false;
      $("token").focus();
    }
  });
  $("sign-out").addEventListener("click", () => {
    token.clear();
    showSignIn("You are signed out.");
  });
  $("module").addEventListener("change", changeModule);
  // The schedule's own fields change nothing the preview counts.
  const counted = (e) => !e.target.closest("#schedule-field");
  $("export-form").addEventListener("input", (e) => counted(e) && schedulePreview());
  $("export-form").addEventListener(
    "change",
    (e) => e.target.id !== "module" && counted(e) && schedulePreview(),
  );
  $("export-form").addEventListener("submit", submit);
  $("cols-all").addEventListener("click", () => (form.setAllColumns(true), schedulePreview()));
  $("cols-none").addEventListener("click", () => (form.setAllColumns(false), schedulePreview()));
  // A browser that cannot tell its zone says "Etc/Unknown", which no server knows.
  const own = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const zone = own && own !== "Etc/Unknown" ? own : "UTC";
  $("timezone").value = zone;
  $("schedule-zone").value = zone;
  $("schedule-button").addEventListener("click", saveSchedule);
  // Enter in a schedule field saves the schedule; it must not start an export now.
  $("schedule-field").addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || e.target.tagName !== "INPUT") return;
    e.preventDefault();
    saveSchedule();
  });
  schedules.setup({ announce });
  const zones = Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : [zone];
  $("zones").replaceChildren(...zones.map((z) => new Option(z, z)));
  job.setup({ announce, changed: () => history.refresh() });
  history.setup({ announce, follow: (id) => job.follow(id) });
  if (token.get()) start();
  else showSignIn();
}

init();
