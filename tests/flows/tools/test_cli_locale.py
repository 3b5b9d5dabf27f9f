"""Locale and formatting options on the command line: the export's file, the refusals,
and the body `submit` sends to the API."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.options import ExportOptions, to_request
from flows.tools.cli import build_parser
from flows.tools.cli_client import api_body
from tests.flows.tools.cli_run import exportflow


def test_export_with_a_locale_and_an_override(cli_env, tmp_path: Path):
    out = tmp_path / "p.csv"
    args = ["--columns", "id,price,released_on,in_stock", "--filter", "id:lte:2"]
    run = exportflow(
        cli_env, "export", "products", *args, "--locale", "de-DE", "--true-text", "ja",
        "-o", str(out),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = out.read_bytes().decode().split("\r\n")
    assert lines[:3] == [
        "ID;Price;Released on;In stock",
        "1;79,19;02.01.2020;FALSCH",
        "2;158,38;03.01.2020;ja",
    ]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--locale", "xx-XX"], "unknown_locale"),
        (["--date-pattern", "dd.MM.yy"], "invalid_pattern"),
        (["--decimal-separator", ","], "invalid_option"),
        (["--null-text", "=0"], "invalid_option"),
    ],
)
def test_bad_formatting_exits_2_and_writes_nothing(cli_env, tmp_path: Path, args, code):
    out = tmp_path / "out.csv"
    run = exportflow(cli_env, "export", "products", *args, "-o", str(out))
    assert run.returncode == 2 and run.stderr.startswith(f"error [{code}]: ")
    assert not out.exists()


def test_submit_sends_the_options_the_api_reads_back():
    argv = ["submit", "products", "--locale", "de-DE", "--null-text", "n/a", "--bom"]
    body = api_body(build_parser().parse_args([*argv, "--date-pattern", "yyyy-MM-dd"]))
    assert body["locale"] == "de-DE" and body["csv"] == {"bom": True, "gzip": False, "header": True}
    assert body["formatting"] == {"nullText": "n/a", "datePattern": "yyyy-MM-dd"}
    req = to_request("products", ExportOptions.model_validate(body))
    assert (req.locale, req.null_text, req.date_pattern, req.delimiter) == (
        "de-DE", "n/a", "yyyy-MM-dd", None,
    )  # fmt: skip
