"""Keyset-chunked reads: parameterised SQL, no OFFSET, every row once, faithful types."""

from __future__ import annotations

import io
import threading
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from flows.control.database import READER_APPLICATION_NAME, classify_db_error
from flows.control.errors import SourceError, SourceTimeout, SourceUnavailable, is_transient
from flows.control.registry import load_checked_registry
from flows.datapath.engine import export
from flows.datapath.request import ExportRequest, Filter, plan_export
from flows.datapath.source import Source, range_query
from tests.flows.control.test_database import terminate_when_waiting
from tests.flows.datapath.test_csv_roundtrip import parse
from tests.flows.helpers import chunk_list, dataset_file, limits

EDGE_YAML = """
modules:
  edge:
    table: public.edge
    key: code
    date_column: day
    permission: edge:read
    columns: {code: null, ts: null, naive: null, day: null, amount: null, tags: null,
              span: null, 'odd "name"': null, mood: null}
"""

EDGE_SQL = """
DROP TABLE IF EXISTS edge; DROP TYPE IF EXISTS mood;
CREATE TYPE mood AS ENUM ('ok', '=bad');
CREATE TABLE edge (code text PRIMARY KEY, ts timestamptz, naive timestamp, day date,
    amount numeric, tags text[], span interval, "odd \"\"name\"\"\" text, mood mood);
INSERT INTO edge VALUES
  ('a', 'infinity', '-infinity', 'infinity', 'NaN', '{x,"y,z"}', '1 day 02:00', 'q', 'ok'),
  ('b', '-infinity', 'infinity', '-infinity', 123456789012345678901234.5678, '{}',
   '-3 hours', NULL, '=bad'),
  ('c', '2024-03-31 01:30:00.123456+00', '2024-03-31 01:30:00', '2024-03-31', -0.5,
   NULL, NULL, '=1+1', NULL);
"""


@pytest.fixture(scope="module")
def edge(db_url: str, tmp_path_factory: pytest.TempPathFactory):
    """A table with a text key and the types ADBC returns opaquely or oddly."""
    path = dataset_file(db_url, tmp_path_factory.mktemp("edge"), EDGE_SQL, EDGE_YAML)
    return load_checked_registry(path, db_url)


def test_queries_bind_values_and_never_use_offset(registry):
    plan = plan_export(
        ExportRequest(
            module="products", filters=[Filter(column="name", op="contains", value="50%_'; DROP")]
        ),
        registry,
        limits(10),
    )
    q = range_query(plan, 10, 20)
    assert "OFFSET" not in q.sql.upper() and "DROP" not in q.sql
    assert q.params == ("50\\%\\_'; DROP", "10", "20") and "$" not in q.sql
    assert (
        "\"id\" > CAST(current_setting('exportflow.p2') AS bigint)"
        ' AND "id" <= CAST(current_setting(\'exportflow.p3\') AS bigint) ORDER BY "id"'
    ) in q.sql
    assert q.setup.endswith("set_config('exportflow.p3', $3, true)")


