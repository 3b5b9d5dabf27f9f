// Saving what the server sends under the server's own file name.

import { call } from "./api.js";

// `attachment; filename="tags-export-20240101T000000Z.csv"` (or RFC 5987's filename*).
export function filenameOf(disposition, fallback) {
  if (!disposition) return fallback;
  const star = /filename\*\s*=\s*(?:UTF-8'')?([^;]+)/i.exec(disposition);
  if (star) {
    try {
      return decodeURIComponent(star[1].trim().replace(/^"|"$/g, ""));
    } catch {
      // A malformed encoding: the plain parameter below still names the file.
    }
  }
  const plain = /filename\s*=\s*"?([^";]+)"?/i.exec(disposition);
  return plain ? plain[1].trim() : fallback;
}

export function save(href, filename) {
  const a = document.createElement("a");
  a.href = href;
  if (filename) a.download = filename;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
}

// A direct or streamed export arrives as the response body: keep it and save it.
export async function saveResponse(resp, fallback) {
  const name = filenameOf(resp.headers.get("Content-Disposition"), fallback);
  const url = URL.createObjectURL(await resp.blob());
  save(url, name);
  // The click has handed the blob to the download; the URL is no longer needed.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return name;
}

// A finished background export: the API answers with a redirect to a signed link, which
// needs no token. Only the link is wanted, so the body is not read: the browser's own
// download then fetches the file from that link, resumable and without filling memory.
export async function saveJob(jobId) {
  const controller = new AbortController();
  const resp = await call(`/api/exports/${jobId}/download`, { signal: controller.signal });
  const link = resp.url;
  const name = filenameOf(resp.headers.get("Content-Disposition"), undefined);
  controller.abort();
  save(link, name);
  return name;
}
