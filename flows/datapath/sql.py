"""A validated plan as SQL text: the count, the keyset probe and the chunk read."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from flows.control.registry import Column, Dataset
from flows.datapath.filters import Condition, ConditionGroup
from flows.datapath.request import ExportPlan

# Types Arrow and Polars carry natively; everything else (numeric, uuid, json, arrays,
# intervals, enums, ...) is read as its PostgreSQL text form so it exports faithfully.
NATIVE_TYPES = {
    "smallint", "integer", "bigint", "real", "double precision", "boolean",
    "text", "character varying", "character", "date", "time without time zone",
    "timestamp with time zone", "timestamp without time zone",
}  # fmt: skip
_SQL_OPS = {"eq": "=", "neq": "IS DISTINCT FROM", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_NULL_TESTS = {"is_null": "IS NULL", "not_null": "IS NOT NULL"}


# XLSX cells hold at most 32,767 characters and the writer cuts longer ones itself. A
# longer text is cut here already, keeping one character more than a cell holds so that
# the writer still sees it is too long and writes exactly what it would have.
XLSX_CUT_CHARS = 32_768
# What the XLSX writer drops before measuring (XML cannot hold it): dropped here too in
# a text about to be cut, so that the cut keeps as many characters as the writer would.
_XML_INVALID = r"[\x01-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]"
_LENGTH_MODIFIER = re.compile(r"^(?:character varying|character|bit varying|bit)\((\d+)\)$")


def quote_ident(name: str) -> str:
    """One double-quoted SQL identifier (a dot is part of the name, not a separator)."""
    return '"' + name.replace('"', '""') + '"'


def relation(ds: Dataset) -> str:
    """The table as check_registry resolved it; the same text in every query."""
    return ds.relation or ".".join(quote_ident(p) for p in ds.table.split("."))


def _needs_cut(column: Column) -> bool:
    if not column.free_text or column.labels is not None:
        return False
    bounded = _LENGTH_MODIFIER.match(column.base_full)
    return not bounded or int(bounded.group(1)) > XLSX_CUT_CHARS


def select_expr(column: Column, cut: bool = False) -> str:
    """How a column is read so that Arrow gets a faithful value; `cut`: free text longer
    than an XLSX cell arrives cut to what the writer keeps of it."""
    col = quote_ident(column.name)
    is_domain = column.pg_type != column.base_full
    if column.base_type.endswith("[]"):
        value = f"array_to_json({col})::text"
    elif column.base_type in NATIVE_TYPES:
        # A domain over a native type is read as its base, so that a number stays a number.
        value = f"CAST({col} AS {column.base_full})" if is_domain else col
    else:
        value = f"{col}::text"
    if cut and _needs_cut(column):
        # The first character stays as it is: formula neutralising looks at it.
        cleaned = f"regexp_replace(substr({value}, 2), '{_XML_INVALID}', '', 'g')"
        value = (
            f"CASE WHEN length({value}) > {XLSX_CUT_CHARS} "
            f"THEN left({value}, 1) || left({cleaned}, {XLSX_CUT_CHARS}) ELSE {value} END"
        )
    return col if value == col else f"{value} AS {col}"


@dataclass(frozen=True)
class Query:
    """SQL text and the values it reads through `current_setting('exportflow.pN')`."""

    sql: str
    params: tuple[str, ...]

    @property
    def setup(self) -> str:
        """The statement that binds the values ($1, $2, ...) for this transaction."""
        calls = (
            f"set_config('exportflow.p{n}', ${n}, true)" for n in range(1, len(self.params) + 1)
        )
        return f"SELECT {', '.join(calls)}"


class Params:
    """Values are bound, never written into SQL. They are bound to transaction-local
    settings rather than to the data query itself: PostgreSQL only streams a query with
    COPY when it has no parameters, and COPY reads twice as fast."""

    def __init__(self) -> None:
        self.values: list[str] = []

    def ref(self, value: str) -> str:
        self.values.append(value)
        return f"current_setting('exportflow.p{len(self.values)}')"

    def bind(self, value: str, pg_type: str) -> str:
        return f"CAST({self.ref(value)} AS {pg_type})"

    def bind_list(self, values: list[str], pg_type: str) -> str:
        items = f"jsonb_array_elements_text(CAST({self.ref(json.dumps(values))} AS jsonb))"
        return f"ARRAY(SELECT CAST(v AS {pg_type}) FROM {items} AS v)"


def _like(value: str) -> str:
    """`value` as a LIKE pattern matching itself: `%`, `_` and the escape taken literally."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _term(c: Condition | ConditionGroup, params: Params) -> str:
    if isinstance(c, ConditionGroup):
        joined = (" OR " if c.any else " AND ").join(_term(t, params) for t in c.terms)
        return f"({joined})"
    col = quote_ident(c.column)
    if c.op in _NULL_TESTS:
        return f"{col} {_NULL_TESTS[c.op]}"
    if c.op == "contains":
        return (
            f"{col}::text ILIKE '%' || {params.bind(_like(c.values[0]), 'text')} || '%' ESCAPE '\\'"
        )
    if c.op == "starts_with":
        return f"{col}::text ILIKE {params.bind(_like(c.values[0]), 'text')} || '%' ESCAPE '\\'"
    if c.op == "in":
        return f"{col} = ANY({params.bind_list(c.values, c.pg_type)})"
    if c.op == "not_in":
        # IS NOT TRUE: a NULL value is not in the list (see filters.py on NULLs).
        return f"({col} = ANY({params.bind_list(c.values, c.pg_type)})) IS NOT TRUE"
    return f"{col} {_SQL_OPS[c.op]} {params.bind(c.values[0], c.pg_type)}"