@pytest.mark.parametrize(
    ("readers", "size"),
    # 500 and 2000 divide the 2000 rows: the last full chunk is found by the probe's
    # read-ahead row, the short-chunk path then finds nothing left.
    [(1, 170), (2, 170), (3, 170), (2, 500), (1, 2000), (2, 1999), (2, 3000), (1, 400)],
)
def test_chunks_cover_every_row_once_in_key_order(settings, registry, readers, size):
    plan = plan_export(ExportRequest(module="products", columns=["id"]), registry, limits(10))
    chunks = list(chunk_list(settings.database_url, plan, size, readers=readers))
    ids = [i for c in chunks for i in c.table.column("id").to_pylist()]
    assert ids == list(range(1, 2001))
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert len(chunks) == -(-2000 // size)
    assert all(c.table.num_rows == size for c in chunks[:-1])
    assert [c.lo for c in chunks[1:]] == [c.hi for c in chunks[:-1]]


def test_resume_after_a_key_gives_the_rest(settings, registry):
    plan = plan_export(ExportRequest(module="products", columns=["id"]), registry, limits(10))
    ids = [
        i
        for c in chunk_list(settings.database_url, plan, 500, after="1500")
        for i in c.table.column("id").to_pylist()
    ]
    assert ids == list(range(1501, 2001))


@pytest.mark.parametrize(
    ("filters", "where"),
    [
        ([Filter(column="in_stock", op="eq", value="true")], "in_stock"),
        (
            [
                Filter(column="price", op="gte", value="100"),
                Filter(column="price", op="lte", value="200.5"),
            ],
            "price BETWEEN 100 AND 200.5",
        ),
        (
            [Filter(column="sku", op="in", value=["00000007", "00000011"])],
            "sku IN ('00000007', '00000011')",
        ),
        ([Filter(column="name", op="contains", value="COMMA")], "name ILIKE '%comma%'"),
        (
            [Filter(column="description", op="contains", value="k\\s")],
            "strpos(description, 'k' || chr(92) || 's') > 0",
        ),
        (
            [Filter(column="released_on", op="lte", value="2020-02-01")],
            "released_on <= '2020-02-01'",
        ),
    ],
)
def test_filters_select_exactly_the_matching_rows(settings, registry, db_url, filters, where):
    plan = plan_export(
        ExportRequest(module="products", columns=["id"], filters=filters), registry, limits(10)
    )
    got = [
        i
        for c in chunk_list(settings.database_url, plan, 400)
        for i in c.table.column("id").to_pylist()
    ]
    with psycopg.connect(db_url) as conn:
        want = [r[0] for r in conn.execute(f"SELECT id FROM products WHERE {where} ORDER BY id")]
    assert got == want and 0 < len(want) < 2000
    with Source(settings.database_url, plan) as src:
        assert src.count() == len(want)


def test_ids_and_date_range_scope(settings, registry, db_url):
    plan = plan_export(
        ExportRequest(module="products", columns=["id"], ids=[5, "7", 3000]), registry, limits(10)
    )
    assert [
        i
        for c in chunk_list(settings.database_url, plan, 100)
        for i in c.table.column("id").to_pylist()
    ] == [5, 7]
    plan = plan_export(
        ExportRequest(
            module="tags",
            columns=["id"],
            date_from="2024-01-01",
            date_to="2024-01-01",
            timezone="America/New_York",
        ),
        registry,
        limits(10),
    )
    got = [
        i
        for c in chunk_list(settings.database_url, plan, 100)
        for i in c.table.column("id").to_pylist()
    ]
    with psycopg.connect(db_url) as conn:
        want = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM tags WHERE created_at >= '2024-01-01 00:00-05' AND created_at < '2024-01-02 00:00-05' ORDER BY id"
            )
        ]
    assert got == want and len(want) > 0


def test_opaque_types_and_infinities_export_faithfully(settings, edge, tmp_path: Path):
    plan = plan_export(ExportRequest(module="edge", timezone="Europe/Berlin"), edge, limits(10))
    buf = io.BytesIO()
    export(settings.database_url, plan, buf, settings.model_copy(update={"chunk_rows": 2}))
    rows = parse(buf.getvalue())
    assert rows[0] == [
        "code",
        "ts (Europe/Berlin)",
        "naive",
        "day",
        "amount",
        "tags",
        "span",
        'odd "name"',
        "mood",
    ]
    assert rows[1] == [
        "a",
        "infinity",
        "-infinity",
        "infinity",
        "NaN",
        '["x","y,z"]',
        "1 day 02:00:00",
        "q",
        "ok",
    ]
    assert rows[2] == [
        "b",
        "-infinity",
        "infinity",
        "-infinity",
        "123456789012345678901234.5678",
        "[]",
        "-03:00:00",
        "",
        "'=bad",  # an enum's label can start a formula: neutralised like text
    ]
    assert rows[3] == [
        "c",
        "2024-03-31 03:30:00.123456",
        "2024-03-31 01:30:00",
        "2024-03-31",
        "-0.5",
        "",
        "",
        "'=1+1",
        "",
    ]


