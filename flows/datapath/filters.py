"""Filters (conditions, `any`/`all` groups) and sorts of a request, validated into plan terms.

NULLs: `neq` and `not_in` keep the rows whose value is NULL ("not red" includes the rows
with no colour, as a spreadsheet's "does not equal" does); add `not_null` to drop them.
Every other comparison leaves NULLs out, as SQL does. `contains` and `starts_with` compare
the value's text form, case-insensitively, with `%` and `_` taken literally.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from flows.control import errors
from flows.control.registry import Dataset
from flows.control.settings import Settings
from flows.datapath import values as typed

Operator = Literal[
    "eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte", "between",
    "contains", "starts_with", "is_null", "not_null",
]  # fmt: skip
OPERATORS = get_args(Operator)
Direction = Literal["asc", "desc"]
Scalar = str | int | float | bool
NO_VALUE = ("is_null", "not_null")
TEXT_OPS = ("contains", "starts_with")
# Groups inside groups: deep enough for any condition a person writes, shallow enough that
# a generated request cannot make a deeply nested WHERE clause.
MAX_GROUP_DEPTH = 4
# Discriminator tags; a bad field's path leaves them out (`filters.0.any.1.op`).
GROUP_TAGS = ("Filter", "AnyOf", "AllOf")


class FilterSpec(BaseModel):
    """A condition on one allow-listed column (its JSON form)."""

    model_config = ConfigDict(extra="forbid", title="Filter")

    column: str
    op: Operator
    value: Scalar | list[Scalar] | None = Field(
        None,
        description="A list for `in` and `not_in`, two values for `between` (inclusive), "
        "none for `is_null` and `not_null`, else one value.",
    )


class AnyGroup(BaseModel):
    """Rows matching at least one of the filters or groups (OR)."""

    model_config = ConfigDict(extra="forbid", title="AnyOf")

    any: list[FilterItem] = Field(min_length=1)


class AllGroup(BaseModel):
    """Rows matching every one of the filters or groups (AND)."""

    model_config = ConfigDict(extra="forbid", title="AllOf")

    all: list[FilterItem] = Field(min_length=1)


def _tag(item: Any) -> str:
    keys = item if isinstance(item, dict) else vars(item) if isinstance(item, BaseModel) else {}
    return "AnyOf" if "any" in keys else "AllOf" if "all" in keys else "Filter"


FilterItem = Annotated[
    Annotated[FilterSpec, Tag("Filter")]
    | Annotated[AnyGroup, Tag("AnyOf")]
    | Annotated[AllGroup, Tag("AllOf")],
    Discriminator(_tag),
]
AnyGroup.model_rebuild()
AllGroup.model_rebuild()


class SortSpec(BaseModel):
    """One sort column (its JSON form); rows with no value come last ascending, first
    descending, as PostgreSQL orders them."""

    model_config = ConfigDict(extra="forbid", title="Sort")

    column: str
    direction: Direction = "asc"


class Condition(BaseModel):
    """One WHERE term: `column op values`, each value the text form of `pg_type`."""

    column: str
    pg_type: str
    op: Literal[
        "eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte",
        "contains", "starts_with", "is_null", "not_null",
    ]  # fmt: skip
    values: list[str]


class ConditionGroup(BaseModel):
    """Terms joined by OR (`any`) or AND."""

    any: bool
    terms: list[Condition | ConditionGroup]


class SortKey(BaseModel):
    """One ORDER BY column of a validated sort; values are cast to `pg_type`."""

    column: str
    pg_type: str
    desc: bool


def leaves(items: list, depth: int = 1) -> Iterator[tuple[FilterSpec, int]]:
    """Every filter in `items`, groups opened, with the depth of the group holding it."""
    for item in items:
        if isinstance(item, AnyGroup | AllGroup):
            yield from leaves(item.any if isinstance(item, AnyGroup) else item.all, depth + 1)
        else:
            yield item, depth


def check_filter_sizes(items: list, settings: Settings) -> None:
    """Filter count (inside groups too), group depth and value lists within the bounds."""
    found = list(leaves(items))
    if len(found) > settings.max_filters:
        raise errors.InvalidRequest(
            f"{len(found)} filters given (groups included), at most {settings.max_filters} "
            "allowed; combine conditions (an `in` list, a date range) or remove some"
        )
    depth = max((d for _, d in found), default=0)
    if depth > MAX_GROUP_DEPTH:
        raise errors.InvalidRequest(
            f"filter groups nest {depth - 1} deep, at most {MAX_GROUP_DEPTH - 1} allowed; "
            "flatten the any/all groups"
        )
    for f, _ in found:
        items = f.value if isinstance(f.value, list) else [f.value]
        if len(items) > settings.max_in_values:
            raise errors.InvalidFilterValue(
                f"filter on {f.column!r} has {len(items)} values, at most "
                f"{settings.max_in_values} allowed; split the export or use gte/lte"
            )
        for v in items:
            if len(str(v)) > settings.max_value_chars:
                raise errors.InvalidFilterValue(
                    f"a value for {f.column!r} is {len(str(v))} characters long, at most "
                    f"{settings.max_value_chars} allowed; use a shorter value"
                )


def plan_filters(ds: Dataset, items: list, tz: ZoneInfo) -> list[Condition | ConditionGroup]:
    """The WHERE terms for a request's filters, all of which must hold."""
    out: list[Condition | ConditionGroup] = []
    for item in items:
        if isinstance(item, FilterSpec):
            out += _terms(ds, item, tz)
        else:
            out.append(_node(ds, item, tz))
    return out


