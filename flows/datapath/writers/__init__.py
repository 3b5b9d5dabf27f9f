"""File writers: every format streams chunk by chunk into a binary sink."""

from __future__ import annotations

from typing import BinaryIO, Protocol

import polars as pl

from flows.control.registry import Column
from flows.control.settings import Settings
from flows.datapath.request import ExportRequest


class Writer(Protocol):
    """What the engine drives: open once, write each chunk in order, close once; used as a
    context manager, so that a failure part-way releases its threads and temporary files."""

    def __enter__(self) -> Writer:
        """The writer itself."""

    def __exit__(self, *exc: object) -> None:
        """Release threads and temporary files, whether or not the file was finished."""

    def open(self, sink: BinaryIO) -> None:
        """Write whatever precedes the rows."""

    def write(self, df: pl.DataFrame) -> None:
        """Write one transformed chunk."""

    def close(self) -> None:
        """Write whatever follows the rows; the sink stays open."""


class SheetWriter(Writer, Protocol):
    """A writer of several tables (XLSX sheets, or CSV files in a zip)."""

    def add_sheet(self, title: str, columns: list[Column]) -> None:
        """Finish the current table; the chunks written next belong to table `title`."""


# PostgreSQL's zoned timestamp: its values are shown in the request's zone, which the
# header names, since neither CSV nor a spreadsheet cell carries a zone.
ZONED_TYPES = frozenset({"timestamp with time zone"})


def header_labels(columns: list[Column], timezone: str) -> list[str]:
    """Header text for every format: the labels, with the zone after each zoned column's."""
    return [f"{c.label} ({timezone})" if c.base_type in ZONED_TYPES else c.label for c in columns]


XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def zipped_csv(request: ExportRequest) -> bool:
    """Whether the request is CSV with related sheets: a zip of one CSV per table."""
    return request.format == "csv" and bool(request.relations)


def file_extension(request: ExportRequest) -> str:
    """The extension of the file the request produces."""
    if request.format == "xlsx":
        return "xlsx"
    if zipped_csv(request):
        return "zip"
    return "csv.gz" if request.gzip else "csv"


def media_type(request: ExportRequest) -> str:
    """The Content-Type of the file the request produces."""
    if request.format == "xlsx":
        return XLSX_MEDIA_TYPE
    if zipped_csv(request):
        return "application/zip"
    return "application/gzip" if request.gzip else "text/csv; charset=utf-8"


def make_writer(
    request: ExportRequest,
    columns: list[Column],
    settings: Settings | None = None,
    *,
    neutralise: bool = True,
) -> Writer:
    """The writer for the request's format, with the options from settings (or defaults);
    every strategy gets its writer here, so every strategy writes the same bytes.

    `neutralise` is the module's neutralise_formulas. CSV gets its text already
    neutralised by the transform (a leading apostrophe is the only way CSV can say
    "text"); XLSX gets the true text and marks the cells that start a formula itself."""
    settings = settings or Settings(_env_file=None)
    if request.format == "xlsx":
        from flows.datapath.writers.xlsx import XlsxWriter

        return XlsxWriter(
            request, columns, sheet_rows=settings.xlsx_sheet_rows, neutralise=neutralise
        )
    if zipped_csv(request):
        from flows.datapath.writers.csv_zip import CsvZipWriter

        return CsvZipWriter(request, columns)
    from flows.datapath.writers.csv import CsvWriter

    return CsvWriter(request, columns, gzip_level=settings.gzip_level)
