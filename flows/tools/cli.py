"""The `exportflow` command: export in-process or through the API, the modules, the database,
the stack."""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import signal
import sys

from flows.control.errors import ExportflowError
from flows.control.threads import IDLE_POOLS
from flows.tools import cli_commands as commands


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwound exactly like Ctrl-C: no partial or temporary file is left behind."""


def _terminate(signum, frame) -> None:
    # A second SIGTERM while unwinding would cut the clean-up short; SIGKILL still works.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


def add_request_options(p: argparse.ArgumentParser) -> None:
    """What to export and how: the options `export` and `submit` share."""
    p.add_argument("module")
    p.add_argument("--format", default="csv", help="csv or xlsx")
    p.add_argument("--columns", help="comma-separated allow-listed columns (default: all)")
    p.add_argument("--ids", help="comma-separated keys: export only these rows")
    p.add_argument("--from", dest="date_from", help="YYYY-MM-DD or ISO date-time, inclusive")
    p.add_argument("--to", dest="date_to", help="YYYY-MM-DD (whole day) or ISO date-time")
    p.add_argument(
        "--filter",
        action="append",
        default=[],
        help="COLUMN:OP:VALUE, all must hold (repeatable); OP: eq neq gt gte lt lte contains "
        "starts_with; in, not_in, between take comma-separated values (price:between:10,20); "
        "is_null and not_null take none (description:is_null)",
    )
    p.add_argument(
        "--any",
        action="append",
        default=[],
        metavar="FILTER",
        help="a filter like --filter; all --any filters form one group of which one must hold",
    )
    p.add_argument(
        "--filters-json",
        metavar="JSON",
        help='filters as the API takes them, e.g. \'[{"any": [...]}, {"column": ...}]\'',
    )
    p.add_argument(
        "--sort",
        action="append",
        default=[],
        metavar="COLUMN[:desc]",
        help="order by an indexed column, ascending unless :desc (repeatable; default: the key)",
    )
    p.add_argument("--timezone", default="UTC", help="IANA zone for timestamps (default UTC)")
    p.add_argument("--delimiter", help="one of , ; TAB | (default: the locale's, else ,)")
    p.add_argument("--no-header", action="store_true")
    p.add_argument("--bom", action="store_true", help="UTF-8 byte order mark, for Excel")
    p.add_argument("--gzip", action="store_true")
    p.add_argument("--locale", help="preset: en-US, en-GB, de-DE, fr-FR (or an operator's)")
    p.add_argument("--decimal-separator", help=". or , (CSV numbers)")
    p.add_argument("--date-pattern", help="CSV dates and XLSX date format, e.g. dd.MM.yyyy")
    p.add_argument("--timestamp-pattern", help="e.g. dd.MM.yyyy HH:mm:ss")
    p.add_argument("--true-text", help="CSV text of true")
    p.add_argument("--false-text", help="CSV text of false")
    p.add_argument("--null-text", help="CSV text of NULL (default: empty)")
    p.add_argument(
        "--relations",
        help="comma-separated related sheets to add (xlsx: sheets; csv: a zip of CSV files)",
    )


def add_api_options(p: argparse.ArgumentParser) -> None:
    """Which API the client commands call, and as whom."""
    p.add_argument(
        "--api", help="API base URL (default: EXPORTFLOW_API_URL, else http://127.0.0.1:8000)"
    )
    p.add_argument("--token", help="bearer token (default: EXPORTFLOW_TOKEN; `exportflow token`)")


def _client(name: str):
    """A client command, imported when it runs: the other commands start without httpx."""

    def run(args: argparse.Namespace) -> int:
        from flows.tools import cli_client

        return getattr(cli_client, name)(args)

    return run


def add_client_commands(sub) -> None:
    """`submit`, `jobs` and `download`: background exports through the HTTP API."""
    s = sub.add_parser("submit", help="start a background export through the API")
    add_request_options(s)
    add_api_options(s)
    s.add_argument("--wait", action="store_true", help="show progress, then download the file")
    s.add_argument(
        "-o", "--output", help="with --wait: file to write, - for stdout (default: server's name)"
    )
    s.add_argument("--json", action="store_true", help="print the API's answer, not the job id")
    s.add_argument("--idempotency-key", help="the same key within 24 h returns the same job")
    s.add_argument(
        "--notify-email", action="store_true", help="email your token's address when it ends"
    )
    s.add_argument("--notify-webhook", metavar="URL", help="POST a signed event when it ends")
    s.set_defaults(func=_client("cmd_submit"))

    j = sub.add_parser("jobs", help="list your exports through the API, newest first")
    add_api_options(j)
    statuses = ["pending", "processing", "completed", "failed", "cancelled", "expired"]
    j.add_argument("--status", action="append", default=[], choices=statuses, help="repeatable")
    j.add_argument("--module")
    j.add_argument("--limit", type=int, help="exports per page, 1-100 (default 20)")
    j.add_argument("--all", action="store_true", help="follow the pages to the oldest")
    j.add_argument("--json", action="store_true", help="as JSON")
    j.set_defaults(func=_client("cmd_jobs"))

    d = sub.add_parser("download", help="download a finished export's file through the API")
    d.add_argument("job", help="the export's id")
    add_api_options(d)
    d.add_argument("-o", "--output", help="file to write; - for standard output")
    d.set_defaults(func=_client("cmd_download"))


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="exportflow", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("export", help="export a module to a file, in this process")
    add_request_options(e)
    out = e.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", help="file to write; - for standard output")
    out.add_argument("--count", action="store_true", help="print the number of rows, write none")
    e.set_defaults(func=commands.cmd_export, quick_exit=True)

    m = sub.add_parser("modules", help="list the exportable modules, their columns and types")
    m.add_argument("--json", action="store_true", help="as JSON")
    m.set_defaults(func=commands.cmd_modules)

    s = sub.add_parser("seed", help="(re)create the demo tables tags and products")
    s.add_argument("--rows", type=int, default=1000, help="product rows (default 1000)")
    s.set_defaults(func=commands.cmd_seed)

    g = sub.add_parser("migrate", help="apply the schema migrations the database lacks")
    g.set_defaults(func=commands.cmd_migrate)

    d = sub.add_parser("db", help="the database: print its URL, or stop the embedded server")
    d.add_argument("action", choices=["url", "stop"], nargs="?", default="url")
    d.set_defaults(func=commands.cmd_db)

    k = sub.add_parser("token", help="mint a bearer token the API accepts (development, scripts)")
    k.add_argument("--user", required=True, help="the token's subject (`sub`)")
    k.add_argument("--perm", action="append", default=[], help="a permission (repeatable)")
    k.add_argument("--ttl", default="1h", help="lifetime: seconds, or with s/m/h/d (default 1h)")
    k.set_defaults(func=commands.cmd_token)

    add_client_commands(sub)

    u = sub.add_parser(
        "up", help="start database, Prefect server, deployments and API; Ctrl-C stops them all"
    )
    u.set_defaults(func=commands.cmd_up, own_signals=True)

    v = sub.add_parser("serve", help="run the export and cleanup deployments in this process")
    v.set_defaults(func=commands.cmd_serve, own_signals=True)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code."""
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run a parsed command line; its exit code."""
    # `up` and Prefect's `serve` stop their children on SIGTERM themselves.
    if not getattr(args, "own_signals", False):
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except ExportflowError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        # What the command froze after loading (cli_commands.loading) is collectable again
        # for a caller that goes on in this process.
        gc.unfreeze()


def console() -> None:
    """The `exportflow` console script."""
    for name, value in IDLE_POOLS.items():
        os.environ.setdefault(name, value)
    args = build_parser().parse_args()
    code = run(args)
    if getattr(args, "quick_exit", False):
        # The export's file is renamed into place and synced by now: tearing down the
        # interpreter would only free, object by object, the several hundred thousand
        # that pyarrow, Polars and pydantic made (~0.1 s of a 2 s export), which the
        # process's exit frees at once.
        kept = sys.modules.get("flows.control.connections")  # loaded if the export connected
        if kept is not None:
            kept.close_kept()
        logging.shutdown()
        with contextlib.suppress(OSError):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    console()
