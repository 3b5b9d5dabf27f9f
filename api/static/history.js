// My exports: the caller's exports, newest first, refreshed while any of them runs.

import { call, json } from "./api.js";
import { saveJob } from "./download.js";
import * as fmt from "./format.js";
import { actionButton, cell } from "./table.js";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 3000;

let timer = null;
let handlers = { announce: () => {}, follow: () => {} };

export function setup(options) {
  handlers = options;
  $("refresh").addEventListener("click", () => refresh());
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer === "waiting") refresh();
  });
}

export async function refresh() {
  if (timer && timer !== "waiting") clearTimeout(timer);
  timer = null;
  let items;
  try {
    items = (await json("/api/exports?limit=20")).items;
  } catch (err) {
    if (err.status !== 401) $("history-error").textContent = `${err.message} [${err.code}]`;
    return [];
  }
  $("history-error").textContent = "";
  render(items);
  if (items.some(fmt.isActive)) timer = setTimeout(tick, REFRESH_MS);
  return items;
}

// A tab hidden since the last refresh asks nothing; being shown again refreshes it.
function tick() {
  if (document.hidden) timer = "waiting";
  else refresh();
}

const button = (text, label, onclick) =>
  actionButton(text, label, () => $("history-error"), onclick);

function render(items) {
  $("history-empty").hidden = items.length > 0;
  $("history-table").hidden = items.length === 0;
  $("history-rows").replaceChildren(...items.map(row));
}

function row(job) {
  const tr = document.createElement("tr");
  const what = `${job.module} export of ${fmt.dateTime(job.createdAt)}`;
  const status = cell(fmt.statusWords(job));
  status.className = "state";
  if (job.error) status.title = `${job.error.message} [${job.error.code}]`;
  tr.append(
    cell(fmt.shortDateTime(job.createdAt)),
    cell(job.module),
    cell(job.format.toUpperCase()),
    status,
    cell(job.totalRows == null ? fmt.count(job.processedRows) : fmt.count(job.totalRows)),
    cell(fmt.bytes(job.fileBytes)),
    cell(job.status === "completed" && job.expiresAt ? fmt.shortDateTime(job.expiresAt) : "–"),
  );
  const actions = document.createElement("td");
  actions.className = "actions";
  if (job.status === "completed" && job.strategy === "background") {
    actions.append(
      button("Download", `Download the ${what}`, async () => {
        const name = await saveJob(job.id);
        handlers.announce(`Downloading ${name || "the file"}.`);
      }),
      button("Delete", `Delete the file of the ${what}`, async () => {
        await call(`/api/exports/${job.id}`, { method: "DELETE" });
        handlers.announce("The file was deleted.");
        await refresh();
      }),
    );
  } else if (fmt.isActive(job)) {
    actions.append(
      button("Show progress", `Show the progress of the ${what}`, async () => handlers.follow(job.id)),
      button("Cancel", `Cancel the ${what}`, async () => {
        await call(`/api/exports/${job.id}`, { method: "DELETE" });
        handlers.announce("Cancelling the export…");
        await refresh();
      }),
    );
  }
  tr.append(actions);
  return tr;
}
