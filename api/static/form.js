// The export dialog: built from a module's description, read back as the API's options.

const $ = (id) => document.getElementById(id);

// Where each part of the request is shown, so an error lands next to its control.
const FIELDS = ["module", "columns", "ids", "dates", "filters", "format", "relations", "csv", "timezone"];
const PATHS = {
  selectedColumns: "columns",
  selectedIds: "ids",
  scope: "ids",
  dateRange: "dates",
  filters: "filters",
  format: "format",
  csv: "csv",
  timezone: "timezone",
  relations: "relations",
};
const CODES = {
  empty_columns: "columns",
  column_not_allowed: "columns",
  too_many_ids: "ids",
  filter_not_allowed: "filters",
  unknown_operator: "filters",
  invalid_date: "dates",
  invalid_date_range: "dates",
  invalid_timezone: "timezone",
  unsupported_format: "format",
  invalid_option: "csv",
  unknown_relation: "relations",
};
const OPERATOR_WORDS = {
  eq: "is",
  in: "is one of (comma-separated)",
  gte: "is at least",
  lte: "is at most",
  contains: "contains",
  neq: "is not",
  not_in: "is none of (comma-separated)",
  gt: "is more than",
  lt: "is less than",
  between: "is between (low,high, both included)",
  starts_with: "starts with",
  is_null: "is empty",
  not_null: "is not empty",
};
// Operators that take no value, and those that take a comma-separated list.
const NO_VALUE = ["is_null", "not_null"];
const LISTS = ["in", "not_in", "between"];

let filterCount = 0;

export function fillModules(modules) {
  const select = $("module");
  select.replaceChildren(
    ...modules.map((m) => new Option(m.label === m.name ? m.name : `${m.label} (${m.name})`, m.name)),
  );
}

export function showModule(module, operators) {
  const box = $("columns");
  box.replaceChildren(
    ...module.columns.map((col) => {
      const id = `col-${col.name}`;
      const wrap = document.createElement("div");
      wrap.className = "check";
      const input = Object.assign(document.createElement("input"), {
        type: "checkbox",
        id,
        value: col.name,
        checked: true,
      });
      const label = Object.assign(document.createElement("label"), { htmlFor: id });
      label.textContent = col.label && col.label !== col.name ? `${col.label} (${col.name})` : col.name;
      wrap.append(input, label);
      return wrap;
    }),
  );
  const relations = module.relations || [];
  $("relations-field").hidden = relations.length === 0;
  $("relations").replaceChildren(
    ...relations.map((rel) => {
      const wrap = document.createElement("div");
      wrap.className = "check";
      const input = Object.assign(document.createElement("input"), {
        type: "checkbox",
        id: `rel-${rel.name}`,
        value: rel.name,
      });
      const label = Object.assign(document.createElement("label"), { htmlFor: input.id });
      label.textContent = rel.label;
      label.title = rel.columns.join(", ");
      wrap.append(input, label);
      return wrap;
    }),
  );
  const dated = Boolean(module.dateColumn);
  $("dates-field").hidden = !dated;
  if (!dated) {
    $("date-from").value = "";
    $("date-to").value = "";
  }
  const column = module.columns.find((c) => c.name === module.dateColumn);
  $("date-column").textContent = dated ? `(${column ? column.label || column.name : module.dateColumn})` : "";
  $("filters").replaceChildren();
  $("add-filter").onclick = () => addFilter(module, operators);
  clearErrors();
}

function addFilter(module, operators) {
  filterCount += 1;
  const n = filterCount;
  const row = document.createElement("div");
  row.className = "filter";
  // Each control in its own labelled cell, so the row wraps cleanly on a phone.
  const make = (tag, id, text) => {
    const cell = document.createElement("div");
    cell.className = "field";
    const label = Object.assign(document.createElement("label"), { htmlFor: id, textContent: text });
    const control = Object.assign(document.createElement(tag), { id });
    cell.append(label, control);
    return [cell, control];
  };
  const [colCell, col] = make("select", `filter-${n}-column`, "Column");
  for (const c of module.columns.filter((c) => c.filterable)) col.add(new Option(c.label || c.name, c.name));
  const [opCell, op] = make("select", `filter-${n}-op`, "Condition");
  for (const o of operators) op.add(new Option(OPERATOR_WORDS[o] || o, o));
  const [valueCell, value] = make("input", `filter-${n}-value`, "Value");
  const remove = Object.assign(document.createElement("button"), {
    type: "button",
    className: "secondary",
    textContent: "Remove",
  });
  remove.setAttribute("aria-label", `Remove filter ${n}`);
  remove.onclick = () => {
    row.remove();
    $("add-filter").focus();
    document.getElementById("export-form").dispatchEvent(new Event("change"));
  };
  row.append(colCell, opCell, valueCell, remove);
  $("filters").append(row);
  col.focus();
}

