"""An export request, and its validation into a plan against the dataset registry.

Time zones, one rule. A `timestamptz` is an instant: it is shown as wall-clock time in
the request's zone. A `timestamp` (without time zone) is a wall-clock value: it is shown
as stored, never converted. Date-range bounds and filter values on either kind: a value
without an offset is wall-clock time in the request's zone; a value with an offset (or
Z) is that instant, which on a `timestamp` column means its wall-clock time in the
request's zone. A date means its whole day in the request's zone. A zone the engine
cannot convert to is refused at planning (invalid_timezone).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flows.control import errors
from flows.control.registry import Column, Dataset, Registry
from flows.control.settings import Settings
from flows.datapath import values as typed
from flows.datapath.access import OPERATOR, Caller, check_relations, may_export
from flows.datapath.filters import (
    GROUP_TAGS,
    OPERATORS,
    Condition,
    ConditionGroup,
    FilterItem,
    FilterSpec,
    SortKey,
    SortSpec,
    check_filter_sizes,
    plan_filters,
    plan_sort,
)
from flows.datapath.locale import DecimalSeparator, Delimiter, resolve
from flows.datapath.notify import Notify

Format = Literal["csv", "xlsx"]
FORMATS, DELIMITERS = get_args(Format), get_args(Delimiter)


def _strict_init(model: type[BaseModel], self: BaseModel, data: dict[str, Any]) -> None:
    try:
        super(model, self).__init__(**data)
    except ValidationError as exc:
        raise invalid(exc) from None


class Filter(FilterSpec):
    """A filter built by hand (the command line): a bad field is an InvalidRequest with a
    stable code. Kept apart from FilterSpec because pydantic also runs a model's own
    __init__ when it validates the model nested in a request, where the field path of a
    ValidationError is wanted instead."""

    def __init__(self, **data: Any) -> None:
        _strict_init(Filter, self, data)


class ExportRequest(BaseModel):
    """What the user asked for, as the API and CLI receive it; unknown fields are refused
    and a bad field is an InvalidRequest with a stable code."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    module: str
    format: Format = "csv"
    columns: list[str] | None = Field(None, description="Allow-listed columns; None: all.")
    ids: list[str | int] | None = Field(None, description="Scope: only these keys.")
    date_from: str | None = Field(None, alias="from")
    date_to: str | None = Field(None, alias="to")
    filters: list[FilterItem] = Field([], description="All must hold; `any`/`all` group them.")
    timezone: str = Field("UTC", description="IANA zone timestamps are shown in.")
    header: bool = True
    delimiter: Delimiter | None = Field(None, description="Default: the locale's, else ','.")
    bom: bool = False
    gzip: bool = Field(False, description="CSV only: XLSX is already compressed.")
    # Formatting (flows/datapath/locale.py): a preset, and options overriding its own.
    locale: str | None = Field(None, max_length=35, description="A preset: en-US, de-DE, ...")
    decimal_separator: DecimalSeparator | None = None
    date_pattern: str | None = Field(None, description="CSV dates, XLSX date format: dd.MM.yyyy")
    timestamp_pattern: str | None = Field(None, description="e.g. dd.MM.yyyy HH:mm:ss")
    true_text: str | None = None
    false_text: str | None = None
    null_text: str | None = None
    relations: list[str] | None = Field(
        None, description="Related sheets to add (XLSX sheets; CSV: a zip). None: none."
    )
    # Notifications when a background export ends (checked by check_notify).
    notify: Notify | None = None
    sort: list[SortSpec] = Field([], description="Indexed columns to order by; else the key.")

    def __init__(self, **data: Any) -> None:
        _strict_init(ExportRequest, self, data)

    @model_validator(mode="after")
    def _plain_delimiter(self) -> ExportRequest:
        # Without a locale the delimiter is known at once; with one, planning fills it in.
        if self.delimiter is None and self.locale is None:
            self.delimiter = ","
        return self


class ExportPlan(BaseModel):
    """A validated request: everything the data path needs, nothing it must re-check."""

    request: ExportRequest
    dataset: Dataset
    columns: list[Column]
    conditions: list[Condition | ConditionGroup]
    sort: list[SortKey] = []
    # How the rows are read, not which: left out of the plan's fingerprint.
    statement_timeout_seconds: float = Field(300, exclude=True)

    @property
    def timezone(self) -> str:
        """The IANA zone timestamps are shown in."""
        return self.request.timezone


_FIELD_ERRORS = {
    "format": (errors.UnsupportedFormat, "unsupported format {input!r}; use csv or xlsx"),
    "op": (errors.UnknownOperator, "unknown filter operator {input!r}; use one of: {ops}"),
    "delimiter": (errors.InvalidOption, "delimiter {input!r} must be one of {delimiters}"),
    "decimal_separator": (errors.InvalidOption, "decimal separator {input!r}: use '.' or ','"),
    "direction": (errors.InvalidOption, "sort direction {input!r} must be asc or desc"),
}


