"""RFC 4180 CSV, UTF-8, optional BOM and gzip, written chunk by chunk."""

from __future__ import annotations

import gzip
import io
from typing import BinaryIO

import polars as pl

from flows.control.registry import Column
from flows.datapath.request import ExportRequest

# Excel and pandas both parse this; the zone is the request's, applied by the transform.
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S%.f"


class CsvWriter:
    """Each chunk encodes to bytes that depend on that chunk alone, so parts can be
    written separately and joined (gzip members concatenate into one valid stream)."""

    def __init__(self, request: ExportRequest, columns: list[Column], gzip_level: int = 6) -> None:
        self.request = request
        self.labels = [c.label for c in columns]
        self.gzip_level = gzip_level
        self.sink: BinaryIO | None = None

    def preamble(self) -> bytes | memoryview:
        """BOM and header row."""
        head = b"\xef\xbb\xbf" if self.request.bom else b""
        if self.request.header:
            header = pl.DataFrame(
                {label: [] for label in self.labels}, schema=dict.fromkeys(self.labels, pl.String)
            )
            head += self._csv(header, include_header=True)
        return self._pack(head)

    def encode(self, df: pl.DataFrame) -> bytes | memoryview:
        """One chunk's rows."""
        return self._pack(self._csv(df, include_header=False))

    def open(self, sink: BinaryIO) -> None:
        """Write the preamble."""
        self.sink = sink
        sink.write(self.preamble())

    def write(self, df: pl.DataFrame) -> None:
        """Write one chunk."""
        if self.request.gzip:
            self.sink.write(self.encode(df))
        else:
            # Straight into the sink: no chunk-sized buffer in between.
            self._csv(df, include_header=False, out=self.sink)

    def close(self) -> None:
        """Nothing follows the rows in CSV."""

    def _csv(
        self, df: pl.DataFrame, include_header: bool, out: BinaryIO | None = None
    ) -> bytes | memoryview:
        buf = out or io.BytesIO()
        df.write_csv(
            buf,
            include_header=include_header,
            separator=self.request.delimiter,
            line_terminator="\r\n",
            quote_style="necessary",
            datetime_format=DATETIME_FORMAT,
            date_format="%Y-%m-%d",
        )
        # A view, not a copy: a chunk's text is tens of MiB.
        return b"" if out else buf.getbuffer()

    def _pack(self, data: bytes | memoryview) -> bytes | memoryview:
        if not self.request.gzip or not data:
            return data
        # mtime=0: the same rows always give the same bytes (resumed runs match).
        return gzip.compress(data, compresslevel=self.gzip_level, mtime=0)
