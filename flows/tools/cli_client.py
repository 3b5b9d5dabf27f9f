"""`exportflow submit`, `jobs` and `download`: the command line as a client of the HTTP API."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flows.control.errors import ApiError, ApiUnavailable, InvalidRequest
from flows.tools.api_client import (
    ApiClient,
    check_sha256,
    fetch_to_part,
    part_path,
    stream_into,
)
from flows.tools.cli_commands import FORMATTING, load_settings, request_data
from flows.tools.cli_output import STDOUT, ProgressBar, check_output, output_error

ENDED = ("failed", "cancelled", "expired")
FIRST_DELAY, MAX_DELAY, BACKOFF = 1.0, 5.0, 1.5
# Polling rides out an API restart (unreachable, or a 5xx) for this long before giving up.
OUTAGE_SECONDS = 60.0
PAGE, ALL_PAGE = 20, 100


def api_body(args: argparse.Namespace) -> dict[str, Any]:
    """The POST body (the front end's ExportOptions) for `export`'s options, as a job."""
    data = request_data(args)
    body: dict[str, Any] = {
        "format": data["format"],
        "filters": data["filters"],
        "timezone": data["timezone"],
        "csv": {k: data[k] for k in ("delimiter", "bom", "gzip", "header") if data[k] is not None},
        "mode": "background",
        "sort": data["sort"],
    }
    if data["locale"] is not None:
        body["locale"] = data["locale"]
    formatting = {FORMATTING[k]: data[k] for k in FORMATTING if k != "locale" and data[k]}
    if formatting:
        body["formatting"] = formatting
    if data["columns"] is not None:
        body["selectedColumns"] = data["columns"]
    if data["relations"]:
        body["relations"] = data["relations"]
    if data["ids"] is not None:
        body |= {"scope": "selected", "selectedIds": data["ids"]}
    if data["from"] is not None or data["to"] is not None:
        body["dateRange"] = {"from": data["from"], "to": data["to"]}
    if getattr(args, "notify_email", False) or getattr(args, "notify_webhook", None):
        body["notify"] = {"email": args.notify_email, "webhook": args.notify_webhook}
    return body


def client_for(args: argparse.Namespace) -> ApiClient:
    """A client for --api / EXPORTFLOW_API_URL with --token / EXPORTFLOW_TOKEN."""
    settings = load_settings()
    token = args.token or (settings.token.get_secret_value() if settings.token else None)
    return ApiClient(args.api or settings.api_url, token)


def cmd_submit(args: argparse.Namespace) -> int:
    """Start a background export; print its id; with --wait, show progress and download."""
    if args.output is not None and not args.wait:
        raise InvalidRequest(
            "-o takes the file when the export is done: add --wait, or fetch it later"
            " with `exportflow download JOB -o PATH`"
        )
    body = api_body(args)
    to_stdout = args.output in (STDOUT, "/dev/stdout")
    if args.output is not None:
        # Refused before anything is started, like `export`.
        suffix = ".gz" if body["csv"]["gzip"] else ""
        ext = "zip" if body["format"] == "csv" and body.get("relations") else body["format"]
        check_output(args.output, f"{args.module}.{ext}{suffix}", binary(body))
    with client_for(args) as client:
        accepted = client.submit(args.module, body, args.idempotency_key)
        job_id = accepted["jobId"]
        # From here the export exists: a Ctrl-C, even before the wait, leaves it running.
        try:
            # The file may be what goes to stdout; the id then goes beside the progress bar.
            print(
                json.dumps(accepted) if args.json else job_id,
                file=sys.stderr if to_stdout else sys.stdout,
                flush=True,
            )
            if not args.wait:
                return 0
            status = wait_for(client, job_id)
        except KeyboardInterrupt:
            print(
                f"stopped waiting; export {job_id} keeps running on the server:"
                f" `exportflow jobs` shows it, `exportflow download {job_id} -o PATH` fetches"
                " its file when it is done",
                file=sys.stderr,
            )
            raise
        save(client, status, args.output)
    return 0


def binary(body: dict[str, Any]) -> bool:
    """Whether the file is binary (xlsx, gzip, zip): refused on a terminal."""
    return body["format"] != "csv" or body["csv"]["gzip"] or bool(body.get("relations"))


def wait_for(client: ApiClient, job_id: str) -> dict[str, Any]:
    """Poll the export until it has its file, with a progress bar; its final status."""
    bar = ProgressBar()
    delay, down_since = FIRST_DELAY, None
    try:
        while True:
            try:
                status = client.status(job_id)
                down_since = None
            except (ApiUnavailable, ApiError) as exc:
                if not isinstance(exc, ApiUnavailable) and (exc.status or 0) < 500:
                    raise
                down_since = down_since or time.monotonic()
                if time.monotonic() - down_since > OUTAGE_SECONDS:
                    raise
                status = None
            if status is not None:
                if status["status"] in ENDED:
                    raise ended(status)
                done, total = status["processedRows"], status["totalRows"] or 0
                if status["status"] == "completed":
                    bar(done, total or done, final=True)
                    return status
                bar(done, total)
            time.sleep(delay)
            delay = min(MAX_DELAY, delay * BACKOFF)
    except BaseException:
        bar.end()  # the line under the bar is the caller's message
        raise


def ended(status: dict[str, Any]) -> ApiError:
    """The error an export that ended without a file reports: its own code and message."""
    error = status.get("error") or {}
    state = status["status"]
    code = error.get("code") or ("file_expired" if state == "expired" else state)
    reason = error.get("message") or {
        "expired": "its file was deleted after it expired; start a new export",
        "cancelled": "it was cancelled before it wrote its file",
    }.get(state, "no reason was recorded")
    return ApiError(code, f"export {status['id']} {state}: {reason}")


def save(client: ApiClient, status: dict[str, Any], output: str | None) -> None:
    """Download the export's file to `output` (or the server's name here), checking its
    sha256; the bytes only appear under that name once complete and verified."""
    job_id, expected, size = status["id"], status["sha256"], status["fileBytes"]
    default = f"{status['module']}-export-{job_id}.{status['format']}"
    target = None if output is None else check_output(output, default, True)
    url = client.link(job_id)
    if output is not None and (target is None or (target.exists() and not target.is_file())):
        # Standard output, a device or a pipe: written in place, nothing to rename.
        try:
            if target is None:
                got = stream_into(client, url, sys.stdout.buffer)
            else:
                with open(target, "wb") as f:
                    got = stream_into(client, url, f)
        except OSError as exc:
            raise output_error(exc, target) from None
        check_sha256(job_id, got, expected)
        print(f"wrote {size or 0:,} bytes to {target or 'standard output'}", file=sys.stderr)
        return
    folder = target.parent if target else Path.cwd()
    part = part_path(folder, job_id)
    try:
        name, got = fetch_to_part(client, url, part, size)
    except OSError as exc:
        raise output_error(exc, part) from None
    except (KeyboardInterrupt, ApiUnavailable):
        if part.is_file() and part.stat().st_size:
            print(
                f"kept the {part.stat().st_size:,} bytes received in {part}:"
                f" `exportflow download {job_id}{f' -o {target}' if target else ''}`"
                f" resumes it{'' if target else f' in {folder}'}",
                file=sys.stderr,
            )
        raise
    try:
        check_sha256(job_id, got, expected)
    except Exception:
        part.unlink(missing_ok=True)
        raise
    target = target or folder / (name or default)
    os.replace(part, target)
    print(f"wrote {size or 0:,} bytes to {target}", file=sys.stderr)


def cmd_download(args: argparse.Namespace) -> int:
    """Download a finished export's file."""
    with client_for(args) as client:
        save(client, client.status(args.job), args.output)
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    """List the caller's exports, newest first."""
    limit = args.limit or (ALL_PAGE if args.all else PAGE)
    items: list[dict[str, Any]] = []
    cursor = None
    with client_for(args) as client:
        while True:
            page = client.page(args.status, args.module, limit, cursor)
            items += page["items"]
            cursor = page["nextCursor"]
            if not (args.all and cursor):
                break
    if args.json:
        print(json.dumps({"items": items, "nextCursor": cursor}, indent=2))
        return 0
    print_table(items)
    if cursor:
        print("more exports are older: --all lists every one", file=sys.stderr)
    return 0


def print_table(items: list[dict[str, Any]]) -> None:
    """The exports as aligned columns."""
    if not items:
        print("no exports")
        return
    rows = [("id", "module", "format", "status", "rows", "size", "created (UTC)")]
    rows += [
        (
            i["id"],
            i["module"],
            i["format"],
            i["status"],
            row_count(i),
            human_bytes(i["fileBytes"]),
            datetime.fromisoformat(i["createdAt"]).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        )
        for i in items
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    right = {4, 5}  # figures line up on the right
    for r in rows:
        cells = [
            value.rjust(widths[c]) if c in right else value.ljust(widths[c])
            for c, value in enumerate(r)
        ]
        print("  ".join(cells).rstrip())


def row_count(item: dict[str, Any]) -> str:
    """Rows written, and of how many while the export runs."""
    done, total = item["processedRows"], item["totalRows"]
    if item["status"] in ("pending", "processing") and total is not None:
        return f"{done:,}/{total:,}"
    return f"{done:,}"


def human_bytes(n: int | None) -> str:
    """1023 B, 1.5 KiB, 12.0 MiB; `-` when there is no file size."""
    if n is None:
        return "-"
    size, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
