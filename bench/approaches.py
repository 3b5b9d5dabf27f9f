"""The measured approaches: psql and the exportflow CLI as commands, the naive ones as runners.

Runners execute in a fresh `python bench/bench_export.py _run KEY URL FILE ROWS` process so that
each one's wall time and peak RSS are its own; heavy imports happen inside them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

COLUMNS = (
    "id", "sku", "name", "description", "price",
    "external_id", "attributes", "in_stock", "released_on", "created_at",
)  # fmt: skip
COLS = ", ".join(COLUMNS)
ORDERED_SQL = f"SELECT {COLS} FROM products ORDER BY id"
UNORDERED_SQL = f"SELECT {COLS} FROM products"
# The same query for the Python approaches: ADBC returns numeric, uuid and jsonb as
# extension types that neither Polars nor pyarrow can write to CSV, so they come as text.
NAIVE_SQL = (
    "SELECT id, sku, name, description, price::text AS price, external_id::text AS external_id,"
    " attributes::text AS attributes, in_stock, released_on, created_at"
    " FROM products ORDER BY id"
)
PAGE_ROWS = 100_000
ONE_MILLION = 1_000_000
BENCH_SCRIPT = Path(__file__).with_name("bench_export.py")


@dataclass(frozen=True)
class Approach:
    """One line of the table; `kind` says how it is run and which goals apply."""

    key: str
    label: str
    ext: str
    kind: str  # floor | ref | runner | exportflow
    max_rows: int | None = None  # the slow naive ones stop at 1M
    cli_args: tuple[str, ...] = ()
    timeout: float | None = None  # "only if it fits in time"

    def applies(self, rows: int) -> bool:
        """Whether this approach runs at `rows`."""
        return self.max_rows is None or rows <= self.max_rows


_1M = {"max_rows": ONE_MILLION}
CSV, GZIP, XLSX = ("--format", "csv"), ("--format", "csv", "--gzip"), ("--format", "xlsx")
APPROACHES = [
    Approach("psql", "floor: psql \\copy (select …) to file csv header", "csv", "floor"),
    Approach("psql-ordered", "ref: psql \\copy (… order by id)", "csv", "ref"),
    Approach("adbc-polars", "naive: ADBC fetch_arrow_table → polars write_csv", "csv", "runner"),
    Approach("adbc-pyarrow", "naive: ADBC fetch_arrow_table → pyarrow.csv", "csv", "runner"),
    Approach("polars-uri", "peer: polars read_database_uri(adbc) → write_csv", "csv", "runner"),
    Approach(
        "offset-polars", "naive: OFFSET pages of 100k (ADBC + polars)", "csv", "runner", **_1M
    ),
    Approach("xlsxwriter", "naive: xlsxwriter constant_memory, psycopg", "xlsx", "runner", **_1M),
    Approach("polars-excel", "naive: polars write_excel", "xlsx", "runner", **_1M, timeout=300),
    Approach("exportflow-csv", "exportflow csv", "csv", "exportflow", cli_args=CSV),
    Approach("exportflow-gzip", "exportflow csv --gzip", "csv.gz", "exportflow", cli_args=GZIP),
    Approach("exportflow-xlsx", "exportflow xlsx", "xlsx", "exportflow", cli_args=XLSX),
]
FLOOR = APPROACHES[0]


def psql_copy(url: str, sql: str, target: str) -> list[str]:
    """psql's client-side \\copy of `sql` into `target` as CSV with a header."""
    quoted = "'" + target.replace("'", "''") + "'"
    return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url,
            "-c", f"\\copy ({sql}) to {quoted} csv header"]  # fmt: skip


