"""The dataset registry: exportable modules declared in YAML, checked against the database."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flows.control.database import pg_connect
from flows.control.errors import DatasetConfigError

# Type categories (pg_type.typcategory) whose text can start with any character:
# strings (text, varchar, char, name, citext), enums, arrays; plus JSON and XML.
FREE_TEXT_CATEGORIES = frozenset("SEA")
FREE_TEXT_TYPES = frozenset({"json", "jsonb", "xml"})


_STRING_TYPES = frozenset({"text", "character varying", "character", "name", "citext"})


class ColumnType(BaseModel):
    """A column's type as the catalog states it."""

    pg_type: str = Field("text", description="Declared type with modifier: character(8).")
    base_type: str = Field("", description="Domains resolved, no modifier: character, numeric.")
    category: str = Field("", description="pg_type.typcategory of the base type.")

    @model_validator(mode="after")
    def _derive(self) -> ColumnType:
        # Built by hand (not from the catalog): a built-in type names its own base.
        if not self.base_type:
            self.base_type = re.sub(r"\(.*?\)", "", self.pg_type)
        if not self.category:
            self.category = (
                "A"
                if self.base_type.endswith("[]")
                else ("S" if self.base_type in _STRING_TYPES else "U")
            )
        return self

    @property
    def free_text(self) -> bool:
        """Whether its values are written as text that may start with any character
        (and so may start a formula in a spreadsheet)."""
        return self.category in FREE_TEXT_CATEGORIES or self.base_type in FREE_TEXT_TYPES


class Column(ColumnType):
    """One exportable column: its name, label and type (filled from the catalog)."""

    name: str
    label: str


class Dataset(BaseModel):
    """One exportable module."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    table: str
    key: str
    date_column: str | None = None
    permission: str
    neutralise_formulas: bool = True
    columns: dict[str, str | None] = Field(min_length=1)
    sensitive: list[str] = []
    types: dict[str, ColumnType] = {}

    @model_validator(mode="after")
    def _sensitive_not_exported(self) -> Dataset:
        leaked = sorted(set(self.sensitive) & set(self.columns))
        if leaked:
            raise ValueError(f"sensitive columns also listed in columns: {', '.join(leaked)}")
        return self

    def column(self, name: str) -> Column:
        """The allow-listed column `name` with its label and type."""
        return Column(name=name, label=self.columns[name] or name, **self.types[name].model_dump())

    @property
    def key_type(self) -> str:
        """The key column's declared PostgreSQL type."""
        return self.types[self.key].pg_type

    def filterable(self, name: str) -> bool:
        """Whether requests may filter on `name` (allow-listed, or the key itself)."""
        return name in self.columns or name == self.key


class Registry(BaseModel):
    """All modules, by name."""

    modules: dict[str, Dataset]

    def get(self, name: str) -> Dataset | None:
        """The module `name`, if declared."""
        return self.modules.get(name)


def load_registry(path: Path) -> Registry:
    """Parse and shape-check the dataset file; errors name the module and field."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetConfigError(f"cannot read dataset file {path}: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("modules"), dict):
        raise DatasetConfigError(f"{path}: expected a mapping with a 'modules' mapping")
    modules = {}
    for name, body in raw["modules"].items():
        try:
            modules[name] = Dataset.model_validate({**(body or {}), "name": name, "types": {}})
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "module"
            raise DatasetConfigError(
                f"{path}: module '{name}', field '{field}': {err['msg']}"
            ) from exc
    return Registry(modules=modules)


# Domains resolve to their base type (one level is enough: a domain over a domain
# stores the innermost base type in typbasetype).
_CATALOG = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod),
       format_type(coalesce(nullif(t.typbasetype, 0), t.oid), NULL), b.typcategory
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type b ON b.oid = coalesce(nullif(t.typbasetype, 0), t.oid)
WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
"""


def check_registry(registry: Registry, url: str, path: Path | str = "datasets") -> Registry:
    """Fill column types from the catalog; fail on a table or column that does not exist."""
    with pg_connect(url) as conn:
        for ds in registry.modules.values():
            if conn.execute("SELECT to_regclass(%s)", (ds.table,)).fetchone()[0] is None:
                raise DatasetConfigError(
                    f"{path}: module '{ds.name}', field 'table': table {ds.table} does not exist"
                )
            types = {
                name: ColumnType(pg_type=full, base_type=base, category=category)
                for name, full, base, category in conn.execute(_CATALOG, (ds.table,))
            }
            named = [("key", ds.key), ("date_column", ds.date_column)]
            named += [(f"columns.{c}", c) for c in ds.columns]
            named += [(f"sensitive.{c}", c) for c in ds.sensitive]
            for field, col in named:
                if col is not None and col not in types:
                    raise DatasetConfigError(
                        f"{path}: module '{ds.name}', field '{field}': column {col!r} "
                        f"does not exist in {ds.table}"
                    )
            ds.types = types
    return registry


def load_checked_registry(path: Path, url: str) -> Registry:
    """Load the dataset file and check it against the database."""
    return check_registry(load_registry(path), url, path)
