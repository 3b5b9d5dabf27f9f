"""The export request the front end posts (its ExportOptions), and its translation into
the engine's ExportRequest."""

from __future__ import annotations

from typing import Literal

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from flows.control.errors import InvalidRequest
from flows.datapath.filters import FilterItem, SortSpec
from flows.datapath.locale import DecimalSeparator
from flows.datapath.request import Delimiter, ExportRequest, Format, parse_request


class Strict(BaseModel):
    """camelCase on the wire; an unknown field is a 422 naming its path."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class DateRange(Strict):
    """Bounds on the module's date column: `from` inclusive, `to` exclusive (a date: its day)."""

    start: str | None = Field(None, alias="from")
    end: str | None = Field(None, alias="to")


class CsvOptions(Strict):
    """How a CSV file is written."""

    delimiter: Delimiter | None = Field(None, description="Default: the locale's, else ','.")
    bom: bool = False
    gzip: bool = False
    header: bool = True


class FormattingOptions(Strict):
    """How values are written, overriding the locale's preset (flows/datapath/locale.py):
    decimal separator, boolean and NULL text for CSV; patterns for CSV text and XLSX dates."""

    decimal_separator: DecimalSeparator | None = None
    date_pattern: str | None = Field(None, examples=["dd.MM.yyyy"])
    timestamp_pattern: str | None = Field(None, examples=["dd.MM.yyyy HH:mm:ss"])
    true_text: str | None = None
    false_text: str | None = None
    null_text: str | None = None


class NotifyOptions(Strict):
    """Who to tell when the export ends: the token's email address and/or a webhook."""

    email: bool = False
    webhook: str | None = None


# Shown in the API's documentation, and tried first by generated tests.
EXAMPLES = [
    {"scope": "selected", "selectedIds": [1, 2, 3], "format": "xlsx"},
    {
        "selectedColumns": ["id", "name"],
        "filters": [{"column": "id", "op": "lte", "value": 20}],
        "csv": {"delimiter": ";", "bom": True, "gzip": True},
    },
    {"locale": "de-DE", "formatting": {"nullText": "n/a"}},
    {"mode": "background", "dateRange": {"from": "2024-01-01", "to": "2024-02-01"}},
    {
        "filters": [
            {
                "any": [
                    {"column": "id", "op": "lt", "value": 5},
                    {"column": "id", "op": "gt", "value": 20},
                ]
            }
        ],
        "sort": [{"column": "id", "direction": "desc"}],
    },
]


class ExportOptions(Strict):
    """POST /api/{module}/export: what to export and how to deliver it."""

    model_config = ConfigDict(json_schema_extra={"examples": EXAMPLES})

    scope: Literal["all", "selected"] = "all"
    format: Format = "csv"
    selected_ids: list[str | int] | None = None
    selected_columns: list[str] | None = None
    date_range: DateRange | None = None
    filters: list[FilterItem] = Field(
        [], description="All must hold; an item `{any: [...]}` or `{all: [...]}` groups them."
    )
    timezone: str = "UTC"
    csv: CsvOptions | None = None
    mode: Literal["auto", "background"] = Field(
        "auto", description="auto: by row count; background: always a job to poll."
    )
    locale: str | None = Field(None, description="A preset: en-US, en-GB, de-DE, fr-FR, ...")
    formatting: FormattingOptions | None = None
    relations: list[str] | None = Field(
        None,
        description="Related sheets to add (GET /api/modules lists them): further XLSX "
        "sheets, or for CSV a zip with one CSV per table. None or []: the module's rows only.",
    )
    # Notifications: a request that asks for them always runs in the background.
    notify: NotifyOptions | None = Field(
        None, description="Tell the caller when the export ends; makes it a background job."
    )
    sort: list[SortSpec] = Field([], description="Indexed columns to order by; else the key.")


def to_request(module: str, opts: ExportOptions) -> ExportRequest:
    """The engine's request for `opts` on `module` (an InvalidRequest when inconsistent)."""
    _refuse_nul(opts.model_dump(by_alias=True, exclude_none=True), "")
    if opts.scope == "selected" and not opts.selected_ids:
        raise InvalidRequest("scope 'selected' needs selectedIds; select rows or use scope 'all'")
    data = {
        "module": module,
        "format": opts.format,
        "columns": opts.selected_columns,
        # scope 'all' exports every row: ids a client still holds from its table are ignored.
        "ids": opts.selected_ids if opts.scope == "selected" else None,
        "filters": [f.model_dump() for f in opts.filters],
        "timezone": opts.timezone,
        "relations": opts.relations,
        "sort": [s.model_dump() for s in opts.sort],
    }
    if opts.date_range is not None:
        data |= {"from": opts.date_range.start, "to": opts.date_range.end}
    if opts.csv is not None:
        data |= opts.csv.model_dump()
    data["locale"] = opts.locale
    if opts.formatting is not None:
        data |= opts.formatting.model_dump()
    if opts.notify is not None:
        data["notify"] = opts.notify.model_dump()
    return parse_request({k: v for k, v in data.items() if v is not None})


def _refuse_nul(value: object, path: str) -> None:
    """Refuse U+0000 anywhere in the options: no PostgreSQL text or jsonb value can hold it."""
    # Only JSON can carry it (a command line cannot); unchecked, the database refuses it
    # mid-query and the client would see a server error instead of what to change.
    if isinstance(value, str) and "\x00" in value:
        # FastAPI's own shape for a bad field, so a client places it as it places the others.
        loc = ("body", *path.split("."))
        msg = "contains U+0000 (a NUL character); remove it"
        raise RequestValidationError([{"loc": loc, "msg": msg, "type": "value_error"}])
    if isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            _refuse_nul(item, f"{path}.{key}" if path else str(key))