def test_dropped_column_fails_as_terminal_source_error(settings, db_url, edge):
    plan = plan_export(ExportRequest(module="edge", columns=["code", "mood"]), edge, limits(10))
    with psycopg.connect(db_url) as conn:
        conn.execute("ALTER TABLE edge RENAME COLUMN mood TO mood_gone")
    try:
        with pytest.raises(SourceError) as info:
            list(chunk_list(settings.database_url, plan, 10))
        assert not is_transient(info.value)
        assert info.value.message == "a column or table used by this export no longer exists"
        assert "mood" in info.value.detail and "42703" in info.value.detail
    finally:
        with psycopg.connect(db_url) as conn:
            conn.execute("ALTER TABLE edge RENAME COLUMN mood_gone TO mood")


def products_plan(registry, **bounds):
    req = ExportRequest(module="products", columns=["id"])
    return plan_export(req, registry, limits(10, **bounds))


def test_source_connections_are_read_only_named_and_time_limited(settings, registry):
    plan = products_plan(registry, statement_timeout_seconds=42)
    with Source(settings.database_url, plan) as src:
        row = src.conn.query(
            "SELECT current_setting('default_transaction_read_only') AS ro,"
            " current_setting('application_name') AS app,"
            " current_setting('statement_timeout') AS timeout"
        ).to_pylist()
        assert row == [{"ro": "on", "app": READER_APPLICATION_NAME, "timeout": "42s"}]
        src.conn.rollback()
        with pytest.raises(Exception, match="read-only") as info:
            src.conn.query("DELETE FROM products")
    assert classify_db_error(info.value).message.endswith(
        "read-only and the statement tried to write"
    )


@contextmanager
def table_locked(db_url: str, table: str):
    """Hold an ACCESS EXCLUSIVE lock on `table`: a read of it waits at a known point."""
    with psycopg.connect(db_url) as holder:
        holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield
        holder.rollback()


def test_a_read_past_the_statement_timeout_fails_as_timeout(settings, registry, db_url):
    plan = products_plan(registry, statement_timeout_seconds=0.3)
    with table_locked(db_url, "products"), pytest.raises(SourceTimeout) as info:
        list(chunk_list(settings.database_url, plan, 500))
    assert info.value.code == "timeout" and not is_transient(info.value)
    assert "57014" in info.value.detail


def test_a_reader_terminated_mid_read_fails_as_transient(settings, registry, db_url):
    plan = products_plan(registry)
    with table_locked(db_url, "products"):
        killer = threading.Thread(
            target=terminate_when_waiting, args=(db_url, READER_APPLICATION_NAME)
        )
        killer.start()
        with pytest.raises(SourceUnavailable) as info:
            list(chunk_list(settings.database_url, plan, 500))
        killer.join()
    assert is_transient(info.value) and info.value.code == "source_unavailable"
    assert info.value.message == "the database could not be reached"


def test_a_key_gone_null_after_the_check_stops_the_export(settings, db_url, tmp_path):
    # The check at start refuses a nullable key; a key altered afterwards must still never
    # loop or repeat a chunk.
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS drifting;"
            " CREATE TABLE drifting (id integer PRIMARY KEY, v text);"
            " INSERT INTO drifting SELECT g, 'v' || g FROM generate_series(1, 20) g"
        )
    path = tmp_path / "datasets.yaml"
    path.write_text(
        "modules:\n  drifting:\n    table: drifting\n    key: id\n    permission: p\n"
        "    columns: {id: null, v: null}\n"
    )
    reg = load_checked_registry(path, db_url)
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "ALTER TABLE drifting DROP CONSTRAINT drifting_pkey;"
            " ALTER TABLE drifting ALTER id DROP NOT NULL; UPDATE drifting SET id = NULL"
        )
    plan = plan_export(ExportRequest(module="drifting"), reg, limits(10))
    with pytest.raises(SourceError, match="does not advance"):
        list(chunk_list(settings.database_url, plan, 5))
