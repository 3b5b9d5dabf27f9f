"""Related sheets on the data path: the child rows of the rows a plan exports, read in
keyset chunks on (parent key, child key) with the same Source, transform and writers.

A child row belongs to the export when its parent key is the key of a row the plan
selects: `parent_key IN (SELECT key FROM parent WHERE <the plan's conditions>)`, so the
ids, filters and date range that select the parents select the children. A composite
keyset bound travels as the JSON array of its values' text (`["17", "4"]`), so the
keyset loop, the checkpoint and the chunk tasks handle it as they handle a single key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from flows.control.registry import Column
from flows.control.relations import Relation
from flows.datapath.deadline import Deadline
from flows.datapath.request import ExportPlan
from flows.datapath.source import Source
from flows.datapath.sql import (
    Params,
    Query,
    probe_sql,
    quote_ident,
    relation,
    select_expr,
    where_terms,
)


@dataclass(frozen=True)
class RelationPlan:
    """One related sheet of a validated plan; duck-types the ExportPlan fields that the
    Source and the Transform read."""

    parent: ExportPlan
    spec: Relation

    @property
    def name(self) -> str:
        """The relation's name in the dataset file."""
        return self.spec.name

    @property
    def title(self) -> str:
        """The sheet's (and CSV member's) name."""
        return self.spec.title

    @property
    def columns(self) -> list[Column]:
        """The exported columns, child's first, then the joined ones."""
        return self.spec.output_columns()

    @property
    def request(self):
        """The parent's request: format, zone and writer options are the export's."""
        return self.parent.request

    @property
    def dataset(self):
        """The parent module (its formula neutralising rule applies to every sheet)."""
        return self.parent.dataset

    @property
    def timezone(self) -> str:
        """The zone timestamps are shown in."""
        return self.parent.timezone

    @property
    def statement_timeout_seconds(self) -> float:
        """Each read's bound, as the parent's."""
        return self.parent.statement_timeout_seconds


def relation_plans(plan: ExportPlan) -> list[RelationPlan]:
    """The related sheets the plan's request asks for, in the request's order."""
    specs = plan.dataset.relations
    return [RelationPlan(plan, specs[n]) for n in plan.request.relations or []]


def _q(name: str) -> str:
    return "r." + quote_ident(name)


def _terms(rp: RelationPlan, params: Params, lo: Any, hi: Any = None) -> list[str]:
    parent, spec = rp.parent, rp.spec
    # Unqualified, the conditions' columns resolve to the parent table of the subquery.
    inner = where_terms(parent.conditions, params)
    where = f" WHERE {' AND '.join(inner)}" if inner else ""
    key = quote_ident(parent.dataset.key)
    parents = f"SELECT {key} FROM {relation(parent.dataset)}{where}"
    terms = [f"{_q(spec.parent_key)} IN ({parents})"]
    row = "(" + ", ".join(_q(k) for k in spec.order) + ")"
    if lo is not None:
        terms.append(f"{row} > {_bound(rp, params, lo)}")
    if hi is not None:
        terms.append(f"{row} <= {_bound(rp, params, hi)}")
    return terms


def _bound(rp: RelationPlan, params: Params, text: str) -> str:
    ref = f"CAST({params.ref(str(text))} AS jsonb)"
    types = rp.spec.types
    items = (f"CAST({ref} ->> {i} AS {types[k].base_full})" for i, k in enumerate(rp.spec.order))
    return f"({', '.join(items)})"


def _rows(rp: RelationPlan) -> str:
    """The child rows with their joined columns (`join.<column>`), as `r`."""
    spec = rp.spec
    if spec.join is None:
        return f"{spec.relation} r"
    own = dict.fromkeys([*spec.order, *spec.columns])
    cols = [f"c.{quote_ident(n)}" for n in own]
    j = spec.join
    cols += [f"j.{quote_ident(n)} AS {quote_ident('join.' + n)}" for n in j.columns]
    # A LEFT join on a unique key: every child row once, with or without its lookup row.
    on = f"j.{quote_ident(j.key)} = c.{quote_ident(j.foreign_key)}"
    return f"(SELECT {', '.join(cols)} FROM {spec.relation} c LEFT JOIN {j.relation} j ON {on}) r"


def count_query(rp: RelationPlan) -> Query:
    """SELECT count(*) of the related rows."""
    params = Params()
    terms = _terms(rp, params, None)
    sql = f"SELECT count(*) AS n FROM {rp.spec.relation} r WHERE {' AND '.join(terms)}"
    return Query(sql, tuple(params.values))


def bound_query(rp: RelationPlan, after: Any, limit: int, until: Any = None) -> Query:
    """The last key (JSON text) and row count of the next `limit` related rows."""
    params = Params()
    terms = _terms(rp, params, after, until)
    order = rp.spec.order
    cols = ", ".join(f"{_q(k)} AS k{i}" for i, k in enumerate(order))
    by = ", ".join(_q(k) for k in order)
    inner = f"SELECT {cols} FROM {rp.spec.relation} r WHERE {' AND '.join(terms)} ORDER BY {by}"
    last = ", ".join(f"page.k{i}::text" for i in range(len(order)))
    desc = ", ".join(f"page.k{i} DESC" for i in range(len(order)))
    sql = probe_sql(inner, limit, f"json_build_array({last})::text", desc)
    return Query(sql, tuple(params.values))


def range_query(rp: RelationPlan, lo: Any, hi: Any) -> Query:
    """The related rows lo < (parent key, key) <= hi, in that order."""
    params = Params()
    terms = _terms(rp, params, lo, hi)
    cut = rp.request.format == "xlsx"
    cols = ", ".join(select_expr(c, cut) for c in rp.columns)
    by = ", ".join(_q(k) for k in rp.spec.order)
    sql = f"SELECT {cols} FROM {_rows(rp)} WHERE {' AND '.join(terms)} ORDER BY {by}"
    return Query(sql, tuple(params.values))


class RelationSource(Source):
    """A Source reading one related sheet's rows instead of the module's."""

    def __init__(self, url: str, plan: RelationPlan, deadline: Deadline | None = None) -> None:
        super().__init__(url, plan, deadline)  # type: ignore[arg-type]

    def count(self) -> int:
        """How many related rows the plan selects."""
        return int(self._fetch(count_query(self.plan)).column(0)[0].as_py())

    def next_bound(self, after: Any, limit: int, until: Any = None) -> tuple[str, int] | None:
        """(last key, rows) of the next chunk; None when no rows are left."""
        row = self._fetch(bound_query(self.plan, after, limit, until)).to_pylist()[0]
        return (row["hi"], row["n"]) if row["n"] else None

    def read_range(self, lo: Any, hi: Any) -> pa.Table:
        """The chunk lo < key <= hi as an Arrow table."""
        return self._fetch(range_query(self.plan, lo, hi), ordered=True)


def count_related(url: str, plan: ExportPlan, deadline: Deadline | None = None) -> int:
    """How many rows the plan's related sheets hold, all together."""
    total = 0
    for rp in relation_plans(plan):
        with RelationSource(url, rp, deadline) as src:
            total += src.count()
    return total
