"""The dataset registry: exportable modules declared in YAML, checked against the database."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from flows.control.catalog import INDEXES, KEY, Catalog, catalog, resolve
from flows.control.errors import DatasetConfigError
from flows.control.number_formats import FORMATTED_KINDS, ColumnSpec

# Type categories (pg_type.typcategory) whose text can start with any character:
# strings (text, varchar, char, name, citext), enums, arrays; plus JSON and XML.
FREE_TEXT_CATEGORIES = frozenset("SEA")
FREE_TEXT_TYPES = frozenset({"json", "jsonb", "xml"})


_STRING_TYPES = frozenset({"text", "character varying", "character", "name", "citext"})
_INTEGER_TYPES = frozenset({"smallint", "integer", "bigint"})
# What a front end needs to pick an input for a value: the category letter refined by type.
_KINDS = {"S": "text", "B": "boolean", "E": "enum"}
_TIMES = dict.fromkeys(("timestamp with time zone", "timestamp without time zone"), "timestamp")
_USER_KINDS = {"uuid": "uuid", "json": "json", "jsonb": "json"}


class ColumnType(BaseModel):
    """A column's type as the catalog states it."""

    pg_type: str = Field("text", description="Declared type with modifier: character(8).")
    base_type: str = Field("", description="Domains resolved, no modifier: character, numeric.")
    category: str = Field("", description="pg_type.typcategory of the base type.")
    base_full: str = Field("", description="Domains resolved, with modifier: character(8).")
    labels: list[str] | None = Field(None, description="An enum's labels, in sort order.")

    @model_validator(mode="after")
    def _derive(self) -> ColumnType:
        # Built by hand (not from the catalog): a built-in type names its own base.
        if not self.base_type:
            self.base_type = re.sub(r"\(.*?\)", "", self.pg_type)
        if not self.base_full:
            self.base_full = self.pg_type
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

    @property
    def kind(self) -> str:
        """text, integer, decimal, boolean, date, timestamp, uuid, json, enum or other."""
        if self.category == "N":
            return "integer" if self.base_type in _INTEGER_TYPES else "decimal"
        if self.category == "D":  # time of day is a D too, with no date to pick
            return "date" if self.base_type == "date" else _TIMES.get(self.base_type, "other")
        if self.category == "U":
            return _USER_KINDS.get(self.base_type, "other")
        return _KINDS.get(self.category, "other")


class Column(ColumnType):
    """One exportable column: its name, label and type (filled from the catalog)."""

    name: str
    label: str
    format: str | None = Field(None, description="XLSX number format code, from the dataset.")


class Dataset(BaseModel):
    """One exportable module."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    # Display only: left out of dumps, so plan fingerprints (and resumable chunks) keep.
    label: str | None = Field(None, exclude=True, description="Shown to users; else the name.")
    table: str
    relation: str = Field(
        "", description="The table as the catalog names it, quoted; set at check."
    )
    key: str
    date_column: str | None = None
    permission: str
    neutralise_formulas: bool = True
    columns: dict[str, str | ColumnSpec | None] = Field(min_length=1)
    sensitive: list[str] = []
    types: dict[str, ColumnType] = {}
    relations: dict[str, Relation] = Field({}, description="Related sheets, by name.")

    @field_validator("columns", mode="before")
    @classmethod
    def _long_forms(cls, value: object) -> object:
        # Checked here, so that a mistake is named by its key, not by the union's first arm.
        if isinstance(value, dict):
            return {
                k: ColumnSpec.parse(k, v) if isinstance(v, dict) else v for k, v in value.items()
            }
        return value

    # The key columns of each usable btree index, (name, pg_index.indoption) in index
    # order, for sorts; from the catalog at check, left out of dumps (and fingerprints).
    indexes: list[list[tuple[str, int]]] = Field([], exclude=True)

    @model_validator(mode="after")
    def _sensitive_not_exported(self) -> Dataset:
        leaked = sorted(set(self.sensitive) & set(self.columns))
        if leaked:
            raise ValueError(f"sensitive columns also listed in columns: {', '.join(leaked)}")
        name_relations(self.name, self.relations)
        return self

    def column(self, name: str) -> Column:
        """The allow-listed column `name` with its label and type."""
        entry = self.columns[name]
        spec = entry if isinstance(entry, ColumnSpec) else ColumnSpec(label=entry)
        return Column(
            name=name,
            label=spec.label or name,
            format=spec.number_format,
            **self.types[name].model_dump(),
        )

    @property
    def key_type(self) -> str:
        """The type the key's bound values are cast to: its base type with modifier."""
        return self.types[self.key].base_full

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
            body = {**(body or {}), "name": name, "relation": "", "types": {}}
            modules[name] = Dataset.model_validate(body)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "module"
            raise DatasetConfigError(
                f"{path}: module '{name}', field '{field}': {err['msg']}"
            ) from exc
    return Registry(modules=modules)


