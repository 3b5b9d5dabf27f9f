"""Text for XLSX cells: what XML cannot hold is dropped, what Excel would misread is
escaped, and what is longer than a cell holds is cut with a visible mark."""

from __future__ import annotations

import re

import polars as pl

MAX_CELL_CHARS = 32_767  # Excel's limit, in UTF-16 code units
TRUNCATED_MARK = "…[truncated]"

# XML 1.0 cannot hold these at all; they are dropped.
_INVALID_XML = "\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff"
_INVALID_XML_RE = re.compile(f"[{_INVALID_XML}]")
# Characters a cell's content must not hold as they are (CR would be read back as LF).
_NEEDS_ESCAPE = f"[&<>\r{_INVALID_XML}]"
ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"} | {
    chr(c): "" for c in [*range(9), 11, 12, *range(14, 32), 0xFFFE, 0xFFFF]
}
_TRANSLATE = str.maketrans(ESCAPES)
# Excel reads `_x0041_` in a string as "A"; a literal one keeps its underscore as `_x005F_`.
_EXCEL_ESCAPE = r"_x[0-9A-Fa-f]{4}_"
_EXCEL_ESCAPE_START = re.compile(r"_(?=x[0-9A-Fa-f]{4}_)")


def fix_text(value: str) -> str:
    """Drop what XML cannot hold, cut to Excel's cell size, escape literal `_xHHHH_`."""
    value = _clean_head(value)
    if len(value) > MAX_CELL_CHARS // 2:
        utf16 = value.encode("utf-16-le")
        if len(utf16) > 2 * MAX_CELL_CHARS:
            keep = utf16[: 2 * (MAX_CELL_CHARS - len(TRUNCATED_MARK))]
            value = keep.decode("utf-16-le", errors="ignore") + TRUNCATED_MARK
    return _EXCEL_ESCAPE_START.sub("_x005F_", value)


def _clean_head(value: str) -> str:
    """`value` without what XML cannot hold, or, for a text far over the cell size, enough
    of its head to cut from: a cell of tens of MiB is never copied whole."""
    size = 2 * MAX_CELL_CHARS
    while size < len(value):
        head = _INVALID_XML_RE.sub("", value[:size])
        if len(head) > MAX_CELL_CHARS:  # more than a cell holds: the rest is cut anyway
            return head
        size *= 2
    return _INVALID_XML_RE.sub("", value)


def escape(value: str) -> str:
    """A fixed text as XML element content."""
    return value.translate(_TRANSLATE)


def cell_text(value: str) -> str:
    """One text, fixed and escaped (for the header row)."""
    return escape(fix_text(value))


def prepare(s: pl.Series) -> pl.Series:
    """A column of texts, fixed and escaped. Only the cells that need it are changed:
    most texts hold nothing special, and a scan is much cheaper than a replacement."""
    flags = pl.DataFrame({"s": s}).select(
        rare=(pl.col("s").str.len_bytes() > MAX_CELL_CHARS)
        | pl.col("s").str.contains(_EXCEL_ESCAPE),
        esc=pl.col("s").str.contains(_NEEDS_ESCAPE),
    )
    rare = flags["rare"].arg_true()
    if len(rare):
        fixed = [fix_text(v) for v in s.gather(rare).to_list()]
        s = s.scatter(rare, pl.Series(fixed, dtype=pl.String))
    esc = flags["esc"].arg_true()
    if len(esc):
        s = s.scatter(esc, s.gather(esc).str.replace_many(ESCAPES))
    return s