def _node(ds: Dataset, item: Any, tz: ZoneInfo) -> Condition | ConditionGroup:
    if isinstance(item, AnyGroup):
        return ConditionGroup(any=True, terms=[_node(ds, i, tz) for i in item.any])
    if isinstance(item, AllGroup):
        return ConditionGroup(any=False, terms=[_node(ds, i, tz) for i in item.all])
    terms = _terms(ds, item, tz)
    return terms[0] if len(terms) == 1 else ConditionGroup(any=False, terms=terms)


def _terms(ds: Dataset, f: FilterSpec, tz: ZoneInfo) -> list[Condition | ConditionGroup]:
    if not ds.filterable(f.column):
        raise errors.FilterNotAllowed(
            f"cannot filter on column {f.column!r} in module {ds.name!r}; "
            f"filter on one of: {', '.join(ds.columns)}"
        )
    ctype, col, op = ds.types[f.column], f.column, f.op
    cast = ctype.base_full

    def cond(op: str, values: list[str], pg_type: str = cast) -> Condition:
        return Condition(column=col, pg_type=pg_type, op=op, values=values)

    if op in NO_VALUE:
        if f.value is not None:
            raise errors.InvalidFilterValue(f"filter {op!r} on {col!r} takes no value; remove it")
        return [cond(op, [])]
    if f.value is None:
        raise errors.InvalidFilterValue(f"filter {op!r} on {col!r} needs a value")
    if op in TEXT_OPS:
        if isinstance(f.value, list):
            raise errors.InvalidFilterValue(f"filter {op!r} on {col!r} takes one value")
        return [cond(op, [str(f.value)], "text")]
    if op in ("in", "not_in"):
        if not isinstance(f.value, list) or not f.value:
            raise errors.InvalidFilterValue(f"filter {op!r} on {col!r} needs a non-empty list")
        items = [text for v in f.value for _, text in typed.check(col, ctype, v, "in", tz)]
        return [cond(op, items)]
    if op == "between":
        if not isinstance(f.value, list) or len(f.value) != 2:
            raise errors.InvalidFilterValue(
                f"filter 'between' on {col!r} needs two values, [low, high] (both included)"
            )
        low = typed.check(col, ctype, f.value[0], "gte", tz)
        terms = low + typed.check(col, ctype, f.value[1], "lte", tz)
        return [cond(o, [v]) for o, v in terms]
    if op == "neq":
        day = typed.check(col, ctype, f.value, "eq", tz)
        if len(day) == 1:
            return [cond("neq", [day[0][1]])]
        # A date on a timestamp column: outside that whole day, or no value.
        (_, start), (_, end) = day
        outside = [cond("lt", [start]), cond("gte", [end]), cond("is_null", [])]
        return [ConditionGroup(any=True, terms=outside)]
    return [cond(o, [v]) for o, v in typed.check(col, ctype, f.value, op, tz)]


def plan_sort(ds: Dataset, sort: list[SortSpec]) -> list[SortKey]:
    """The sort's columns, each allow-listed and once, in an order an index holds."""
    names = [s.column for s in sort]
    for n in names:
        if not ds.filterable(n):
            raise errors.SortNotAllowed(
                f"cannot sort on column {n!r} in module {ds.name!r}; "
                f"sort on one of: {', '.join(ds.columns)}"
            )
    if len(set(names)) != len(names):
        raise errors.SortNotAllowed(f"sort columns are listed twice: {names}")
    keys = [
        SortKey(column=s.column, pg_type=ds.types[s.column].base_full, desc=s.direction == "desc")
        for s in sort
    ]
    if keys and not any(_serves(index, keys) for index in ds.indexes):
        raise errors.SortNotIndexed(
            f"sorting {ds.name!r} by {', '.join(names)} needs an index to read the rows in "
            f"that order; ask an administrator to add one: {suggested_index(ds, keys)}"
        )
    return keys


def _serves(index: list[tuple[str, int]], keys: list[SortKey]) -> bool:
    """Whether a scan of `index`, forwards or backwards, gives the rows in `keys` order
    with NULLs where PostgreSQL puts them (last ascending, first descending)."""
    if [n for n, _ in index[: len(keys)]] != [k.column for k in keys]:
        return False
    # pg_index.indoption: bit 0 DESC, bit 1 NULLS FIRST; a backward scan flips both.
    pairs = list(zip(index, keys, strict=False))
    forward = all(bool(o & 1) == k.desc and bool(o & 2) == k.desc for (_, o), k in pairs)
    backward = all(bool(o & 1) != k.desc and bool(o & 2) != k.desc for (_, o), k in pairs)
    return forward or backward


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def suggested_index(ds: Dataset, keys: list[SortKey]) -> str:
    """The CREATE INDEX statement an administrator runs so that `keys` can be sorted on."""
    first = keys[0].desc
    parts = [_ident(k.column) + (" DESC" if k.desc != first else "") for k in keys]
    if ds.key not in [k.column for k in keys]:
        parts.append(_ident(ds.key) + (" DESC" if keys[-1].desc != first else ""))
    return f"CREATE INDEX ON {ds.relation or ds.table} ({', '.join(parts)})"
