"""The `exportflow` command: seed demo data, export in-process, the embedded database, the stack."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from flows.control.errors import ExportflowError, InvalidRequest
from flows.control.settings import get_settings
from flows.datapath.request import ExportRequest, Filter


class ProgressBar:
    """Rows done / total and rate on stderr, redrawn at most five times a second."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.start = self.last = time.monotonic()

    def __call__(self, done: int, total: int, final: bool = False) -> None:
        """Redraw; `total` 0 means not known yet."""
        now = time.monotonic()
        if not final and now - self.last < 0.2:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        if total:
            pct = 100 * done / total
            fill = int(30 * pct / 100)
            line = f"[{'#' * fill}{'-' * (30 - fill)}] {done:,}/{total:,} rows {pct:5.1f}%"
        else:
            line = f"[{'?' * 30}] {done:,} rows"
        self.stream.write(f"\r{line} {rate:,.0f} rows/s")
        if final:
            self.stream.write("\n")
        self.stream.flush()


def _parse_filter(text: str) -> Filter:
    column, sep, rest = text.partition(":")
    op, sep2, value = rest.partition(":")
    if not (sep and sep2 and column):
        raise InvalidRequest(f"filter {text!r} must look like COLUMN:OP:VALUE, e.g. price:gte:10")
    return Filter(column=column, op=op, value=value.split(",") if op == "in" else value)


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def _request(args: argparse.Namespace) -> ExportRequest:
    return ExportRequest(
        module=args.module,
        format=args.format,
        columns=_split(args.columns),
        ids=_split(args.ids),
        date_from=args.date_from,
        date_to=args.date_to,
        filters=[_parse_filter(f) for f in args.filter],
        timezone=args.timezone,
        header=not args.no_header,
        delimiter=args.delimiter,
        bom=args.bom,
        gzip=args.gzip,
    )


def cmd_export(args: argparse.Namespace) -> int:
    """Validate, then stream the export into a file that appears only when complete."""
    from flows.control.bootstrap import bootstrap
    from flows.control.storage import atomic_local_file
    from flows.datapath.engine import export
    from flows.datapath.request import plan_export

    settings = get_settings()
    request = _request(args)
    url, registry = bootstrap(settings)
    plan = plan_export(request, registry, settings)
    bar = ProgressBar()
    with atomic_local_file(Path(args.output)) as f:
        result = export(url, plan, f, settings, on_progress=bar)
    bar(result.rows, result.rows, final=True)
    print(f"wrote {result.rows:,} rows, {result.bytes:,} bytes to {args.output}", file=sys.stderr)
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    """Create the demo tables."""
    from flows.control.bootstrap import connect_and_migrate
    from flows.tools.seed import seed

    started = time.monotonic()
    counts = seed(connect_and_migrate(get_settings()), rows=args.rows)
    took = time.monotonic() - started
    print(f"seeded {counts['products']:,} products, {counts['tags']:,} tags in {took:.1f} s")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    """Print the database URL, or stop the embedded server."""
    from flows.control.database import database_url, stop_embedded

    settings = get_settings()
    if args.action == "stop":
        print("stopped" if stop_embedded(settings.data_dir) else "no embedded server running")
    else:
        print(database_url(settings))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """The whole stack on this machine, until Ctrl-C or SIGTERM."""
    from flows.tools.stack import up

    return up(get_settings())


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the export and cleanup deployments from this process."""
    from flows.tools.stack import serve_deployments

    serve_deployments(get_settings())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="exportflow", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("export", help="export a module to a file, in this process")
    e.add_argument("module")
    e.add_argument("--format", default="csv", help="csv or xlsx")
    e.add_argument("--columns", help="comma-separated allow-listed columns (default: all)")
    e.add_argument("--ids", help="comma-separated keys: export only these rows")
    e.add_argument("--from", dest="date_from", help="YYYY-MM-DD or ISO date-time, inclusive")
    e.add_argument("--to", dest="date_to", help="YYYY-MM-DD (whole day) or ISO date-time")
    e.add_argument("--filter", action="append", default=[], help="COLUMN:OP:VALUE (repeatable)")
    e.add_argument("--timezone", default="UTC", help="IANA zone for timestamps (default UTC)")
    e.add_argument("--delimiter", default=",")
    e.add_argument("--no-header", action="store_true")
    e.add_argument("--bom", action="store_true", help="UTF-8 byte order mark, for Excel")
    e.add_argument("--gzip", action="store_true")
    e.add_argument("-o", "--output", required=True, help="file to write")
    e.set_defaults(func=cmd_export)

    s = sub.add_parser("seed", help="(re)create the demo tables tags and products")
    s.add_argument("--rows", type=int, default=1000, help="product rows (default 1000)")
    s.set_defaults(func=cmd_seed)

    d = sub.add_parser("db", help="the database: print its URL, or stop the embedded server")
    d.add_argument("action", choices=["url", "stop"], nargs="?", default="url")
    d.set_defaults(func=cmd_db)

    u = sub.add_parser(
        "up", help="start database, Prefect server, deployments and API; Ctrl-C stops them all"
    )
    u.set_defaults(func=cmd_up)

    v = sub.add_parser("serve", help="run the export and cleanup deployments in this process")
    v.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `exportflow` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ExportflowError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
