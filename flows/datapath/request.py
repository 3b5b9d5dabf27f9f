"""An export request, and its validation into a plan against the dataset registry."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flows.control import errors
from flows.control.registry import Column, Dataset, Registry
from flows.control.settings import Settings

FORMATS = ("csv", "xlsx")
OPERATORS = ("eq", "in", "gte", "lte", "contains")
_INTS = {"smallint", "integer", "bigint"}
_NUMBERS = {"numeric", "real", "double precision"}


class Filter(BaseModel):
    """A condition on one allow-listed column."""

    column: str
    op: str = "eq"
    value: Any


class ExportRequest(BaseModel):
    """What the user asked for, as the API and CLI receive it."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    module: str
    format: str = "csv"
    columns: list[str] | None = Field(None, description="Allow-listed columns; None: all.")
    ids: list[str | int] | None = Field(None, description="Scope: only these keys.")
    date_from: str | None = Field(None, alias="from")
    date_to: str | None = Field(None, alias="to")
    filters: list[Filter] = []
    timezone: str = "UTC"
    header: bool = True
    delimiter: str = ","
    bom: bool = False
    gzip: bool = False


class Condition(BaseModel):
    """One WHERE term: `column op values`, each value the text form of the column's type."""

    column: str
    pg_type: str
    op: Literal["eq", "in", "gte", "lte", "lt", "contains"]
    values: list[str]


class ExportPlan(BaseModel):
    """A validated request: everything the data path needs, nothing it must re-check."""

    request: ExportRequest
    dataset: Dataset
    columns: list[Column]
    conditions: list[Condition]

    @property
    def timezone(self) -> str:
        """The IANA zone timestamps are shown in."""
        return self.request.timezone


def parse_request(data: dict[str, Any]) -> ExportRequest:
    """The request from its JSON form; a malformed one is an InvalidRequest naming the field."""
    try:
        return ExportRequest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "request"
        raise errors.InvalidRequest(f"{where}: {err['msg']}") from None


@dataclass(frozen=True)
class Caller:
    """Who asks: a user id and the permissions their token carries (None: every
    permission, as for an operator at the command line)."""

    user_id: str
    permissions: frozenset[str] | None = None

    def may(self, permission: str) -> bool:
        """Whether the caller holds `permission`."""
        return self.permissions is None or permission in self.permissions


OPERATOR = Caller("operator")


def plan_export(
    req: ExportRequest, registry: Registry, settings: Settings, caller: Caller = OPERATOR
) -> ExportPlan:
    """Validate `req` against the registry, the settings' bounds and the caller's
    permissions; raises an InvalidRequest (or PermissionDenied) naming the bad value."""
    max_ids = settings.max_selected_ids
    ds = registry.get(req.module)
    if ds is None:
        known = ", ".join(sorted(registry.modules))
        raise errors.UnknownModule(f"unknown module {req.module!r}; choose one of: {known}")
    if not caller.may(ds.permission):
        raise errors.PermissionDenied(
            f"your token does not carry {ds.permission!r}, needed to export {req.module!r}"
        )
    if req.format not in FORMATS:
        raise errors.UnsupportedFormat(f"unsupported format {req.format!r}; use csv or xlsx")
    if len(req.delimiter) != 1 or req.delimiter in '"\r\n':
        raise errors.InvalidOption(
            f"delimiter {req.delimiter!r} must be one character other than a quote or line break"
        )
    tz = _zone(req.timezone)
    conditions = [_condition(ds, f) for f in req.filters]
    if req.ids is not None:
        conditions.append(_ids_condition(ds, req.ids, max_ids))
    conditions += _date_conditions(ds, req.date_from, req.date_to, tz)
    return ExportPlan(
        request=req, dataset=ds, columns=_columns(ds, req.columns), conditions=conditions
    )


def _columns(ds: Dataset, names: list[str] | None) -> list[Column]:
    if names is None:
        return [ds.column(n) for n in ds.columns]
    if not names:
        raise errors.EmptyColumns("the column list is empty; name at least one column or omit it")
    for n in names:
        if n not in ds.columns:
            why = "is sensitive" if n in ds.sensitive else "is not exportable"
            allowed = ", ".join(ds.columns)
            raise errors.ColumnNotAllowed(
                f"column {n!r} {why} in module {ds.name!r}; allowed: {allowed}"
            )
    if len(set(names)) != len(names):
        raise errors.ColumnNotAllowed(f"columns are listed twice: {names}")
    return [ds.column(n) for n in names]


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise errors.InvalidTimezone(
            f"unknown time zone {name!r}; use an IANA name such as UTC or Europe/Berlin"
        ) from None