def where_terms(conditions: list[Condition | ConditionGroup], params: Params) -> list[str]:
    """The plan's conditions as SQL terms, all of which must hold."""
    return [_term(c, params) for c in conditions]


def count_query(plan: ExportPlan) -> Query:
    """SELECT count(*) for the plan's rows."""
    params = Params()
    terms = where_terms(plan.conditions, params)
    where = f" WHERE {' AND '.join(terms)}" if terms else ""
    sql = f"SELECT count(*) AS n FROM {relation(plan.dataset)}{where}"
    return Query(sql, tuple(params.values))


def _keyset_terms(plan: ExportPlan, params: Params, lo: Any, hi: Any = None) -> list[str]:
    ds = plan.dataset
    terms = where_terms(plan.conditions, params)
    key = quote_ident(ds.key)
    if lo is not None:
        terms.append(f"{key} > {params.bind(str(lo), ds.key_type)}")
    if hi is not None:
        terms.append(f"{key} <= {params.bind(str(hi), ds.key_type)}")
    return terms


def probe_sql(inner: str, limit: int, last: str, reverse: str) -> str:
    """(hi, n) of the next chunk of `inner`, a SELECT in chunk order without LIMIT: `last`
    (text, over the columns of a row named `page`) of its `limit`-th row and n = `limit`,
    or, when fewer rows remain, of its last row and their count."""
    # A full chunk's last row is the limit-th: read straight off the index, nothing
    # materialised or sorted (a fifth of the cost). Its OFFSET counts from the chunk's
    # keyset bound, not the table's start: the chunk's own entries, as LIMIT reads them.
    # The page is only built, counted and sorted on `reverse` (top-1, on the raw values)
    # for the last, short chunk: PostgreSQL runs a subquery only when coalesce reaches it.
    limit = int(limit)
    return (
        f"WITH page AS ({inner} LIMIT {limit}), tip AS ({inner} OFFSET {limit - 1} LIMIT 1)"
        f" SELECT coalesce((SELECT {last} FROM tip AS page), (SELECT {last} FROM"
        f" (SELECT * FROM page ORDER BY {reverse} LIMIT 1) AS page)) AS hi,"
        f" coalesce((SELECT {limit}::bigint FROM tip), (SELECT count(*) FROM page)) AS n"
    )


def bound_query(plan: ExportPlan, after: Any, limit: int, until: Any = None) -> Query:
    """The last key and row count of the next `limit` rows after `after`, up to `until`
    when given (index only)."""
    params = Params()
    terms = _keyset_terms(plan, params, after, until)
    key = quote_ident(plan.dataset.key)
    where = f" WHERE {' AND '.join(terms)}" if terms else ""
    inner = f"SELECT {key} AS k FROM {relation(plan.dataset)}{where} ORDER BY {key}"
    # Not max(k): some key types (uuid) have no max aggregate, all have an ordering.
    return Query(probe_sql(inner, limit, "page.k::text", "page.k DESC"), tuple(params.values))


def range_query(plan: ExportPlan, lo: Any, hi: Any) -> Query:
    """The rows with lo < key <= hi (lo None: from the start), in key order."""
    ds = plan.dataset
    params = Params()
    terms = _keyset_terms(plan, params, lo, hi)
    key = quote_ident(ds.key)
    cut = plan.request.format == "xlsx"
    cols = [select_expr(c, cut) for c in plan.columns]
    where = f" WHERE {' AND '.join(terms)}" if terms else ""
    sql = f"SELECT {', '.join(cols)} FROM {relation(ds)}{where} ORDER BY {key}"
    return Query(sql, tuple(params.values))
