"""What each `exportflow` subcommand does; the parser and the entry point are in cli.py."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.control.errors import ConfigError, InvalidRequest

if TYPE_CHECKING:
    from flows.control.registry import Registry
    from flows.control.settings import Settings


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """No garbage collection while a command imports its libraries, whose objects are then
    left out of later collections (until `cli.main` returns).

    pyarrow, Polars, pydantic and psycopg (and pandas, which pyarrow.dataset loads) create
    several hundred thousand objects that live as long as the process; collecting them,
    during the imports or once after, frees nothing and costs a short export ~0.15 s."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def load_settings() -> Settings:
    """The settings; a bad EXPORTFLOW_* value is a ConfigError naming the variable."""
    from pydantic import ValidationError

    from flows.control.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "EXPORTFLOW_" + "_".join(str(p) for p in err["loc"]).upper()
        raise ConfigError(f"{name}={err.get('input')!r}: {err['msg']}") from None


def announce_embedded(pgdata: Path) -> None:
    """Say where a new embedded server starts: it keeps running after this command."""
    print(
        f"starting an embedded PostgreSQL in {pgdata} "
        "(set EXPORTFLOW_DATABASE_URL to use your own)",
        file=sys.stderr,
        flush=True,
    )


_LIST_OPS = ("in", "not_in", "between")


def _filter(text: str) -> dict[str, Any]:
    column, sep, rest = text.partition(":")
    op, sep2, value = rest.partition(":")
    if op in ("is_null", "not_null") and column and not sep2:
        return {"column": column, "op": op}
    if not (sep and sep2 and column):
        raise InvalidRequest(
            f"filter {text!r} must look like COLUMN:OP:VALUE (e.g. price:gte:10) "
            "or COLUMN:is_null / COLUMN:not_null"
        )
    return {"column": column, "op": op, "value": value.split(",") if op in _LIST_OPS else value}


def _filters(args: argparse.Namespace) -> list[Any]:
    filters: list[Any] = [_filter(f) for f in args.filter]
    if args.any:
        filters.append({"any": [_filter(f) for f in args.any]})
    if args.filters_json:
        try:
            given = json.loads(args.filters_json)
        except ValueError as exc:
            raise InvalidRequest(f"--filters-json is not JSON: {exc}") from None
        if not isinstance(given, list):
            raise InvalidRequest("--filters-json must be a JSON list of filters and groups")
        filters += given
    return filters


def _sort(text: str) -> dict[str, str]:
    column, _, direction = text.partition(":")
    if not column:
        raise InvalidRequest(f"sort {text!r} must look like COLUMN or COLUMN:desc")
    return {"column": column, "direction": direction or "asc"}


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


# The request's formatting options, as the command line and the API name them.
FORMATTING = {
    "locale": "locale",
    "decimal_separator": "decimalSeparator",
    "date_pattern": "datePattern",
    "timestamp_pattern": "timestampPattern",
    "true_text": "trueText",
    "false_text": "falseText",
    "null_text": "nullText",
}


def request_data(args: argparse.Namespace) -> dict[str, Any]:
    """The request in its JSON form, as the API receives it."""
    return {
        "module": args.module,
        "format": args.format,
        "columns": _split(args.columns),
        "ids": _split(args.ids),
        "from": args.date_from,
        "to": args.date_to,
        "filters": _filters(args),
        "timezone": args.timezone,
        "header": not args.no_header,
        "delimiter": args.delimiter,
        "bom": args.bom,
        "gzip": args.gzip,
        **{k: getattr(args, k) for k in FORMATTING},
        "relations": _split(args.relations),
        "sort": [_sort(s) for s in args.sort],
    }


def cmd_export(args: argparse.Namespace) -> int:
    """Check request and output, then stream the rows to a file or stdout (or count them)."""
    with loading():
        settings = load_settings()
        if settings.database_url:
            # The first connection (round trips, the server's type catalog: ~40 ms) opens
            # while the rest loads.
            from flows.control.connections import connect_ahead

            connect_ahead(settings.database_url)
        from flows.control.bootstrap import bootstrap
        from flows.datapath.engine import count_rows, export
        from flows.datapath.request import parse_request, plan_export
        from flows.datapath.writers import file_extension
        from flows.tools.cli_output import ProgressBar, check_output, write_output
    request = parse_request(request_data(args))
    if not args.count:
        name = f"{request.module}.{file_extension(request)}"
        binary = file_extension(request) != "csv"
        target = check_output(args.output, name, binary)
    url, registry = bootstrap(settings, on_start=announce_embedded)
    plan = plan_export(request, registry, settings)
    if args.count:
        print(count_rows(url, plan))
        return 0
    # A bar redrawn in place means something on a terminal only; elsewhere (a script, a
    # log) it would be noise, and the count behind its total a query for nobody.
    bar = ProgressBar() if sys.stderr.isatty() else None
    # Nothing records a CLI file's sha256: it is not computed.
    result = write_output(
        target, lambda sink: export(url, plan, sink, settings, bar, digest=False), bar
    )
    if bar is not None:
        bar(result.rows, result.rows, final=True)
    where = "standard output" if target is None else target
    print(f"wrote {result.rows:,} rows, {result.bytes:,} bytes to {where}", file=sys.stderr)
    return 0


