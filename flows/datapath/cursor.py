"""Keyset reads in a requested sort order: the cursor is (sort values..., key).

A bound is the JSON text of the cursor's values as PostgreSQL prints them (null for NULL),
so the keyset loop, the chunk tasks and the checkpoint carry it as they carry a key. Rows
come in PostgreSQL's order: NULLs last ascending, first descending; the key breaks ties in
the direction of the last sort column, so that one index scan gives the whole order.

"After a cursor" is spelled out column by column: a row-value comparison `(a, k) > (x, y)`
is never true for a NULL `a`, and would lose those rows. Each query also carries the bounds
an index can use on the first sort column, so a chunk is an index range, not a scan from
the start; the probe reads the rows with and without a first value as two ranges.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flows.control.errors import SourceError
from flows.datapath import sql
from flows.datapath.request import ExportPlan
from flows.datapath.sql import Params, Query, quote_ident, relation, select_expr, where_terms


@dataclass(frozen=True)
class _Col:
    name: str
    pg_type: str
    desc: bool
    nullable: bool = True

    @property
    def ident(self) -> str:
        return quote_ident(self.name)


def _columns(plan: ExportPlan) -> list[_Col]:
    cols = [_Col(k.column, k.pg_type, k.desc) for k in plan.sort]
    ds = plan.dataset
    return [*cols, _Col(ds.key, ds.key_type, plan.sort[-1].desc, nullable=False)]


def _values(cols: list[_Col], bound: Any) -> list[str | None] | None:
    if bound is None:
        return None
    values = json.loads(bound) if isinstance(bound, str) else None
    if not isinstance(values, list) or len(values) != len(cols) or values[-1] is None:
        raise SourceError(f"sort position {bound!r} does not fit this export's sort")
    return values


def _order(cols: list[_Col], names: list[str] | None = None, reverse: bool = False) -> str:
    names = names or [c.ident for c in cols]
    parts = []
    for c, name in zip(cols, names, strict=True):
        desc = c.desc != reverse
        parts.append(f"{name} {'DESC NULLS FIRST' if desc else 'ASC NULLS LAST'}")
    return ", ".join(parts)


def _after(cols: list[_Col], values: list[str | None], params: Params) -> str:
    """Rows strictly after the cursor in sort order."""
    ors, equal = [], []
    for c, v in zip(cols, values, strict=True):
        if v is None:
            beyond = f"{c.ident} IS NOT NULL" if c.desc else None
            same = f"{c.ident} IS NULL"
        else:
            ref = params.bind(v, c.pg_type)
            beyond = f"{c.ident} {'<' if c.desc else '>'} {ref}"
            if c.nullable and not c.desc:
                beyond = f"({beyond} OR {c.ident} IS NULL)"
            same = f"{c.ident} = {ref}"
        if beyond is not None:
            ors.append(" AND ".join([*equal, beyond]))
        equal.append(same)
    return f"({' OR '.join(ors)})"


def _until(cols: list[_Col], values: list[str | None], params: Params) -> str:
    """Rows at or before the cursor in sort order."""
    ors, equal = [], []
    for c, v in zip(cols, values, strict=True):
        if v is None:
            before = None if c.desc else f"{c.ident} IS NOT NULL"
            same = f"{c.ident} IS NULL"
        else:
            ref = params.bind(v, c.pg_type)
            before = f"{c.ident} {'>' if c.desc else '<'} {ref}"
            if c.nullable and c.desc:
                before = f"({before} OR {c.ident} IS NULL)"
            same = f"{c.ident} = {ref}"
        if before is not None:
            ors.append(" AND ".join([*equal, before]))
        equal.append(same)
    ors.append(" AND ".join(equal))
    return f"({' OR '.join(ors)})"


def _terms(plan: ExportPlan, params: Params, lo: Any, hi: Any) -> list[str]:
    cols = _columns(plan)
    terms = where_terms(plan.conditions, params)
    low, high = _values(cols, lo), _values(cols, hi)
    if low is not None:
        terms.append(_after(cols, low, params))
    if high is not None:
        terms.append(_until(cols, high, params))
    return terms


def _first_ranges(plan: ExportPlan, params: Params, lo: Any, hi: Any) -> list[list[str]]:
    """Index conditions on the first sort column, one list per range of rows between the
    bounds: its non-NULL values, then (or first, descending) its NULLs; a range no row
    between the bounds can be in is left out."""
    cols = _columns(plan)
    first = cols[0]
    col = first.ident
    low, high = _values(cols, lo), _values(cols, hi)
    start = None if low is None else low[0]
    end = None if high is None else high[0]
    # The bound nearer the NULLs: asc, NULLs follow `end`; desc, they precede `start`.
    null_side, value_side = (start, end) if first.desc else (end, start)
    null_side_given = (low if first.desc else high) is not None
    value_side_given = (high if first.desc else low) is not None
    # Either way the values lie between the two bounds: up to the NULLs' side, down to
    # the other.
    values = [f"{col} IS NOT NULL"]
    if null_side_given and null_side is not None:
        values.append(f"{col} <= {params.bind(null_side, first.pg_type)}")
    if value_side_given and value_side is not None:
        values.append(f"{col} >= {params.bind(value_side, first.pg_type)}")
    nulls = [f"{col} IS NULL"]
    # No NULL row lies beyond a non-NULL bound on the NULLs' side.
    ranges = [] if null_side_given and null_side is not None else [nulls]
    # No non-NULL row lies beyond a NULL bound on the values' side.
    if not (value_side_given and value_side is None):
        ranges.insert(0 if not first.desc else len(ranges), values)
    return ranges


def bound_query(plan: ExportPlan, after: Any, limit: int, until: Any = None) -> Query:
    """The cursor (as JSON text) and row count of the next `limit` rows after `after`, up
    to `until` when given."""
    if not plan.sort:
        return sql.bound_query(plan, after, limit, until)
    cols = _columns(plan)
    params = Params()
    base = _terms(plan, params, after, until)
    names = [f"s{n}" for n in range(len(cols))]
    picked = ", ".join(f"{c.ident} AS {n}" for c, n in zip(cols, names, strict=True))
    parts = []
    for extra in _first_ranges(plan, params, after, until) or [["FALSE"]]:
        where = " AND ".join([*base, *extra])
        parts.append(
            f"(SELECT {picked} FROM {relation(plan.dataset)} WHERE {where}"
            f" ORDER BY {_order(cols)} LIMIT {int(limit)})"
        )
    inner = f"SELECT * FROM ({' UNION ALL '.join(parts)}) AS u ORDER BY {_order(cols, names)}"
    last = "json_build_array(" + ", ".join(f"{n}::text" for n in names) + ")::text"
    sql_text = sql.probe_sql(inner, limit, last, _order(cols, names, reverse=True))
    return Query(sql_text, tuple(params.values))


def range_query(plan: ExportPlan, lo: Any, hi: Any) -> Query:
    """The rows after `lo` up to `hi` (lo None: from the start), in the plan's order."""
    if not plan.sort:
        return sql.range_query(plan, lo, hi)
    params = Params()
    terms = _terms(plan, params, lo, hi)
    ranges = _first_ranges(plan, params, lo, hi)
    # One range: its conditions bound the index scan. Both: the bounds already say it all.
    if len(ranges) == 1:
        terms += ranges[0]
    elif not ranges:
        terms.append("FALSE")
    cut = plan.request.format == "xlsx"
    cols = ", ".join(select_expr(c, cut) for c in plan.columns)
    where = f" WHERE {' AND '.join(terms)}" if terms else ""
    table, order = relation(plan.dataset), _columns(plan)
    # Qualified: a bare name in ORDER BY means the output column, which may be the text
    # the value is read as.
    names = [f"{table}.{c.ident}" for c in order]
    text = f"SELECT {cols} FROM {table}{where} ORDER BY {_order(order, names)}"
    return Query(text, tuple(params.values))
