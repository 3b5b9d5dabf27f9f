"""XLSX (Office Open XML spreadsheet) written row-major in constant memory.

Layout of the archive, in write order (the sink only has `write()`):
  _rels/.rels, xl/styles.xml, docProps/core.xml, docProps/app.xml   on open()
  xl/worksheets/sheetN.xml                                          as each sheet fills
  xl/workbook.xml, xl/_rels/workbook.xml.rels, [Content_Types].xml  on close()
A worksheet's rows are built column-wise by Polars (xlsx_cells), deflated block by
block into a spool, and written out when the sheet is complete, once its <dimension>
is known. Only one sheet is spooled at a time, so memory stays flat whatever the
row count; more than `sheet_rows` data rows continue on a new sheet with the same
header. Related sheets (`add_sheet`) follow the module's rows, each table with its own
header, widths and rollover (`Tags`, `Tags (2)`, ...).

Time zone: timestamps are shown as wall-clock time in the request's zone; the
header of every `timestamp with time zone` column names it, e.g. "Created at (UTC)",
and so does the document's description property.

Strings are inline strings (no shared-string table, which would grow with the data),
never formulas or hyperlinks; free text that starts like a formula keeps its true text
and gets a quote-prefix style (xlsx_cells).

The deflate thread and the sheet spool are released by close(), or by leaving the
writer's `with` block, whichever comes first: a failed export leaves neither behind.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain
from typing import BinaryIO

import polars as pl

from flows.control.registry import Column
from flows.datapath.locale import excel_format
from flows.datapath.request import ExportRequest
from flows.datapath.writers import header_labels
from flows.datapath.writers import xlsx_parts as parts
from flows.datapath.writers.xlsx_cells import (
    DATE_TYPES,
    TIMESTAMP_TYPES,
    RowEncoder,
    header_row,
    sample_widths,
)
from flows.datapath.writers.xlsx_zip import Segment, Spool, ZipStream, crc32_combine, deflate

MAX_SHEET_ROWS = parts.MAX_ROWS - 1  # one row is the header
BLOCK_ROWS = 8_192  # rows built and deflated at a time: bounds the transient memory
MAX_PENDING = 1  # blocks (~5 MiB of XML each) deflating while the next is built


def number_formats(request: ExportRequest, columns: list[Column]) -> list[str | None]:
    """Each column's number format: the dataset's, else the request's date patterns (None:
    the default for its type)."""
    date = excel_format(request.date_pattern) if request.date_pattern else None
    stamp = excel_format(request.timestamp_pattern) if request.timestamp_pattern else None
    by_type = {**dict.fromkeys(DATE_TYPES, date), **dict.fromkeys(TIMESTAMP_TYPES, stamp)}
    return [c.format or by_type.get(c.base_type) for c in columns]


class XlsxWriter:
    """Streams a workbook; see the module docstring for the layout."""

    def __init__(
        self,
        request: ExportRequest,
        columns: list[Column],
        *,
        sheet_rows: int = MAX_SHEET_ROWS,
        block_rows: int = BLOCK_ROWS,
        force_zip64: bool = False,
        neutralise: bool = True,
    ) -> None:
        if not 1 <= sheet_rows <= MAX_SHEET_ROWS:
            raise ValueError(f"sheet_rows must be between 1 and {MAX_SHEET_ROWS}")
        if not columns:
            raise ValueError("an XLSX export needs at least one column")
        self.request = request
        self.sheet_rows = sheet_rows
        self.block_rows = max(1, block_rows)
        self.force_zip64 = force_zip64
        self.header = request.header
        self.neutralise = neutralise
        # styles.xml is written before any related sheet is known: the workbook declares
        # the module's own formats, which a related sheet's columns use where they match.
        self.formats = tuple(dict.fromkeys(filter(None, number_formats(request, columns))))
        self.zip: ZipStream | None = None
        self.names: list[str] = []  # every finished sheet's name, in order
        self.filters: list[str | None] = []  # and its autofilter range
        self._section(request.module, columns)
        self.spool: Spool | None = None
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="exportflow-xlsx")
        self.pending: deque[Future[Segment]] = deque()

    def _section(self, title: str, columns: list[Column]) -> None:
        """Start the rows of one table (the module's, or a related sheet's)."""
        self.title = title
        self.columns = columns
        self.labels = header_labels(columns, self.request.timezone)
        styles = [
            parts.FIRST_CUSTOM_STYLE + self.formats.index(code) if code in self.formats else None
            for code in number_formats(self.request, columns)
        ]
        self.encoder = RowEncoder(columns, self.request.timezone, self.neutralise, styles)
        self.last_col = parts.column_letter(len(columns) - 1)
        self.widths: list[float] | None = None
        self.rows = 0  # data rows of this table so far, all its sheets
        self.section_sheets = 0  # this table's finished sheets

    # -- the Writer protocol ------------------------------------------------------

    def __enter__(self) -> XlsxWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Stop the deflate thread and drop the spool; safe to call more than once."""
        for future in self.pending:
            future.cancel()
        self.pending.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.spool is not None:
            self.spool.close()
            self.spool = None

    def open(self, sink: BinaryIO) -> None:
        """Write the parts that do not depend on the rows."""
        self.zip = ZipStream(sink, force_zip64=self.force_zip64)
        self.zip.add_bytes("_rels/.rels", parts.PACKAGE_RELS.encode())
        self.zip.add_bytes("xl/styles.xml", parts.styles(self.formats).encode())
        description = f"Dates and times are shown in the time zone {self.request.timezone}."
        core = parts.core(self.request.module, description)
        self.zip.add_bytes("docProps/core.xml", core.encode())
        self.zip.add_bytes("docProps/app.xml", parts.APP.encode())

    def write(self, df: pl.DataFrame) -> None:
        """Add rows, starting new sheets as they fill. They are deflated in slices of
        `block_rows` (cut again where a sheet fills), so writing `df` whole or slice by
        slice gives the same bytes: a background export stores a range in such slices."""
        if self.widths is None and df.height:
            self.widths = sample_widths(df, self.labels)  # from the first rows only
        for piece in df.iter_slices(self.block_rows):
            done = 0
            while done < piece.height:
                in_sheet = self.rows % self.sheet_rows
                if in_sheet == 0:
                    self._finish_sheet()
                    self.spool = Spool()
                take = min(piece.height - done, self.sheet_rows - in_sheet)
                xml = self.encoder.encode(piece.slice(done, take), in_sheet + self._top)
                # Deflating (which releases the GIL) overlaps building the next block.
                self.pending.append(self.pool.submit(deflate, xml))
                while len(self.pending) > MAX_PENDING:
                    self.spool.add(self.pending.popleft().result())
                done += take
                self.rows += take

    def add_sheet(self, title: str, columns: list[Column]) -> None:
        """Finish this table's last sheet; the rows written next go to sheet `title`, with
        its own header, widths and rollover to `title (2)`."""
        if not columns:
            raise ValueError("an XLSX sheet needs at least one column")
        self._last_sheet()
        self._section(title, columns)

    def close(self) -> None:
        """Finish the last sheet and write the workbook parts and the zip directory."""
        self._last_sheet()
        self.release()
        names, filters = self.names, self.filters
        count = len(names)
        self.zip.add_bytes("xl/workbook.xml", parts.workbook(names, filters).encode())
        self.zip.add_bytes("xl/_rels/workbook.xml.rels", parts.workbook_rels(count).encode())
        self.zip.add_bytes("[Content_Types].xml", parts.content_types(count).encode())
        self.zip.finish()

    # -- sheets -------------------------------------------------------------------

    @property
    def _top(self) -> int:
        """The sheet row of the first data row (1-based)."""
        return 2 if self.header else 1

    def _last_row(self, data_rows: int) -> int:
        return data_rows + (1 if self.header else 0)

    def _filter_ref(self, data_rows: int) -> str | None:
        return f"A1:{self.last_col}{self._last_row(data_rows)}" if self.header else None

    def _last_sheet(self) -> None:
        if self.spool is None:  # no rows: one sheet with just the header
            self.spool = Spool()
        self._finish_sheet()

    def _finish_sheet(self) -> None:
        """Write the spooled sheet, now that its size is known."""
        if self.spool is None:
            return
        spool, self.spool = self.spool, None
        while self.pending:
            spool.add(self.pending.popleft().result())
        index = self.section_sheets
        data_rows = self.rows - index * self.sheet_rows
        last_row = self._last_row(data_rows)
        head = parts.sheet_head(
            self.last_col,
            last_row,
            self.widths or [float(min(len(label) + 5, 60)) for label in self.labels],
            frozen=self.header,
            selected=not self.names,
        )
        if self.header:
            head += header_row(self.labels, parts.STYLE_HEADER)
        first_data = 2 if self.header else 1
        data_ref = f"A{first_data}:{self.last_col}{last_row}" if data_rows else None
        tail = parts.sheet_tail(self._filter_ref(data_rows), data_ref)
        try:
            head_seg, tail_seg = deflate(head.encode()), deflate(tail.encode(), final=True)
            self._write_sheet(len(self.names) + 1, head_seg, spool, tail_seg)
        finally:
            spool.close()
        self.names.append(parts.sheet_names(self.title, index + 1)[index])
        self.filters.append(self._filter_ref(data_rows))
        self.section_sheets += 1

    def _write_sheet(self, number: int, head: Segment, body: Spool, tail: Segment) -> None:
        crc = head.crc
        for seg_crc, seg_size in ((body.crc, body.size), (tail.crc, tail.size)):
            crc = crc32_combine(crc, seg_crc, seg_size)
        size = head.size + body.size + tail.size
        csize = len(head.data) + body.csize + len(tail.data)
        chunks = chain([head.data], body.chunks(), [tail.data])
        self.zip.add(f"xl/worksheets/sheet{number}.xml", chunks, crc, size, csize)