export function setAllColumns(checked) {
  for (const box of $("columns").querySelectorAll("input[type=checkbox]")) box.checked = checked;
}

// Pasted ids: one per line or comma-separated; numbers stay numbers for integer keys.
export function parseIds(text) {
  return text
    .split(/[\s,;]+/)
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => (/^-?\d+$/.test(s) && Number.isSafeInteger(Number(s)) ? Number(s) : s));
}

// The options as the API reads them, and the problems found before anything is sent.
export function readOptions(limits) {
  const problems = {};
  const scope = document.querySelector("input[name=scope]:checked").value;
  const format = document.querySelector("input[name=format]:checked").value;
  const columns = [...$("columns").querySelectorAll("input:checked")].map((b) => b.value);
  if (columns.length === 0) problems.columns = "Choose at least one column.";
  const body = { scope, format, selectedColumns: columns, timezone: $("timezone").value.trim() || "UTC" };
  if (scope === "selected") {
    const ids = parseIds($("ids").value);
    const repeated = ids.find((id, i) => ids.indexOf(id) !== i);
    if (ids.length === 0) problems.ids = "Paste at least one id, or choose all rows.";
    else if (limits && ids.length > limits.maxIds) problems.ids = `At most ${limits.maxIds} ids; you pasted ${ids.length}.`;
    else if (repeated !== undefined) problems.ids = `The id ${repeated} is listed twice.`;
    body.selectedIds = ids;
  }
  const from = $("date-from").value;
  const to = $("date-to").value;
  if (!$("dates-field").hidden && (from || to)) {
    // Dates are whole days, both included: the same day twice is one day.
    if (from && to && from > to) problems.dates = "“From” must not be after “To”.";
    body.dateRange = { ...(from && { from }), ...(to && { to }) };
  }
  const filters = [];
  for (const row of $("filters").querySelectorAll(".filter")) {
    const [column, op, value] = row.querySelectorAll("select, input");
    if (NO_VALUE.includes(op.value)) {
      filters.push({ column: column.value, op: op.value });
      continue;
    }
    if (value.value.trim() === "") {
      problems.filters = "Give every filter a value, or remove it.";
      continue;
    }
    const text = value.value.trim();
    // The server takes a list for "is one of"; values are strings, typed by the column.
    const parts = text.split(",").map((v) => v.trim()).filter(Boolean);
    filters.push({ column: column.value, op: op.value, value: LISTS.includes(op.value) ? parts : text });
  }
  body.filters = filters;
  const relations = [...$("relations").querySelectorAll("input:checked")].map((b) => b.value);
  if (relations.length) body.relations = relations;
  if (format === "csv") {
    body.csv = { delimiter: $("delimiter").value, bom: $("bom").checked, gzip: $("gzip").checked };
  }
  if ($("background").checked) body.mode = "background";
  return { body, problems };
}

export function clearErrors() {
  for (const name of [...FIELDS, "form"]) showError(name, "");
}

export function showError(name, message) {
  const box = $(`${name}-error`);
  if (!box) return;
  box.textContent = message;
  box.hidden = !message;
  const field = $(name === "csv" ? "csv-options" : `${name}-field`);
  if (!field) return;
  field.classList.toggle("invalid", Boolean(message));
  // Text fields and selects carry the state; a group's checkboxes are marked by the group.
  for (const c of field.querySelectorAll("select, textarea, input:not([type=radio], [type=checkbox])")) {
    if (message) c.setAttribute("aria-invalid", "true");
    else c.removeAttribute("aria-invalid");
  }
}

export function showProblems(problems) {
  clearErrors();
  for (const [name, message] of Object.entries(problems)) showError(name, message);
}

// A refusal from the server, next to the control it is about (the form's foot otherwise).
export function showServerError(err) {
  clearErrors();
  const fields = err.details && Array.isArray(err.details.fields) ? err.details.fields : [];
  let placed = false;
  for (const f of fields) {
    const part = String(f.field).split(".")[1];
    if (PATHS[part]) {
      showError(PATHS[part], `${f.message} (${f.field})`);
      placed = true;
    }
  }
  if (placed) return;
  let where = CODES[err.code];
  if (err.code === "invalid_filter_value" && /\bids?\b|selectedIds/i.test(err.message)) where = "ids";
  else if (err.code === "invalid_filter_value") where = "filters";
  showError(where || "form", `${err.message} [${err.code}]`);
}
