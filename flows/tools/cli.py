"""The `exportflow` command: export in-process, the modules, the database, the stack."""

from __future__ import annotations

import argparse
import signal
import sys

from flows.control.errors import ExportflowError
from flows.tools import cli_commands as commands


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwound exactly like Ctrl-C: no partial or temporary file is left behind."""


def _terminate(signum, frame) -> None:
    # A second SIGTERM while unwinding would cut the clean-up short; SIGKILL still works.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


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
    out = e.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", help="file to write; - for standard output")
    out.add_argument("--count", action="store_true", help="print the number of rows, write none")
    e.set_defaults(func=commands.cmd_export)

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

    u = sub.add_parser(
        "up", help="start database, Prefect server, deployments and API; Ctrl-C stops them all"
    )
    u.set_defaults(func=commands.cmd_up, own_signals=True)

    v = sub.add_parser("serve", help="run the export and cleanup deployments in this process")
    v.set_defaults(func=commands.cmd_serve, own_signals=True)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `exportflow` console script."""
    args = build_parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
