"""RFC 4180 CSV, UTF-8, optional BOM and gzip, written chunk by chunk.

Quoting: a text field is quoted when it holds the delimiter, a quote, CR or LF (RFC
4180), and also when it holds `,`, `;` or TAB whatever the delimiter: Excel splits a
CSV on the list separator of the reader's locale, not on the writer's. An empty text
is written `""`, a NULL as nothing, so the two stay apart.

Polars quotes only what RFC 4180 needs (and empty text). A chunk where that is enough
is written so; a chunk holding text with a list separator other than the delimiter is
written with every non-numeric field quoted (Polars' `non_numeric`), which readers
read the same and which costs nothing, where quoting just those fields here took twice
as long as the whole encoding. Either way a chunk's bytes depend on that chunk alone.
The delimiter is one of `,` `;` TAB `|` (the request allows no other), none of which a
number or a date can hold."""

from __future__ import annotations

import gzip
import io
from typing import BinaryIO

import polars as pl

from flows.control.registry import Column
from flows.datapath.request import ExportRequest
from flows.datapath.transform import DECIMAL_TYPES
from flows.datapath.writers import header_labels

# Excel and pandas both parse this; the zone is the request's, applied by the transform.
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S%.f"
DATE_FORMAT = "%Y-%m-%d"
LIST_SEPARATORS = ',;\t"\r\n'


def quote_field(value: str, delimiter: str) -> str:
    """One field as CSV text (for the header)."""
    if value == "" or any(c in value for c in LIST_SEPARATORS + delimiter):
        return '"' + value.replace('"', '""') + '"'
    return value


class CsvWriter:
    """Each chunk encodes to bytes that depend on that chunk alone, so parts can be
    written separately and joined (gzip members concatenate into one valid stream)."""

    def __init__(self, request: ExportRequest, columns: list[Column], gzip_level: int = 6) -> None:
        self.request = request
        self.labels = header_labels(columns, request.timezone)
        self.gzip_level = gzip_level
        # The list separators Polars does not quote by itself.
        self.extra = [c for c in ",;\t" if c != request.delimiter]
        # A decimal comma is the reader's own number format, not a list separator to guard.
        comma = request.decimal_separator == ","
        self.numbers = {c.label for c in columns if comma and c.base_type in DECIMAL_TYPES}
        self.sink: BinaryIO | None = None

    def __enter__(self) -> CsvWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        """Nothing to release: the CSV writer holds no threads or files."""

    def preamble(self) -> bytes | memoryview:
        """BOM and header row."""
        head = b"\xef\xbb\xbf" if self.request.bom else b""
        if self.request.header:
            fields = (quote_field(label, self.request.delimiter) for label in self.labels)
            head += (self.request.delimiter.join(fields) + "\r\n").encode()
        return self._pack(head)

    def encode(self, df: pl.DataFrame) -> bytes | memoryview:
        """One chunk's rows."""
        return self._pack(self._csv(df))

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
            self._csv(df, out=self.sink)

    def close(self) -> None:
        """Nothing follows the rows in CSV."""

    def rfc_is_enough(self, df: pl.DataFrame) -> bool:
        """Whether Polars' own quoting quotes every field that needs it in this chunk."""
        # One literal scan per column: it allocates nothing but a mask, however large a
        # cell is. A field that also holds a quote or the delimiter would be quoted anyway,
        # but telling those apart costs three times the scan: such a chunk is fully quoted.
        checks = [
            pl.col(n).str.contains_any(self.extra).any()
            for n, dtype in df.schema.items()
            if dtype == pl.String and n not in self.numbers
        ]
        return not checks or not any(df.select(checks).row(0))

    def _csv(self, df: pl.DataFrame, out: BinaryIO | None = None) -> bytes | memoryview:
        buf = out or io.BytesIO()
        df = _infinities(df)
        style = "necessary" if self.rfc_is_enough(df) else "non_numeric"
        df.write_csv(
            buf,
            include_header=False,
            separator=self.request.delimiter,
            line_terminator="\r\n",
            quote_style=style,
            datetime_format=DATETIME_FORMAT,
            date_format=DATE_FORMAT,
            null_value=self.request.null_text or "",
        )
        # A view, not a copy: a chunk's text is tens of MiB.
        return b"" if out else buf.getbuffer()

    def _pack(self, data: bytes | memoryview) -> bytes | memoryview:
        if not self.request.gzip or not data:
            return data
        # mtime=0: the same rows always give the same bytes (resumed runs match).
        return gzip.compress(data, compresslevel=self.gzip_level, mtime=0)


def _infinities(df: pl.DataFrame) -> pl.DataFrame:
    """Float infinities spelt as PostgreSQL (and the XLSX writer) spell them, not `inf`."""
    fixed = []
    for s in df.get_columns():
        if s.dtype.is_float() and s.is_infinite().any():
            col = pl.col(s.name)
            text = pl.when(col > 0).then(pl.lit("Infinity")).otherwise(pl.lit("-Infinity"))
            shown = pl.when(col.is_infinite()).then(text).otherwise(col.cast(pl.String))
            fixed.append(shown.alias(s.name))
    return df.with_columns(fixed) if fixed else df