def invalid(exc: ValidationError) -> errors.InvalidRequest:
    """The first problem of a ValidationError as an InvalidRequest naming the field."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"] if p not in GROUP_TAGS]
    where = ".".join(loc) or "request"
    for part in reversed(loc):
        if part in _FIELD_ERRORS and err["type"] == "literal_error":
            cls, text = _FIELD_ERRORS[part]
            shown = ", ".join(repr(d) for d in DELIMITERS)
            msg = text.format(input=err.get("input"), ops=", ".join(OPERATORS), delimiters=shown)
            return cls(msg)
    if err["type"] == "extra_forbidden":
        return errors.InvalidRequest(f"{where}: unknown field; remove it")
    return errors.InvalidRequest(f"{where}: {err['msg']}")


def parse_request(data: dict[str, Any]) -> ExportRequest:
    """The request from its JSON form; a malformed one is an InvalidRequest naming the field."""
    try:
        return ExportRequest.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc) from None


def plan_export(
    req: ExportRequest, registry: Registry, settings: Settings, caller: Caller = OPERATOR
) -> ExportPlan:
    """Validate `req` against the registry, the settings' bounds and the caller's
    permissions; raises an InvalidRequest (or PermissionDenied) naming the bad value."""
    ds = registry.get(req.module)
    if ds is None:
        known = ", ".join(sorted(registry.modules))
        raise errors.UnknownModule(f"unknown module {req.module!r}; choose one of: {known}")
    if not may_export(caller, ds):
        raise errors.PermissionDenied(
            f"your token does not carry {ds.permission!r}, needed to export {req.module!r}"
        )
    _check_sizes(req, settings)
    check_relations(caller, ds, req)
    if req.gzip and req.format == "xlsx":
        raise errors.InvalidOption("gzip applies to CSV only: XLSX is already compressed")
    tz = typed.zone(req.timezone)
    req = resolve(req, settings)
    conditions = plan_filters(ds, req.filters, tz)
    if req.ids is not None:
        conditions.append(_ids_condition(ds, req.ids, tz))
    conditions += _date_conditions(ds, req.date_from, req.date_to, tz)
    return ExportPlan(
        request=req,
        dataset=ds,
        columns=_columns(ds, req.columns),
        conditions=conditions,
        sort=plan_sort(ds, req.sort),
        statement_timeout_seconds=settings.statement_timeout_seconds,
    )


def _check_sizes(req: ExportRequest, settings: Settings) -> None:
    """Every list and every text in the request within the configured bounds, checked
    before anything is done per item."""
    if req.ids is not None and len(req.ids) > settings.max_selected_ids:
        raise errors.TooManyIds(
            f"{len(req.ids)} ids selected, at most {settings.max_selected_ids} allowed; "
            "export all rows with a filter"
        )
    check_filter_sizes(req.filters, settings)
    if req.columns is not None and len(req.columns) > settings.max_columns:
        raise errors.InvalidRequest(
            f"{len(req.columns)} columns named, at most {settings.max_columns} allowed; "
            "omit the list to export every allowed column"
        )
    _check_lengths("ids", req.ids or [], settings.max_value_chars)


def _check_lengths(what: str, items: list, limit: int) -> None:
    for v in items:
        if len(str(v)) > limit:
            raise errors.InvalidFilterValue(
                f"a value for {what!r} is {len(str(v))} characters long, at most {limit} "
                "allowed; use a shorter value"
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


def _ids_condition(ds: Dataset, ids: list, tz: ZoneInfo) -> Condition:
    if not ids:
        raise errors.InvalidRequest("the id list is empty; select at least one row or omit ids")
    ctype = ds.types[ds.key]
    values = [text for v in ids for _, text in typed.check(ds.key, ctype, v, "in", tz)]
    return Condition(column=ds.key, pg_type=ds.key_type, op="in", values=values)


def _date_conditions(ds: Dataset, start: str | None, end: str | None, tz: ZoneInfo) -> list:
    if start is None and end is None:
        return []
    if ds.date_column is None:
        raise errors.InvalidDateRange(f"module {ds.name!r} has no date column to filter on")
    lo = _instant(start, tz, "from") if start else None
    hi = _instant(end, tz, "to") if end else None
    if lo and hi and lo >= hi:
        raise errors.InvalidDateRange(f"'from' ({start}) must be before 'to' ({end})")
    ctype = ds.types[ds.date_column]
    if ctype.base_type not in typed.TEMPORAL:
        raise errors.InvalidDateRange(
            f"date column {ds.date_column!r} of module {ds.name!r} is a {ctype.pg_type}, "
            "not a date or timestamp"
        )
    out = []
    for op, bound in (("gte", lo), ("lt", hi)):
        if bound is not None:
            text = typed.moment_text(bound, ctype.base_type, tz, upper=op == "lt")
            out.append(
                Condition(column=ds.date_column, pg_type=ctype.base_full, op=op, values=[text])
            )
    return out


def _instant(text: str, tz: ZoneInfo, which: str) -> datetime:
    """A date means its whole day in `tz`: `to` is exclusive of the following midnight."""
    try:
        found = typed.parse_moment(text, tz)
        if not isinstance(found, datetime):
            found = typed.day_start(found + timedelta(days=1 if which == "to" else 0), tz)
        # Both views the bounds are written in must exist (year 1 and 9999 are edges).
        found.astimezone(UTC), found.astimezone(tz)
    except ValueError:
        raise errors.InvalidDate(
            f"'{which}' value {text!r} is not a date; use YYYY-MM-DD or an ISO 8601 date-time"
        ) from None
    except OverflowError:
        raise errors.InvalidDate(
            f"'{which}' value {text!r} is outside the dates an export can bound (years 1-9999)"
        ) from None
    return found
