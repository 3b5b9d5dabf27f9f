"""Related sheets of a module: child rows (through a link table, optionally joined to a
lookup table) exported beside the module's own rows, declared in the dataset file."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flows.control.catalog import KEY, NULLABLE, UNIQUE, Catalog, resolve
from flows.control.errors import DatasetConfigError
from flows.control.registry import Column, ColumnType, column_types

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


class Join(BaseModel):
    """A lookup table joined to each child row (at most one match: `key` is unique)."""

    model_config = ConfigDict(extra="forbid")

    table: str
    foreign_key: str = Field(description="The child column holding the lookup table's key.")
    key: str = Field("id", description="The lookup table's unique, NOT NULL column.")
    columns: dict[str, str | None] = Field(min_length=1)
    relation: str = ""
    types: dict[str, ColumnType] = {}


class Relation(BaseModel):
    """One related sheet: the child table's rows whose `parent_key` is an exported key."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    label: str | None = Field(None, description="Sheet (and CSV member) name; else the name.")
    table: str
    relation: str = ""
    parent_key: str
    key: list[str] = Field(min_length=1, description="The child's unique key (composite allowed).")
    permission: str | None = Field(None, description="Needed besides the module's; None: none.")
    columns: dict[str, str | None] = Field(min_length=1)
    sensitive: list[str] = []
    join: Join | None = None
    types: dict[str, ColumnType] = {}

    @field_validator("key", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _sensitive_not_exported(self) -> Relation:
        leaked = sorted(set(self.sensitive) & set(self.columns))
        if leaked:
            raise ValueError(f"sensitive columns also listed in columns: {', '.join(leaked)}")
        return self

    @property
    def title(self) -> str:
        """The sheet's name."""
        return self.label or self.name

    @property
    def order(self) -> list[str]:
        """The keyset order: parent key first (children grouped by parent), then the key."""
        return [self.parent_key] + [k for k in self.key if k != self.parent_key]

    def output_columns(self) -> list[Column]:
        """The exported columns: the child's, then the joined ones (named `join.<column>`)."""
        out = [
            Column(name=n, label=label or n, **self.types[n].model_dump())
            for n, label in self.columns.items()
        ]
        if self.join is not None:
            j = self.join
            out += [
                Column(name=f"join.{n}", label=label or n, **j.types[n].model_dump())
                for n, label in j.columns.items()
            ]
        return out


def name_relations(module: str, relations: dict[str, Relation]) -> None:
    """Give each relation its name and check that names and sheet titles are usable."""
    titles = {module.lower()}
    for name, rel in relations.items():
        if not _NAME.match(name):
            raise ValueError(f"relation name {name!r}: use lower-case letters, digits and _")
        rel.name = name
        if rel.title.lower() in titles:
            raise ValueError(f"relation {name!r}: sheet name {rel.title!r} is used twice")
        titles.add(rel.title.lower())


def _fail(path, module: str, where: str, message: str) -> DatasetConfigError:
    return DatasetConfigError(f"{path}: module '{module}', field '{where}': {message}")


def _resolve(cat: Catalog, table: str, fail) -> tuple[int, str, dict[str, ColumnType]]:
    oid, quoted, _, rows = resolve(cat, table, fail)
    return oid, quoted, column_types(rows)


def check_relations(cat: Catalog, ds, path) -> None:
    """Resolve every relation of `ds` against the catalog: tables and columns exist, the
    child key is NOT NULL and unique, `parent_key` compares with the module's key, and a
    join matches at most one row."""
    for rel in ds.relations.values():
        where = f"relations.{rel.name}"

        def fail(field: str, msg: str, where=where) -> DatasetConfigError:
            return _fail(path, ds.name, f"{where}.{field}", msg)

        oid, rel.relation, types = _resolve(cat, rel.table, fail)
        named = [("parent_key", rel.parent_key)] + [("key", k) for k in rel.key]
        named += [(f"columns.{c}", c) for c in rel.columns]
        named += [(f"sensitive.{c}", c) for c in rel.sensitive]
        if rel.join is not None:
            named.append(("join.foreign_key", rel.join.foreign_key))
        for field, col in named:
            if col not in types:
                raise fail(field, f"column {col!r} does not exist in {rel.table}")
        rel.types = types
        parent = ds.types[ds.key]
        if types[rel.parent_key].category != parent.category:
            raise fail(
                "parent_key",
                f"{rel.parent_key!r} is a {types[rel.parent_key].pg_type}, the module's key "
                f"{ds.key!r} a {parent.pg_type}; name the column that holds the module's key",
            )
        _check_child_key(cat, oid, rel, fail)
        if rel.join is not None:
            _check_join(cat, rel.join, fail)


def _check_child_key(cat: Catalog, oid: int, rel: Relation, fail) -> None:
    cols = sorted(set(rel.key))
    (nulls,) = cat.row(NULLABLE, oid, cols) or (None,)
    (unique,) = cat.row(UNIQUE, oid, len(cols), cols) or (False,)
    if nulls or not unique or len(cols) != len(rel.key):
        raise fail(
            "key",
            f"key {rel.key} of {rel.relation} must be NOT NULL and have a unique index on "
            f"exactly these columns (keyset paging needs it); nullable: {nulls or 'none'}, "
            f"unique index: {'yes' if unique else 'no'}",
        )


def _check_join(cat: Catalog, join: Join, fail) -> None:
    oid, join.relation, types = _resolve(cat, join.table, lambda f, m: fail(f"join.{f}", m))
    for field, col in [("join.key", join.key)] + [(f"join.columns.{c}", c) for c in join.columns]:
        if col not in types:
            raise fail(field, f"column {col!r} does not exist in {join.table}")
    join.types = types
    _, unique = cat.row(KEY, oid, join.key) or (False, False)
    if not unique:
        raise fail(
            "join.key",
            f"{join.key!r} of {join.relation} has no single-column unique index; a join "
            "must match at most one row, or rows would repeat",
        )