def module_info(registry: Registry) -> list[dict[str, Any]]:
    """Every declared module with its columns, labels and types, in file order."""
    out = []
    for name, ds in registry.modules.items():
        columns = [ds.column(c) for c in ds.columns]
        out.append(
            {
                "name": name,
                "table": ds.table,
                "key": ds.key,
                "date_column": ds.date_column,
                "permission": ds.permission,
                "columns": [{"name": c.name, "label": c.label, "type": c.pg_type} for c in columns],
                "sensitive": list(ds.sensitive),
                "relations": [
                    {
                        "name": rel.name,
                        "label": rel.title,
                        "table": rel.table,
                        "permission": rel.permission,
                        "columns": [
                            {"name": c.name, "label": c.label, "type": c.pg_type}
                            for c in rel.output_columns()
                        ],
                    }
                    for rel in ds.relations.values()
                ],
            }
        )
    return out


def cmd_modules(args: argparse.Namespace) -> int:
    """List the modules the dataset file declares, checked against the database."""
    with loading():
        from flows.control.bootstrap import bootstrap

        settings = load_settings()
    _, registry = bootstrap(settings, on_start=announce_embedded)
    modules = module_info(registry)
    if args.json:
        print(json.dumps(modules, indent=2))
        return 0
    print(f"modules in {settings.datasets}:")
    for m in modules:
        print(f"\n{m['name']}  ({m['table']})")
        print(
            f"  key: {m['key']}   date column: {m['date_column'] or '-'}"
            f"   permission: {m['permission']}"
        )
        rows = [("column", "label", "type")]
        rows += [(c["name"], c["label"], c["type"]) for c in m["columns"]]
        widths = [max(len(r[i]) for r in rows) for i in range(2)]
        for col, label, pg_type in rows:
            print(f"  {col:<{widths[0]}}  {label:<{widths[1]}}  {pg_type}")
        if m["sensitive"]:
            print(f"  never exported: {', '.join(m['sensitive'])}")
        for rel in m["relations"]:
            labels = ", ".join(c["label"] for c in rel["columns"])
            print(f"  related sheet --relations {rel['name']}: {rel['label']} ({labels})")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply the schema migrations this database lacks."""
    from flows.control.bootstrap import migrate_database
    from flows.control.database import database_url

    applied = migrate_database(database_url(load_settings(), announce_embedded))
    print(f"applied {', '.join(applied)}" if applied else "the schema is up to date")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    """Create the demo tables."""
    from flows.control.bootstrap import connect_and_migrate
    from flows.tools.seed import seed

    url = connect_and_migrate(load_settings(), announce_embedded)
    started = time.monotonic()
    counts = seed(url, rows=args.rows)
    took = time.monotonic() - started
    print(
        f"seeded {counts['products']:,} products, {counts['tags']:,} tags and"
        f" {counts['product_tags']:,} product tags in {took:.1f} s"
    )
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    """Print the database URL, or stop the embedded server."""
    from flows.control.database import database_url, stop_embedded

    settings = load_settings()
    if args.action == "stop":
        print("stopped" if stop_embedded(settings.data_dir) else "no embedded server running")
    else:
        print(database_url(settings, announce_embedded))
    return 0


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> int:
    """Seconds from `90`, `15m`, `1h` or `2d`."""
    unit = _UNITS.get(text[-1:].lower(), 0)
    number = text[:-1] if unit else text
    if not number.isdigit() or int(number) == 0:
        raise InvalidRequest(f"--ttl {text!r} must be a positive number of s, m, h or d, e.g. 1h")
    return int(number) * (unit or 1)


def cmd_token(args: argparse.Namespace) -> int:
    """Print a bearer token for `--user` with the given permissions."""
    from flows.control.tokens import mint_token

    print(mint_token(load_settings(), args.user, args.perm, parse_ttl(args.ttl)))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """The whole stack on this machine, until Ctrl-C or SIGTERM."""
    from flows.tools.stack import up

    return up(load_settings())


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the export and cleanup deployments from this process."""
    from flows.control.bootstrap import connect_and_migrate
    from flows.tools.serve import serve_deployments

    settings = load_settings()
    connect_and_migrate(settings, announce_embedded)
    serve_deployments(settings)
    return 0
