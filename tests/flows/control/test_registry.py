"""The dataset file: checked at start, errors name the module and the field."""

from __future__ import annotations

from pathlib import Path

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
