"""Locale presets and formatting options: validated at planning, and a de-DE CSV read back
as numbers and dates by Polars and by LibreOffice in the German locale."""

from __future__ import annotations

import datetime as dt
import io
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import openpyxl
import polars as pl
import psycopg
import pytest

from flows.control import errors
from flows.control.registry import load_checked_registry
from flows.datapath.engine import export
from flows.datapath.locale import excel_format, strftime
from flows.datapath.request import ExportRequest, plan_export

LOCALE_SQL = """
DROP TABLE IF EXISTS locale_demo;
CREATE TABLE locale_demo (
    id integer PRIMARY KEY, amount numeric, ratio real, weight double precision,
    active boolean, day date, seen timestamptz, note text);
INSERT INTO locale_demo VALUES
 (1, -1.5, -1.5, -1.5, true, '2024-02-01', '2024-02-01 13:14:15.678+00', 'a, b; c'),
 (2, 12345678901234567890.1234567890, 0.25, 1e20, false, '1999-12-31',
  '2024-07-01 22:30:00+00', '-1,5'),
 (3, NULL, NULL, 'Infinity', NULL, NULL, NULL, NULL),
 (4, 'NaN', 2.5, 1234567.125, true, '2000-01-01', '2000-01-01 00:00:00+00', '=1+2');
"""
LOCALE_YAML = """
modules:
  demo:
    table: locale_demo
    key: id
    permission: p
    columns: {id: null, amount: Amount, ratio: null, weight: null, active: null, day: null,
              seen: Seen, note: null}
"""


@pytest.fixture(scope="module")
def demo(db_url, tmp_path_factory):
    with psycopg.connect(db_url) as conn:
        conn.execute(LOCALE_SQL)
    path = tmp_path_factory.mktemp("locale") / "datasets.yaml"
    path.write_text(LOCALE_YAML)
    yield load_checked_registry(path, db_url)
    with psycopg.connect(db_url) as conn:
        conn.execute("DROP TABLE locale_demo")


def run(settings, registry, **kw) -> bytes:
    plan = plan_export(ExportRequest(**kw), registry, settings)
    buf = io.BytesIO()
    export(settings.database_url, plan, buf, settings)
    return buf.getvalue()


def test_de_de_csv_text(settings, demo):
    data = run(settings, demo, module="demo", locale="de-DE", timezone="Europe/Berlin")
    lines = data.decode().split("\r\n")
    assert lines[0] == "id;Amount;ratio;weight;active;day;Seen (Europe/Berlin);note"
    # The note holds a comma: that chunk quotes every text field, numbers still unquoted
    # where Polars sees numbers; the decimal comma keeps every digit of the numeric.
    assert lines[1].split(";")[:7] == [
        "1",
        '"-1,5"',
        '"-1,5"',
        '"-1,5"',
        '"WAHR"',
        '"01.02.2024"',
        '"01.02.2024 14:14:15"',
    ]
    assert '"12345678901234567890,1234567890"' in lines[2]
    assert '"\'-1,5"' in lines[2]  # the text `-1,5` is text: neutralised
    assert lines[3] == '3;;;"Infinity";;;;'
    assert '"\'=1+2"' in lines[4] and '"NaN"' in lines[4]


def test_de_de_csv_without_commas_in_text_is_not_quoted(settings, demo):
    data = run(
        settings,
        demo,
        module="demo",
        locale="de-DE",
        columns=["id", "amount", "weight", "day"],
        ids=[1, 2],
        null_text="n/a",
    )
    assert data.decode().split("\r\n")[1:3] == [
        "1;-1,5;-1,5;01.02.2024",
        "2;12345678901234567890,1234567890;1e+20;31.12.1999",
    ]


def test_polars_reads_the_de_de_csv_as_numbers(settings, demo):
    # Row 3's `Infinity` (PostgreSQL's spelling) is not one Polars infers as a number.
    cols = ["id", "ratio", "weight", "day"]
    data = run(settings, demo, module="demo", locale="de-DE", columns=cols, ids=[1, 2, 4])
    df = pl.read_csv(io.BytesIO(data), separator=";", decimal_comma=True, try_parse_dates=False)
    assert df.schema["weight"] == pl.Float64 and df.schema["ratio"] == pl.Float64
    assert df["weight"].to_list() == [-1.5, 1e20, 1234567.125]
    assert df["ratio"].to_list() == [-1.5, 0.25, 2.5]
    days = df["day"].str.to_date("%d.%m.%Y").to_list()
    assert days == [dt.date(2024, 2, 1), dt.date(1999, 12, 31), dt.date(2000, 1, 1)]
    # The numeric column keeps its exact text: parsed as a decimal with a comma.
    amounts = run(settings, demo, module="demo", locale="de-DE", columns=["id", "amount"])
    got = pl.read_csv(io.BytesIO(amounts), separator=";", infer_schema=False)["Amount"]
    assert Decimal(got[1].replace(",", ".")) == Decimal("12345678901234567890.1234567890")


def soffice() -> str:
    exe = shutil.which("soffice") or shutil.which("libreoffice")
    if exe is None:
        pytest.fail(
            "LibreOffice (soffice) is not installed: apt-get install libreoffice-calc-nogui"
        )
    return exe


