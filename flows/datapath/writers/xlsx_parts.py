"""The workbook's small parts as XML text: package relationships, content types, styles,
document properties, the workbook, and each worksheet's head and tail."""

from __future__ import annotations

import re
from xml.sax.saxutils import escape as _escape

XML_DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
NS_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
NS_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NS_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
CT_MAIN = "application/vnd.openxmlformats-officedocument.spreadsheetml"
MAX_ROWS = 1_048_576
MAX_COLUMNS = 16_384

# Cell style indexes into <cellXfs> below. STYLE_QUOTED (quotePrefix) marks text that
# starts like a formula: Excel keeps such a cell text even when someone edits it.
STYLE_HEADER, STYLE_DATE, STYLE_DATETIME, STYLE_TIME, STYLE_QUOTED = 1, 2, 3, 4, 5

FIRST_CUSTOM_STYLE, _FIRST_CUSTOM_FORMAT = 6, 167


def styles(formats: tuple[str, ...] = ()) -> str:
    """xl/styles.xml; each of `formats` (Excel format codes) gets style FIRST_CUSTOM_STYLE + i."""
    codes = ["yyyy\\-mm\\-dd", "yyyy\\-mm\\-dd\\ hh:mm:ss.000", "hh:mm:ss.000", *formats]
    num_fmts = "".join(
        f'<numFmt numFmtId="{164 + i}" formatCode="{xml_text(code)}"/>'
        for i, code in enumerate(codes)
    )
    custom = "".join(
        f'<xf numFmtId="{_FIRST_CUSTOM_FORMAT + i}" fontId="0" fillId="0" borderId="0" xfId="0"'
        ' applyNumberFormat="1"/>'
        for i in range(len(formats))
    )
    return (
        XML_DECL + f'<styleSheet xmlns="{NS_MAIN}">'
        f'<numFmts count="{len(codes)}">{num_fmts}</numFmts>'
        '<fonts count="2">'
        '<font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
        '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
        "</fonts>"
        '<fills count="2"><fill><patternFill patternType="none"/></fill>'
        '<fill><patternFill patternType="gray125"/></fill></fills>'
        '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
        '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
        "</cellStyleXfs>"
        f'<cellXfs count="{FIRST_CUSTOM_STYLE + len(formats)}">'
        '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
        '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
        '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
        '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
        '<xf numFmtId="166" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
        '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0" quotePrefix="1"/>'
        f"{custom}</cellXfs>"
        '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
        '<dxfs count="0"/>'
        '<tableStyles count="0" defaultTableStyle="TableStyleMedium9" '
        'defaultPivotStyle="PivotStyleLight16"/>'
        "</styleSheet>"
    )


PACKAGE_RELS = (
    XML_DECL + f'<Relationships xmlns="{NS_PKG_REL}">'
    f'<Relationship Id="rId1" Type="{NS_REL}/officeDocument" Target="xl/workbook.xml"/>'
    f'<Relationship Id="rId2" Type="{NS_PKG_REL}/metadata/core-properties" '
    'Target="docProps/core.xml"/>'
    f'<Relationship Id="rId3" Type="{NS_REL}/extended-properties" Target="docProps/app.xml"/>'
    "</Relationships>"
)

APP = (
    XML_DECL + "<Properties "
    'xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties" '
    'xmlns:vt="http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes">'
    "<Application>exportflow</Application><DocSecurity>0</DocSecurity>"
    "<ScaleCrop>false</ScaleCrop><LinksUpToDate>false</LinksUpToDate>"
    "<SharedDoc>false</SharedDoc><HyperlinksChanged>false</HyperlinksChanged>"
    "</Properties>"
)


def xml_text(value: str) -> str:
    """Escape for XML element content or a double-quoted attribute."""
    return _escape(value, {'"': "&quot;", "\r": "&#13;"})


def core(title: str, description: str) -> str:
    """docProps/core.xml; no dates, so the same export always gives the same bytes."""
    return (
        XML_DECL + "<cp:coreProperties "
        'xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:dcterms="http://purl.org/dc/terms/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<dc:title>{xml_text(title)}</dc:title>"
        f"<dc:description>{xml_text(description)}</dc:description>"
        "<cp:keywords>exportflow</cp:keywords>"
        "</cp:coreProperties>"
    )


def content_types(sheets: int) -> str:
    """[Content_Types].xml: an override for every part."""
    parts = [
        ("/xl/workbook.xml", f"{CT_MAIN}.sheet.main+xml"),
        ("/xl/styles.xml", f"{CT_MAIN}.styles+xml"),
        ("/docProps/core.xml", "application/vnd.openxmlformats-package.core-properties+xml"),
        (
            "/docProps/app.xml",
            "application/vnd.openxmlformats-officedocument.extended-properties+xml",
        ),
    ] + [(f"/xl/worksheets/sheet{i}.xml", f"{CT_MAIN}.worksheet+xml") for i in range(1, sheets + 1)]
    overrides = "".join(f'<Override PartName="{p}" ContentType="{t}"/>' for p, t in parts)
    return (
        XML_DECL + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        f"{overrides}</Types>"
    )