def _condition(ds: Dataset, f: Filter) -> Condition:
    if not ds.filterable(f.column):
        raise errors.FilterNotAllowed(
            f"cannot filter on column {f.column!r} in module {ds.name!r}; "
            f"filter on one of: {', '.join(ds.columns)}"
        )
    if f.op not in OPERATORS:
        raise errors.UnknownOperator(
            f"unknown filter operator {f.op!r}; use one of: {', '.join(OPERATORS)}"
        )
    ctype = ds.types[f.column]
    pg_type = ctype.pg_type
    if f.op == "contains":
        return Condition(column=f.column, pg_type=pg_type, op="contains", values=[str(f.value)])
    raw = f.value if f.op == "in" else [f.value]
    if not isinstance(raw, list) or not raw:
        raise errors.InvalidFilterValue(f"filter 'in' on {f.column!r} needs a non-empty list")
    values = [_typed_text(f.column, ctype.base_type, v) for v in raw]
    return Condition(column=f.column, pg_type=pg_type, op=f.op, values=values)


def _ids_condition(ds: Dataset, ids: list, max_ids: int) -> Condition:
    if not ids:
        raise errors.InvalidRequest("the id list is empty; select at least one row or omit ids")
    if len(ids) > max_ids:
        raise errors.TooManyIds(
            f"{len(ids)} ids selected, at most {max_ids} allowed; export all rows with a filter"
        )
    values = [_typed_text(ds.key, ds.types[ds.key].base_type, v) for v in ids]
    return Condition(column=ds.key, pg_type=ds.key_type, op="in", values=values)


def _typed_text(column: str, pg_type: str, value: Any) -> str:
    """The value's text form, after checking it parses as the column's type."""
    text = str(value).strip()
    try:
        if pg_type in _INTS:
            int(text)
        elif pg_type in _NUMBERS:
            Decimal(text)
        elif pg_type == "boolean":
            if text.lower() not in ("true", "false", "t", "f", "1", "0"):
                raise ValueError(text)
        elif pg_type == "date":
            date.fromisoformat(text)
        elif pg_type.startswith("timestamp"):
            datetime.fromisoformat(text)
        elif pg_type == "uuid":
            uuid.UUID(text)
        else:
            return str(value)
    except (ValueError, InvalidOperation):
        raise errors.InvalidFilterValue(
            f"value {value!r} for column {column!r} is not a valid {pg_type}"
        ) from None
    return text


def _date_conditions(ds: Dataset, start: str | None, end: str | None, tz: ZoneInfo) -> list:
    if start is None and end is None:
        return []
    if ds.date_column is None:
        raise errors.InvalidDateRange(f"module {ds.name!r} has no date column to filter on")
    lo = _instant(start, tz, "from") if start else None
    hi = _instant(end, tz, "to") if end else None
    if lo and hi and lo >= hi:
        raise errors.InvalidDateRange(f"'from' ({start}) must be before 'to' ({end})")
    pg_type = ds.types[ds.date_column].pg_type
    out = []
    for op, bound in (("gte", lo), ("lt", hi)):
        if bound is not None:
            text = _bound_text(bound, ds.types[ds.date_column].base_type)
            out.append(Condition(column=ds.date_column, pg_type=pg_type, op=op, values=[text]))
    return out


def _instant(text: str, tz: ZoneInfo, which: str) -> datetime:
    """A date means its whole day in `tz`: `to` is exclusive of the following midnight."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text) + timedelta(days=1 if which == "to" else 0)
            return datetime.combine(day, time(), tz)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise errors.InvalidDate(
            f"'{which}' value {text!r} is not a date; use YYYY-MM-DD or an ISO 8601 date-time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def _bound_text(moment: datetime, pg_type: str) -> str:
    if pg_type == "date":
        return moment.date().isoformat()
    if pg_type == "timestamp without time zone":
        # Naive timestamps are taken to be UTC wall-clock.
        return moment.astimezone(ZoneInfo("UTC")).replace(tzinfo=None).isoformat()
    return moment.isoformat()