def libreoffice_de(path: Path, out: Path) -> openpyxl.Workbook:
    """The CSV as German LibreOffice opens it, saved as XLSX."""
    # Tokens: ';' (59), '"' (34), UTF-8 (76), from line 1, no column formats, language
    # de-DE (1031), quoted fields not forced to text, special numbers (dates) detected.
    infilter = "CSV:59,34,76,1,,1031,false,true"
    subprocess.run(
        [
            soffice(),
            "--headless",
            "--norestore",
            f"-env:UserInstallation={(out / 'profile').as_uri()}",
            f"--infilter={infilter}",
            "--convert-to",
            "xlsx",
            "--outdir",
            str(out),
            str(path),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    return openpyxl.load_workbook(out / f"{path.stem}.xlsx")


@pytest.mark.libreoffice
def test_libreoffice_de_reads_numbers_and_dates(settings, demo, tmp_path):
    path = tmp_path / "demo.csv"
    path.write_bytes(run(settings, demo, module="demo", locale="de-DE"))
    rows = list(libreoffice_de(path, tmp_path).active.iter_rows(values_only=True))
    assert rows[0][1] == "Amount"
    first, second = rows[1], rows[2]
    assert first[1:4] == (-1.5, -1.5, -1.5)  # numbers, not text, though quoted
    assert first[5] == dt.datetime(2024, 2, 1)
    assert first[6] == dt.datetime(2024, 2, 1, 13, 14, 15)
    assert second[3] == 1e20 and second[2] == 0.25
    assert second[5] == dt.datetime(1999, 12, 31)
    assert second[7] == "'-1,5"  # text stays text
    assert rows[4][3] == 1234567.125
    assert sum(r[2] for r in rows[1:] if isinstance(r[2], float)) == -1.5 + 0.25 + 2.5


def test_explicit_options_override_the_preset(settings, demo):
    data = run(
        settings,
        demo,
        module="demo",
        locale="de-DE",
        delimiter="|",
        date_pattern="yyyy-MM-dd",
        timestamp_pattern="dd.MM.yyyy HH:mm:ss.SSS",
        true_text="ja",
        false_text="nein",
        null_text="NULL",
        columns=["id", "weight", "active", "day", "seen"],
    )
    assert data.decode().split("\r\n")[1:4] == [
        "1|-1,5|ja|2024-02-01|01.02.2024 13:14:15.678",
        "2|1e+20|nein|1999-12-31|01.07.2024 22:30:00.000",
        "3|Infinity|NULL|NULL|NULL",
    ]


def test_plain_request_is_unchanged(settings, demo):
    data = run(settings, demo, module="demo", columns=["id", "weight", "active", "day"], ids=[1])
    assert data.decode().split("\r\n")[1] == "1,-1.5,true,2024-02-01"


def test_one_boolean_label_keeps_the_other_plain(settings, demo):
    data = run(settings, demo, module="demo", columns=["id", "active"], false_text="no")
    assert data.decode().split("\r\n")[1:4] == ["1,true", "2,no", "3,"]
    with pytest.raises(errors.InvalidOption, match="must differ"):
        run(settings, demo, module="demo", false_text="true")


def test_en_us_preset(settings, demo):
    data = run(settings, demo, module="demo", locale="en-US", columns=["id", "day"], ids=[1])
    assert data.decode().split("\r\n")[1] == "1,02/01/2024"


@pytest.mark.parametrize(
    ("options", "code", "words"),
    [
        ({"locale": "xx-XX"}, "unknown_locale", "de-DE, en-GB, en-US, fr-FR"),
        ({"locale": "de-DE", "delimiter": ","}, "invalid_option", "also the delimiter"),
        ({"decimal_separator": ","}, "invalid_option", "also the delimiter"),
        ({"decimal_separator": "·"}, "invalid_option", "use '.' or ','"),
        ({"date_pattern": "dd.MM.yy"}, "invalid_pattern", "'y' at position 7"),
        ({"date_pattern": "%d.%m.%Y"}, "invalid_pattern", "'%'"),
        ({"date_pattern": "dd.MM"}, "invalid_pattern", "exactly once"),
        ({"date_pattern": "dd.MM.yyyy HH"}, "invalid_pattern", "may not use HH"),
        ({"date_pattern": "-yyyy-MM-dd"}, "invalid_pattern", "start with a token"),
        ({"timestamp_pattern": "yyyy-MM-dd SSS"}, "invalid_pattern", "exactly once"),
        ({"timestamp_pattern": "yyyy-MM-dd HH:mm.SSS"}, "invalid_pattern", "add ss"),
        ({"true_text": "=cmd"}, "invalid_option", "may not start"),
        ({"null_text": "a;b"}, "invalid_option", "may not start"),
        ({"true_text": "x", "false_text": "x"}, "invalid_option", "must differ"),
        ({"false_text": ""}, "invalid_option", "1 to 20"),
    ],
)
def test_bad_options_are_refused(settings, registry, options, code, words):
    with pytest.raises(errors.InvalidRequest) as caught:
        plan_export(ExportRequest(module="products", **options), registry, settings)
    assert caught.value.code == code and words in caught.value.message


def test_operator_preset_from_settings(settings, demo):
    custom = settings.model_copy(
        update={"locale_presets": {"nl-NL": {"delimiter": ";", "decimal_separator": ","}}}
    )
    plan = plan_export(ExportRequest(module="demo", locale="nl-NL"), demo, custom)
    assert (plan.request.delimiter, plan.request.decimal_separator) == (";", ",")
    broken = settings.model_copy(update={"locale_presets": {"x": {"date_pattern": "dd"}}})
    with pytest.raises(errors.ConfigError, match="EXPORTFLOW_LOCALE_PRESETS: preset 'x'"):
        plan_export(ExportRequest(module="demo", locale="x"), demo, broken)


def test_pattern_translation():
    assert strftime("dd.MM.yyyy HH:mm:ss.SSSSSS") == "%d.%m.%Y %H:%M:%S.%6f"
    assert excel_format("MM/dd/yyyy") == "mm\\/dd\\/yyyy"
    assert excel_format("yyyy-MM-ddTHH:mm") == "yyyy\\-mm\\-dd\\Thh:mm"
