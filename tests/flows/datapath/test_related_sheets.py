"""Related sheets: the child rows of the exported parents, one XLSX sheet (or one CSV in a
zip) per relation, row counts per sheet as SQL counts them, read back three ways."""

from __future__ import annotations

import csv
import io
import zipfile

import openpyxl
import psycopg
import pytest
from python_calamine import CalamineWorkbook

from flows.control import errors
from flows.datapath.access import Caller
from flows.datapath.engine import count_rows, export
from flows.datapath.request import ExportRequest, plan_export
from tests.flows.datapath.test_xlsx import libreoffice_sheets, newlines

# Parents: a price filter and a date range, so both narrow the children too.
SELECTION = {
    "filters": [{"column": "price", "op": "gte", "value": 2000}],
    "from": "2024-01-01T00:20:00Z",
    "to": "2024-01-01T03:00:00Z",
}
PARENTS = (
    "SELECT id FROM products WHERE price >= 2000"
    " AND created_at >= '2024-01-01 00:20:00+00' AND created_at < '2024-01-01 03:00:00+00'"
)
TAGS_SQL = f"""
SELECT pt.product_id, pt.tag_id, pt.note, t.name, t.slug
FROM product_tags pt LEFT JOIN tags t ON t.id = pt.tag_id
WHERE pt.product_id IN ({PARENTS}) ORDER BY pt.product_id, pt.tag_id
"""


