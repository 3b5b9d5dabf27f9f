"""File writers: every format streams chunk by chunk into a binary sink."""

from __future__ import annotations

from typing import BinaryIO, Protocol

import polars as pl

from flows.datasets import Column
from flows.request import ExportRequest


class Writer(Protocol):
    """What the engine drives: open once, write each chunk in order, close once."""

    extension: str
    media_type: str

    def open(self, sink: BinaryIO) -> None:
        """Write whatever precedes the rows."""

    def write(self, df: pl.DataFrame) -> None:
        """Write one transformed chunk."""

    def close(self) -> None:
        """Write whatever follows the rows; the sink stays open."""


def make_writer(request: ExportRequest, columns: list[Column], **options) -> Writer:
    """The writer for the request's format."""
    if request.format == "xlsx":
        from flows.writers.xlsx import XlsxWriter

        return XlsxWriter(request, columns, **options)
    from flows.writers.csv import CsvWriter

    return CsvWriter(request, columns, **options)