def exportflow_cli() -> list[str]:
    """The installed console script, else the module."""
    script = Path(sys.executable).with_name("exportflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "flows.tools.cli"]


def command(approach: Approach, url: str, target: Path, rows: int) -> list[str]:
    """The command line that performs `approach` into `target`."""
    if approach.kind == "floor":
        return psql_copy(url, UNORDERED_SQL, str(target))
    if approach.kind == "ref":
        return psql_copy(url, ORDERED_SQL, str(target))
    if approach.kind == "exportflow":
        return [*exportflow_cli(), "export", "products", *approach.cli_args,
                "--columns", ",".join(COLUMNS), "-o", str(target)]  # fmt: skip
    return [sys.executable, str(BENCH_SCRIPT), "_run", approach.key, url, str(target), str(rows)]


def _fetch_all(url: str):
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(url) as conn, conn.cursor() as cur:
        cur.execute(NAIVE_SQL)
        return cur.fetch_arrow_table()


def run_adbc_polars(url: str, target: str, rows: int) -> None:
    """The whole result as one Arrow table, then Polars writes it."""
    import polars as pl

    pl.from_arrow(_fetch_all(url)).write_csv(target)


def run_adbc_pyarrow(url: str, target: str, rows: int) -> None:
    """The whole result as one Arrow table, then pyarrow's CSV writer."""
    import pyarrow.csv as pacsv

    pacsv.write_csv(_fetch_all(url), target)


def run_polars_uri(url: str, target: str, rows: int) -> None:
    """What a Polars user writes: read_database_uri with the ADBC engine, then write_csv."""
    import polars as pl

    pl.read_database_uri(NAIVE_SQL, url, engine="adbc").write_csv(target)


def run_offset_polars(url: str, target: str, rows: int) -> None:
    """LIMIT/OFFSET pages appended to one file: every page rescans everything before it."""
    import adbc_driver_postgresql.dbapi as adbc
    import polars as pl

    with adbc.connect(url) as conn, open(target, "wb") as out:
        offset = 0
        while True:
            with conn.cursor() as cur:
                cur.execute(f"{NAIVE_SQL} LIMIT {PAGE_ROWS} OFFSET {offset}")
                page = cur.fetch_arrow_table()
            if page.num_rows or offset == 0:
                pl.from_arrow(page).write_csv(out, include_header=offset == 0)
            offset += page.num_rows
            if page.num_rows < PAGE_ROWS:
                break


def run_xlsxwriter(url: str, target: str, rows: int) -> None:
    """A server-side cursor, one write_row per row into a constant-memory workbook."""
    import psycopg
    import xlsxwriter

    options = {
        "constant_memory": True,
        "remove_timezone": True,
        "strings_to_formulas": False,
        "strings_to_urls": False,
        "default_date_format": "yyyy-mm-dd",
    }
    workbook = xlsxwriter.Workbook(target, options)
    sheet = workbook.add_worksheet()
    sheet.write_row(0, 0, COLUMNS)
    with psycopg.connect(url) as conn, conn.cursor(name="bench_rows") as cur:
        cur.itersize = 10_000
        cur.execute(NAIVE_SQL)
        for r, row in enumerate(cur, start=1):
            sheet.write_row(r, 0, row)
    workbook.close()


def run_polars_excel(url: str, target: str, rows: int) -> None:
    """The whole result in a DataFrame, then DataFrame.write_excel."""
    import polars as pl

    df = pl.from_arrow(_fetch_all(url))
    # Excel has no time zones; write_excel refuses zoned datetimes.
    df = df.with_columns(pl.col("created_at").dt.replace_time_zone(None))
    df.write_excel(target)


RUNNERS: dict[str, Callable[[str, str, int], None]] = {
    "adbc-polars": run_adbc_polars,
    "adbc-pyarrow": run_adbc_pyarrow,
    "polars-uri": run_polars_uri,
    "offset-polars": run_offset_polars,
    "xlsxwriter": run_xlsxwriter,
    "polars-excel": run_polars_excel,
}


def run(argv: list[str]) -> int:
    """Entry point of `bench_export.py _run KEY URL FILE ROWS`."""
    key, url, target, rows = argv
    RUNNERS[key](url, target, int(rows))
    return 0
