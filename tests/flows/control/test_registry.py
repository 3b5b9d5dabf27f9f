"""The dataset file: checked at start, errors name the module and the field."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from flows.control.errors import DatasetConfigError
from flows.control.registry import load_checked_registry, load_registry
from flows.control.settings import DEMO_DATASETS

GOOD = """
modules:
  tags:
    table: public.tags
    key: id
    permission: tags:read
    columns: {id: ID, name: null}
    sensitive: [internal_note]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "datasets.yaml"
    path.write_text(text)
    return path


def test_demo_registry_loads_with_types(registry):
    products = registry.modules["products"]
    assert products.types["price"].pg_type == "numeric(12,2)"
    assert products.types["price"].base_type == "numeric"
    assert products.column("weight_kg").label == "Weight (kg)"
    assert load_registry(DEMO_DATASETS).modules.keys() == {"tags", "products"}


def test_label_defaults_to_column_name(tmp_path, db_url):
    reg = load_checked_registry(write(tmp_path, GOOD), db_url)
    assert reg.modules["tags"].column("name").label == "name"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace("public.tags", "public.nope"), "module 'tags', field 'table'"),
        (GOOD.replace("key: id", "key: idx"), "module 'tags', field 'key'"),
        (GOOD.replace("name: null", "nam: null"), "module 'tags', field 'columns.nam'"),
        (GOOD.replace("[internal_note]", "[gone]"), "module 'tags', field 'sensitive.gone'"),
        (GOOD.replace("    permission: tags:read\n", ""), "module 'tags', field 'permission'"),
        (GOOD.replace("[internal_note]", "[name]"), "sensitive columns also listed"),
        (GOOD + "    colour: red\n", "field 'colour'"),
        ("modules: [1, 2]", "expected a mapping"),
        ("modules: {tags: {table: [unclosed", "cannot read dataset file"),
    ],
)
def test_malformed_file_fails_naming_module_and_field(tmp_path, db_url, text, expected):
    with pytest.raises(DatasetConfigError, match=expected.replace("[", r"\[")):
        load_checked_registry(write(tmp_path, text), db_url)


KEYS_SQL = """
DROP SCHEMA IF EXISTS "Reg Keys" CASCADE;
CREATE SCHEMA "Reg Keys";
SET search_path = "Reg Keys";
CREATE TABLE pk (id integer PRIMARY KEY, v text);
CREATE TABLE uniq (code text NOT NULL UNIQUE, v text);
CREATE TABLE nullable (code text UNIQUE, v text);
CREATE TABLE plain (id integer NOT NULL, v text);
CREATE TABLE composite (a integer, b integer, v text, PRIMARY KEY (a, b));
CREATE TABLE partial (id integer NOT NULL, v text);
CREATE UNIQUE INDEX ON partial (id) WHERE v IS NOT NULL;
CREATE TABLE expr (code text NOT NULL, v text);
CREATE UNIQUE INDEX ON expr (lower(code));
CREATE DOMAIN inner_d AS varchar(10) CHECK (VALUE <> '');
CREATE DOMAIN outer_d AS inner_d;
CREATE DOMAIN int_d AS integer;
CREATE DOMAIN int_dd AS int_d;
CREATE TYPE "Mood" AS ENUM ('ok', '=1+2', '=HYPERLINK("http://x")');
CREATE TABLE "Typed" (id integer PRIMARY KEY, n outer_d, i int_dd, m "Mood", c char(8),
                      "a.b" text);
"""


@pytest.fixture(scope="module")
def keyed(db_url):
    with psycopg.connect(db_url) as conn:
        conn.execute(KEYS_SQL)
    yield
    with psycopg.connect(db_url) as conn:
        conn.execute('DROP SCHEMA "Reg Keys" CASCADE')


def module(table: str, key: str, columns: str = "{v: null}") -> str:
    return (
        f"modules:\n  m:\n    table: '{table}'\n    key: {key}\n    permission: p\n"
        f"    columns: {columns}\n"
    )


@pytest.mark.parametrize(("table", "key"), [("pk", "id"), ("uniq", "code")])
def test_a_not_null_unique_key_is_accepted(tmp_path, db_url, keyed, table, key):
    reg = load_checked_registry(write(tmp_path, module(f'"Reg Keys".{table}', key)), db_url)
    assert reg.modules["m"].relation == f'"Reg Keys".{table}'


@pytest.mark.parametrize(
    ("table", "key", "why", "fix"),
    [
        ("nullable", "code", "is nullable", 'make "code" NOT NULL'),
        ("plain", "id", "no single-column unique index", 'unique index on "Reg Keys".plain'),
        ("composite", "a", "no single-column unique index", "unique index"),
        ("partial", "id", "no single-column unique index", "unique index"),
        ("expr", "code", "no single-column unique index", "unique index"),
    ],
)
def test_a_key_that_is_not_unique_and_not_null_is_refused(
    tmp_path, db_url, keyed, table, key, why, fix
):
    path = write(tmp_path, module(f'"Reg Keys".{table}', key))
    with pytest.raises(DatasetConfigError) as info:
        load_checked_registry(path, db_url)
    message = info.value.message
    assert message.startswith(f"{path}: module 'm', field 'key': ")
    assert why in message and fix in message and "or declare a different key" in message


def test_types_resolve_nested_domains_and_carry_enum_labels(tmp_path, db_url, keyed):
    columns = "{n: null, i: null, m: null, c: null, 'a.b': null}"
    path = write(tmp_path, module('"Reg Keys"."Typed"', "id", columns))
    ds = load_checked_registry(path, db_url).modules["m"]
    assert ds.relation == '"Reg Keys"."Typed"'
    n, i, m, c = (ds.types[k] for k in ("n", "i", "m", "c"))
    # A domain over a domain: the innermost base type, with the inner domain's modifier.
    assert (n.pg_type, n.base_type, n.base_full, n.category) == (
        '"Reg Keys".outer_d',
        "character varying",
        "character varying(10)",
        "S",
    )
    assert (i.base_type, i.base_full, i.category) == ("integer", "integer", "N")
    assert m.labels == ["ok", "=1+2", '=HYPERLINK("http://x")'] and m.free_text
    assert (c.pg_type, c.base_full) == ("character(8)", "character(8)")
    assert ds.types["a.b"].base_type == "text"


def test_a_table_name_that_cannot_parse_is_refused(tmp_path, db_url):
    with pytest.raises(DatasetConfigError, match="field 'table'"):
        load_checked_registry(write(tmp_path, module("a.b.c.d", "id")), db_url)


def test_a_view_is_refused_as_it_cannot_vouch_for_its_key(tmp_path, db_url, keyed):
    with psycopg.connect(db_url) as conn:
        conn.execute('CREATE OR REPLACE VIEW "Reg Keys".pk_view AS SELECT * FROM "Reg Keys".pk')
    path = write(tmp_path, module('"Reg Keys".pk_view', "id"))
    with pytest.raises(
        DatasetConfigError, match=r"field 'key'.*is a view.*declare a different key"
    ):
        load_checked_registry(path, db_url)
