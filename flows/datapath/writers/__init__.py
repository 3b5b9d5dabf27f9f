"""File writers: every format streams chunk by chunk into a binary sink."""

from __future__ import annotations

from typing import BinaryIO, Protocol

import polars as pl

from flows.control.registry import Column
from flows.control.settings import Settings
from flows.datapath.request import ExportRequest


class Writer(Protocol):
    """What the engine drives: open once, write each chunk in order, close once."""

    def open(self, sink: BinaryIO) -> None:
        """Write whatever precedes the rows."""

    def write(self, df: pl.DataFrame) -> None:
        """Write one transformed chunk."""

    def close(self) -> None:
        """Write whatever follows the rows; the sink stays open."""


XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def file_extension(request: ExportRequest) -> str:
    """The extension of the file the request produces."""
    if request.format == "xlsx":
        return "xlsx"
    return "csv.gz" if request.gzip else "csv"


def media_type(request: ExportRequest) -> str:
    """The Content-Type of the file the request produces."""
    if request.format == "xlsx":
        return XLSX_MEDIA_TYPE
    return "application/gzip" if request.gzip else "text/csv; charset=utf-8"


def make_writer(
    request: ExportRequest, columns: list[Column], settings: Settings | None = None
) -> Writer:
    """The writer for the request's format, with the options from settings (or defaults);
    every strategy gets its writer here, so every strategy writes the same bytes."""
    settings = settings or Settings(_env_file=None)
    if request.format == "xlsx":
        from flows.datapath.writers.xlsx import XlsxWriter

        return XlsxWriter(request, columns, sheet_rows=settings.xlsx_sheet_rows)
    from flows.datapath.writers.csv import CsvWriter

    return CsvWriter(request, columns, gzip_level=settings.gzip_level)
