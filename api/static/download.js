// Saving what the server sends under the server's own file name.

import { json } from "./api.js";

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

// A finished background export: the API hands out a fresh signed link, which needs no
// token. The browser's own download fetches it, resumable and without filling memory, and
// from any origin (S3 included): navigating to a link needs no CORS, a fetch would.
export async function saveJob(jobId) {
  const link = await json(`/api/exports/${jobId}/link`);
  save(link.url, link.filename);
  return link.filename;
}