def column_types(rows: list[tuple]) -> dict[str, ColumnType]:
    """Column name → type, from catalog.COLUMNS rows."""
    return {
        name: ColumnType(pg_type=full, base_type=base, category=cat, base_full=bf, labels=labels)
        for name, full, base, cat, bf, labels in rows
    }


def _fail(path: Path | str, ds: Dataset, field: str, message: str) -> DatasetConfigError:
    return DatasetConfigError(f"{path}: module '{ds.name}', field '{field}': {message}")


def _check_key(cat: Catalog, rel: int, kind: str, ds: Dataset, path: Path | str) -> None:
    not_null, unique = cat.row(KEY, rel, ds.key) or (False, False)
    if not_null and unique:
        return
    if kind in ("v", "f"):
        # A view (or foreign table) can hold no index: nothing vouches for its key.
        what = "a view" if kind == "v" else "a foreign table"
        raise _fail(
            path,
            ds,
            "key",
            f"{ds.relation} is {what}, whose key PostgreSQL cannot vouch is unique and not "
            "null; export its table, or a materialized view with a unique index on "
            f"({ds.key}), or declare a different key",
        )
    col = '"' + ds.key.replace('"', '""') + '"'
    why = " and ".join(
        ([] if not_null else ["is nullable"])
        + ([] if unique else ["has no single-column unique index"])
    )
    fix = " and ".join(
        ([] if not_null else [f"make {col} NOT NULL"])
        + ([] if unique else [f"add a unique index on {ds.relation} ({col})"])
    )
    raise _fail(
        path,
        ds,
        "key",
        f"key column {ds.key!r} {why}; keyset paging needs a NOT NULL, unique key: "
        f"{fix}, or declare a different key",
    )


def check_registry(registry: Registry, url: str, path: Path | str = "datasets") -> Registry:
    """Resolve each table, fill column types from the catalog and check the key; fail on a
    table or column that does not exist, or a key that is not NOT NULL and unique."""
    with catalog(url) as cat:
        for ds in registry.modules.values():
            fail = partial(_fail, path, ds)
            rel, ds.relation, kind, rows = resolve(cat, ds.table, fail)
            types = column_types(rows)
            named = [("key", ds.key), ("date_column", ds.date_column)]
            named += [(f"columns.{c}", c) for c in ds.columns]
            named += [(f"sensitive.{c}", c) for c in ds.sensitive]
            for field, col in named:
                if col is not None and col not in types:
                    raise _fail(path, ds, field, f"column {col!r} does not exist in {ds.table}")
            ds.types = types
            indexes = cat.rows(INDEXES, rel)
            ds.indexes = [list(zip(names, opts, strict=True)) for names, opts in indexes]
            _check_key(cat, rel, kind, ds, path)
            for name, entry in ds.columns.items():
                if (
                    isinstance(entry, ColumnSpec)
                    and entry.format
                    and (types[name].kind not in FORMATTED_KINDS)
                ):
                    raise _fail(
                        path,
                        ds,
                        f"columns.{name}.format",
                        f"{name!r} is a {types[name].pg_type}: a number format applies to "
                        "number, date and timestamp columns only; remove it",
                    )
            check_relations(cat, ds, path)
    return registry


# Relations build on Column and ColumnType; imported last, as they import this module.
from flows.control.relations import Relation, check_relations, name_relations  # noqa: E402

Dataset.model_rebuild()
Registry.model_rebuild()


def load_checked_registry(path: Path, url: str) -> Registry:
    """Load the dataset file and check it against the database."""
    return check_registry(load_registry(path), url, path)