def sql(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def run(registry, settings, path=None, caller=None, **request) -> bytes:
    req = ExportRequest(module="products", **{**SELECTION, **request})
    plan = plan_export(req, registry, settings, *([caller] if caller else []))
    buf = io.BytesIO()
    export(settings.database_url, plan, buf, settings)
    if path is not None:
        path.write_bytes(buf.getvalue())
    return buf.getvalue()


SHEET_ROWS = 600


@pytest.fixture
def small_sheets(settings):
    """Sheets of 600 rows, so both tables roll over."""
    return settings.model_copy(update={"xlsx_sheet_rows": SHEET_ROWS})


def names(base: str, rows: int) -> list[str]:
    """The sheets a table of `rows` rows takes."""
    count = max(1, -(-rows // SHEET_ROWS))
    return [base] + [f"{base} ({i})" for i in range(2, count + 1)]


def test_xlsx_has_a_sheet_per_relation_with_the_selected_parents_children(
    db_url, registry, small_sheets, tmp_path
):
    path = tmp_path / "p.xlsx"
    run(registry, small_sheets, path, format="xlsx", relations=["tags"])
    parents = len(sql(db_url, PARENTS))
    tags = sql(db_url, TAGS_SQL)
    main, related = names("products", parents), names("Tags", len(tags))
    assert len(main) == 2 and len(related) == 3  # the sizes the test relies on

    wb = openpyxl.load_workbook(path, read_only=True)
    sheets = {ws.title: list(ws.iter_rows(values_only=True)) for ws in wb}
    assert list(sheets) == main + related
    assert sum(len(sheets[n]) - 1 for n in main) == parents
    got = [r for n in related for r in sheets[n][1:]]
    header = ("Product ID", "Tag ID", "Added at (UTC)", "Note", "Tag", "Slug")
    assert all(sheets[n][0] == header for n in related)
    assert [len(sheets[n]) - 1 for n in related[:2]] == [SHEET_ROWS, SHEET_ROWS]
    # Parent key order then child key; notes keep their true text (formulas stay text).
    assert [(r[0], r[1], r[3] or "", r[4], r[5]) for r in got] == [
        (p, t, n or "", name, slug) for p, t, n, name, slug in tags
    ]
    assert any(r[3].startswith("=") for r in got)

    cal = CalamineWorkbook.from_path(str(path))
    assert cal.sheet_names == list(sheets)
    rows = [cal.get_sheet_by_name(n).to_python() for n in related]
    assert sum(len(r) - 1 for r in rows) == len(tags)
    assert [(int(r[0]), int(r[1])) for s in rows for r in s[1:]] == [t[:2] for t in tags]


def test_the_count_and_the_result_include_the_related_rows(db_url, registry, settings):
    req = ExportRequest(module="products", format="xlsx", relations=["tags"], **SELECTION)
    plan = plan_export(req, registry, settings)
    want = len(sql(db_url, PARENTS)) + len(sql(db_url, TAGS_SQL))
    assert count_rows(db_url, plan) == want
    assert export(db_url, plan, io.BytesIO(), settings).rows == want


@pytest.mark.libreoffice
def test_libreoffice_reads_every_sheet(db_url, registry, small_sheets, tmp_path):
    path = tmp_path / "p.xlsx"
    run(registry, small_sheets, path, format="xlsx", relations=["tags"])
    sheets = libreoffice_sheets(path, tmp_path)
    tags, parents = sql(db_url, TAGS_SQL), len(sql(db_url, PARENTS))
    main, related = names("products", parents), names("Tags", len(tags))
    assert list(sheets) == main + related
    rows = [r for n in related for r in sheets[n][1:]]
    assert len(rows) == len(tags)
    want = [(p, t, newlines(name)) for p, t, _, name, _ in tags]
    assert [(int(r[0]), int(r[1]), newlines(r[4])) for r in rows] == want
    assert sum(len(sheets[n]) - 1 for n in main) == parents


def test_csv_is_a_zip_of_one_csv_per_table(db_url, registry, settings):
    data = run(registry, settings, format="csv", delimiter=";", bom=True, relations=["tags"])
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    assert archive.namelist() == ["products.csv", "Tags.csv"]
    tables = {}
    for name in archive.namelist():
        text = archive.read(name).decode("utf-8")
        assert text.startswith("\ufeff")
        tables[name] = list(csv.reader(io.StringIO(text[1:], newline=""), delimiter=";"))
    assert len(tables["products.csv"]) - 1 == len(sql(db_url, PARENTS))
    tags = sql(db_url, TAGS_SQL)
    got = tables["Tags.csv"]
    assert got[0] == ["Product ID", "Tag ID", "Added at (UTC)", "Note", "Tag", "Slug"]
    assert [(int(r[0]), int(r[1]), r[5]) for r in got[1:]] == [(p, t, s) for p, t, _, _, s in tags]
    # Formula neutralising applies to the related sheet as to the module's rows.
    notes = {r[3] for r in got[1:]}
    assert "'=SUM(A1:A9)" in notes and "=SUM(A1:A9)" not in notes


def test_no_relations_leaves_the_export_as_it_was(registry, settings):
    plain = run(registry, settings, format="xlsx")
    assert run(registry, settings, format="xlsx", relations=[]) == plain
    assert zipfile.ZipFile(io.BytesIO(plain)).read("xl/workbook.xml").count(b"<sheet ") == 1


@pytest.mark.parametrize(
    ("request_", "caller", "error"),
    [
        ({"relations": ["nope"]}, None, errors.UnknownRelation),
        ({"relations": ["tags", "tags"]}, None, errors.UnknownRelation),
        ({"relations": ["tags"], "gzip": True}, None, errors.InvalidOption),
        (
            {"relations": ["tags"]},
            Caller("u", frozenset({"products:read"})),
            errors.PermissionDenied,
        ),
    ],
)
def test_bad_relation_requests_are_refused(registry, settings, request_, caller, error):
    req = ExportRequest(module="products", **request_)
    with pytest.raises(error) as info:
        plan_export(req, registry, settings, *([caller] if caller else []))
    assert "relation" in info.value.message or "related" in info.value.message


def test_a_caller_with_the_relations_permission_gets_it(registry, settings):
    caller = Caller("u", frozenset({"products:read", "tags:read"}))
    req = ExportRequest(module="products", relations=["tags"])
    assert plan_export(req, registry, settings, caller).request.relations == ["tags"]


def test_a_selection_without_children_still_gets_the_sheet_with_its_header(registry, settings):
    # Product 4 has no tags (every fourth product has none).
    everything = {"filters": [], "from": None, "to": None}
    data = run(registry, settings, format="xlsx", relations=["tags"], ids=[4], **everything)
    wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    sheets = {ws.title: list(ws.iter_rows(values_only=True)) for ws in wb}
    assert [len(rows) for rows in sheets.values()] == [2, 1]
    assert sheets["Tags"][0][:2] == ("Product ID", "Tag ID")


NOTES_YAML = """
modules:
  tags:
    table: public.tags
    key: id
    date_column: created_at
    permission: tags:read
    columns: {id: ID, name: Name}
    relations:
      notes:
        table: public.rel_test_notes
        parent_key: tag_id
        key: id
        columns: {id: Note ID, tag_id: Tag, body: Body}
"""


@pytest.fixture
def notes_registry(db_url, tmp_path):
    """Tags with notes: a relation on a single-column key, no join, no permission of its own,
    notes not in key order within a tag."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS rel_test_notes;"
            "CREATE TABLE rel_test_notes (id integer PRIMARY KEY, tag_id integer NOT NULL,"
            " body text);"
            "INSERT INTO rel_test_notes SELECT g, 1 + (g * 37) % 60, '=note ' || g"
            " FROM generate_series(1, 2500) g"
        )
    path = tmp_path / "datasets.yaml"
    path.write_text(NOTES_YAML)
    from flows.control.registry import load_checked_registry

    yield load_checked_registry(path, db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DROP TABLE rel_test_notes")


def test_a_single_column_key_relation_reads_in_parent_then_key_order(
    db_url, notes_registry, settings
):
    req = ExportRequest(
        module="tags", relations=["notes"], filters=[{"column": "id", "op": "lte", "value": 40}]
    )
    plan = plan_export(req, notes_registry, settings, Caller("u", frozenset({"tags:read"})))
    buf = io.BytesIO()
    export(db_url, plan, buf, settings)
    archive = zipfile.ZipFile(buf)
    assert archive.namelist() == ["tags.csv", "notes.csv"]
    rows = list(csv.reader(io.StringIO(archive.read("notes.csv").decode(), newline="")))
    want = sql(
        db_url,
        "SELECT id, tag_id, body FROM rel_test_notes WHERE tag_id IN"
        " (SELECT id FROM tags WHERE id <= 40) ORDER BY tag_id, id",
    )
    assert 1000 < len(want) < 2500  # several chunks of children, some parents left out
    assert rows[0] == ["Note ID", "Tag", "Body"]
    assert [(int(r[0]), int(r[1]), r[2]) for r in rows[1:]] == [(i, t, "'" + b) for i, t, b in want]
