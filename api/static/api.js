// Every call to the API: the bearer token from this tab's session, errors in one shape.

const TOKEN_KEY = "exportflow.token";
let onSignedOut = () => {};

export class ApiError extends Error {
  constructor(status, code, message, details, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || null;
    this.retryAfter = retryAfter;
  }
}

// sessionStorage: the token dies with the tab and never appears in a URL or history.
export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export function whenSignedOut(callback) {
  onSignedOut = callback;
}

async function errorOf(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    // A proxy's HTML page or an empty body: the status is all there is.
  }
  const err = body && body.error ? body.error : {};
  const retry = resp.headers.get("Retry-After");
  return new ApiError(
    resp.status,
    err.code || `http_${resp.status}`,
    err.message || `the server answered ${resp.status} ${resp.statusText}`.trim(),
    err.details,
    retry == null ? null : Number(retry),
  );
}

// The raw response when it is a success; an ApiError otherwise (a 401 also signs out).
export async function call(path, { method = "GET", body, headers = {}, signal } = {}) {
  const all = { ...headers };
  const current = token.get();
  if (current) all.Authorization = `Bearer ${current}`;
  if (body !== undefined) all["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers: all,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, "api_unavailable", "the server could not be reached; try again");
  }
  if (resp.ok) return resp;
  const err = await errorOf(resp);
  if (resp.status === 401) {
    token.clear();
    onSignedOut(err);
  }
  throw err;
}

export async function json(path, options) {
  return (await call(path, options)).json();
}
