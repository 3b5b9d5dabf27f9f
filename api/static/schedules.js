// My schedules: save the dialog's export as a scheduled one, list, pause, resume, delete.

import { call, json } from "./api.js";
import * as fmt from "./format.js";
import { actionButton, cell } from "./table.js";

const $ = (id) => document.getElementById(id);
let announce = () => {};

export function setup(options) {
  announce = options.announce;
}

export function show(hidden) {
  $("schedules").hidden = hidden;
}

function showError(message) {
  const box = $("schedule-error");
  box.textContent = message;
  box.hidden = !message;
  for (const id of ["schedule-name", "schedule-cron", "schedule-zone"]) {
    if (message) $(id).setAttribute("aria-invalid", "true");
    else $(id).removeAttribute("aria-invalid");
  }
}

// `exportBody` is what the dialog would post to /api/{module}/export.
export async function save(module, exportBody) {
  const name = $("schedule-name").value.trim();
  const cron = $("schedule-cron").value.trim();
  const timezone = $("schedule-zone").value.trim() || "UTC";
  if (!name || !cron) {
    showError(name ? "Give the timetable as a cron, e.g. 0 6 * * 1-5." : "Give the schedule a name.");
    $(name ? "schedule-cron" : "schedule-name").focus();
    return false;
  }
  const { mode, ...options } = exportBody;
  try {
    await call("/api/schedules", { method: "POST", body: { name, module, cron, timezone, export: options } });
  } catch (err) {
    if (err.status === 401) return false;
    showError(`${err.message} [${err.code}]`);
    $(/cron/.test(err.code) ? "schedule-cron" : err.code === "invalid_timezone" ? "schedule-zone" : "schedule-name").focus();
    return false;
  }
  showError("");
  $("schedule-name").value = "";
  announce(`Schedule “${name}” saved.`);
  await refresh();
  return true;
}

export async function refresh() {
  let items;
  try {
    items = (await json("/api/schedules")).items;
  } catch (err) {
    if (err.status !== 401) $("schedules-error").textContent = `${err.message} [${err.code}]`;
    return [];
  }
  $("schedules-error").textContent = "";
  $("schedules-empty").hidden = items.length > 0;
  $("schedules-table").hidden = items.length === 0;
  $("schedules-rows").replaceChildren(...items.flatMap(row));
  return items;
}

const button = (text, label, onclick) =>
  actionButton(text, label, () => $("schedules-error"), onclick);

function row(s) {
  const tr = document.createElement("tr");
  const state = cell(s.active ? "Active" : s.error ? "Stopped" : "Paused");
  state.className = "state";
  if (s.error) state.title = `${s.error.message} [${s.error.code}]`;
  tr.append(
    cell(s.name),
    cell(s.module),
    cell(`${s.cron} (${s.timezone})`),
    cell(fmt.shortDateTime(s.nextRunAt)),
    state,
  );
  const actions = document.createElement("td");
  actions.className = "actions";
  const change = (active) => async () => {
    await call(`/api/schedules/${s.id}`, { method: "PATCH", body: { active } });
    announce(`Schedule “${s.name}” ${active ? "resumed" : "paused"}.`);
    await refresh();
  };
  actions.append(
    s.active
      ? button("Pause", `Pause the schedule ${s.name}`, change(false))
      : button("Resume", `Resume the schedule ${s.name}`, change(true)),
    button("Delete", `Delete the schedule ${s.name}`, async () => {
      if (!window.confirm(`Delete the schedule “${s.name}”? Its files stay.`)) return;
      await call(`/api/schedules/${s.id}`, { method: "DELETE" });
      announce(`Schedule “${s.name}” deleted.`);
      await refresh();
    }),
  );
  tr.append(actions);
  if (s.error) {
    const why = document.createElement("tr");
    const td = cell(`Stopped: ${s.error.message} [${s.error.code}]`);
    td.colSpan = 6;
    td.className = "error";
    why.append(td);
    return [tr, why];
  }
  return tr;
}
