"""CSV with related sheets: a zip holding one CSV per table (the module's, then each
related sheet's), each written by the CSV writer with the request's options.

A member's CSV text is deflated chunk by chunk into a spool (memory, then a temporary
file) and the member is written once complete, its CRC and sizes known, through the
XLSX writer's zip stream: memory stays flat and the same rows give the same bytes."""

from __future__ import annotations

from typing import BinaryIO

import polars as pl

from flows.control.registry import Column
from flows.datapath.request import ExportRequest
from flows.datapath.writers.csv import CsvWriter
from flows.datapath.writers.xlsx_parts import sheet_names
from flows.datapath.writers.xlsx_zip import Spool, ZipStream, deflate


def member_name(title: str) -> str:
    """A table's file name inside the zip: its sheet name made safe, ASCII, `.csv`."""
    safe = sheet_names(title, 1)[0].encode("ascii", "replace").decode().replace("?", "_")
    return f"{safe}.csv"


class CsvZipWriter:
    """The Writer protocol plus `add_sheet`, for a CSV export with related sheets."""

    def __init__(self, request: ExportRequest, columns: list[Column], gzip_level: int = 6):
        self.request = request.model_copy(update={"gzip": False})
        self.gzip_level = gzip_level
        self.zip: ZipStream | None = None
        self.spool: Spool | None = None
        self.names: set[str] = set()
        self._member(request.module, columns)

    def __enter__(self) -> CsvZipWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Drop the spool of an unfinished member; safe to call more than once."""
        if self.spool is not None:
            self.spool.close()
            self.spool = None

    def _member(self, title: str, columns: list[Column]) -> None:
        name = member_name(title)
        if name.lower() in self.names:
            raise ValueError(f"two tables would be stored as {name}")
        self.names.add(name.lower())
        self.name = name
        self.csv = CsvWriter(self.request, columns)
        self.spool = Spool()
        self._add(self.csv.preamble())

    def _add(self, data: bytes | memoryview) -> None:
        if len(data):
            self.spool.add(deflate(data))

    def _finish(self) -> None:
        spool, self.spool = self.spool, None
        try:
            tail = deflate(b"", final=True)
            spool.add(tail)
            self.zip.add(self.name, spool.chunks(), spool.crc, spool.size, spool.csize)
        finally:
            spool.close()

    def open(self, sink: BinaryIO) -> None:
        """Nothing is written before the first member is complete."""
        self.zip = ZipStream(sink)

    def write(self, df: pl.DataFrame) -> None:
        """One chunk of the current table, encoded and deflated on its own."""
        self._add(self.csv.encode(df))

    def add_sheet(self, title: str, columns: list[Column]) -> None:
        """Finish the current member; the next rows go to `title`.csv."""
        self._finish()
        self._member(title, columns)

    def close(self) -> None:
        """Finish the last member and write the zip directory; the sink stays open."""
        self._finish()
        self.zip.finish()
