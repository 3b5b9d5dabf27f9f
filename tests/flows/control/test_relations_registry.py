"""Related sheets in the dataset file: checked against the catalog at start, errors name
the module and the relation's field."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.control.errors import DatasetConfigError
from flows.control.registry import load_checked_registry

GOOD = """
modules:
  products:
    table: public.products
    key: id
    permission: products:read
    columns: {id: ID}
    relations:
      tags:
        label: Tags
        table: public.product_tags
        parent_key: product_id
        key: [product_id, tag_id]
        columns: {product_id: null, note: Note}
        sensitive: [added_by]
        join: {table: public.tags, foreign_key: tag_id, columns: {name: Tag}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "datasets.yaml"
    path.write_text(text)
    return path


def test_a_good_relation_gets_its_types_and_columns(tmp_path, db_url):
    rel = load_checked_registry(write(tmp_path, GOOD), db_url).modules["products"].relations
    tags = rel["tags"]
    assert (tags.name, tags.title, tags.order) == ("tags", "Tags", ["product_id", "tag_id"])
    cols = [(c.name, c.label, c.pg_type) for c in tags.output_columns()]
    assert cols == [("product_id", "product_id", "bigint"), ("note", "Note", "text"),
                    ("join.name", "Tag", "text")]  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("public.product_tags", "public.nope", "field 'relations.tags.table'"),
        ("note: Note", "nope: Note", "field 'relations.tags.columns.nope'"),
        ("[added_by]", "[gone]", "field 'relations.tags.sensitive.gone'"),
        ("[added_by]", "[note]", "sensitive columns also listed"),
        ("key: [product_id, tag_id]", "key: product_id", "field 'relations.tags.key'"),
        ("key: [product_id, tag_id]", "key: [tag_id, note]", "field 'relations.tags.key'"),
        ("parent_key: product_id", "parent_key: note", "field 'relations.tags.parent_key'"),
        ("parent_key: product_id", "parent_key: nope", "field 'relations.tags.parent_key'"),
        ("foreign_key: tag_id", "foreign_key: nope", "field 'relations.tags.join.foreign_key'"),
        ("{name: Tag}}", "{name: Tag}, key: name}", "field 'relations.tags.join.key'"),
        ("{name: Tag}}", "{nope: Tag}}", "field 'relations.tags.join.columns.nope'"),
        ("label: Tags", "label: Products", "sheet name 'Products' is used twice"),
        ("      tags:\n", "      Tags:\n", "use lower-case letters"),
        ("        label: Tags\n", "        label: Tags\n        colour: red\n", "colour"),
    ],
)
def test_a_bad_relation_fails_naming_its_field(tmp_path, db_url, old, new, expected):
    assert old in GOOD
    with pytest.raises(DatasetConfigError, match=expected.replace("[", r"\[")) as info:
        load_checked_registry(write(tmp_path, GOOD.replace(old, new)), db_url)
    assert "module 'products'" in info.value.message