def workbook_rels(sheets: int) -> str:
    """xl/_rels/workbook.xml.rels: the sheets, then the styles."""
    rels = "".join(
        f'<Relationship Id="rId{i}" Type="{NS_REL}/worksheet" Target="worksheets/sheet{i}.xml"/>'
        for i in range(1, sheets + 1)
    )
    rels += f'<Relationship Id="rId{sheets + 1}" Type="{NS_REL}/styles" Target="styles.xml"/>'
    return XML_DECL + f'<Relationships xmlns="{NS_PKG_REL}">{rels}</Relationships>'


def workbook(names: list[str], filters: list[str | None]) -> str:
    """xl/workbook.xml; `filters[i]` is sheet i's autofilter range (A1:J9) or None."""
    sheets = "".join(
        f'<sheet name="{xml_text(n)}" sheetId="{i}" r:id="rId{i}"/>'
        for i, n in enumerate(names, start=1)
    )
    defined = "".join(
        f'<definedName name="_xlnm._FilterDatabase" localSheetId="{i}" hidden="1">'
        f"{xml_text(quote_sheet(names[i]))}!{absolute(ref)}</definedName>"
        for i, ref in enumerate(filters)
        if ref
    )
    return (
        XML_DECL + f'<workbook xmlns="{NS_MAIN}" xmlns:r="{NS_REL}">'
        '<workbookPr date1904="false"/>'
        '<bookViews><workbookView xWindow="0" yWindow="0" windowWidth="16384" windowHeight="8192" '
        'activeTab="0"/></bookViews>'
        f"<sheets>{sheets}</sheets>"
        + (f"<definedNames>{defined}</definedNames>" if defined else "")
        + '<calcPr calcId="191029"/></workbook>'
    )


def quote_sheet(name: str) -> str:
    """A sheet name as formulas refer to it."""
    return "'" + name.replace("'", "''") + "'"


def absolute(ref: str) -> str:
    """A1:J9 -> $A$1:$J$9."""
    return re.sub(r"([A-Z]+)([0-9]+)", r"$\1$\2", ref)


def column_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    if not 0 <= index < MAX_COLUMNS:
        raise ValueError(f"a worksheet holds at most {MAX_COLUMNS} columns")
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


_BAD_SHEET_CHARS = re.compile(r"[\[\]:*?/\\\x00-\x1f]")


def sheet_names(base: str, count: int) -> list[str]:
    """Unique, valid sheet names: `base`, `base (2)`, ... each at most 31 characters."""
    base = _BAD_SHEET_CHARS.sub("_", base).strip("'") or "Export"
    if base.lower() == "history":  # reserved by Excel
        base += "_"
    names = [base[:31]]
    for i in range(2, count + 1):
        suffix = f" ({i})"
        names.append(base[: 31 - len(suffix)].rstrip("'") + suffix)
    return names


def sheet_head(
    last_col: str, last_row: int, widths: list[float], frozen: bool, selected: bool
) -> str:
    """Everything before a worksheet's first row."""
    dimension = "A1" if last_row == 0 else f"A1:{last_col}{last_row}"
    pane = (
        '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
        '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/>'
        if frozen
        else ""
    )
    tab = ' tabSelected="1"' if selected else ""
    cols = "".join(
        f'<col min="{i}" max="{i}" width="{w:g}" customWidth="1"/>'
        for i, w in enumerate(widths, start=1)
    )
    return (
        XML_DECL + f'<worksheet xmlns="{NS_MAIN}" xmlns:r="{NS_REL}">'
        f'<dimension ref="{dimension}"/>'
        f'<sheetViews><sheetView{tab} workbookViewId="0">{pane}</sheetView></sheetViews>'
        '<sheetFormatPr defaultRowHeight="15"/>'
        f"<cols>{cols}</cols><sheetData>"
    )


def sheet_tail(filter_ref: str | None, data_ref: str | None) -> str:
    """Everything after a worksheet's last row: autofilter, margins, and the note that
    text cells holding digits (codes, long integers) are meant to be text."""
    tail = "</sheetData>"
    if filter_ref:
        tail += f'<autoFilter ref="{filter_ref}"/>'
    tail += (
        '<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>'
    )
    if data_ref:
        tail += (
            f'<ignoredErrors><ignoredError sqref="{data_ref}" numberStoredAsText="1"/>'
            "</ignoredErrors>"
        )
    return tail + "</worksheet>"
