// Table rows of the page's lists (My exports, My schedules): cells and action buttons.

export function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

// A button that runs `onclick` once at a time; a failure other than a lapsed sign-in
// (the page handles that itself) shows its message and code in `errorBox`.
export function actionButton(text, label, errorBox, onclick) {
  const b = Object.assign(document.createElement("button"), { type: "button", textContent: text });
  b.className = "secondary";
  b.setAttribute("aria-label", label);
  b.addEventListener("click", async () => {
    b.disabled = true;
    try {
      await onclick();
    } catch (err) {
      if (err.status !== 401) errorBox().textContent = `${err.message} [${err.code}]`;
    } finally {
      b.disabled = false;
    }
  });
  return b;
}
