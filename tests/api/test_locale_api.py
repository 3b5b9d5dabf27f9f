"""Locale and formatting options through POST /api/{module}/export and its preview."""

from __future__ import annotations

import io

import psycopg
import pytest

from api.options import ExportOptions, to_request
from flows.datapath.engine import export
from flows.datapath.request import plan_export

BODY = {
    "selectedColumns": ["id", "price", "released_on"],
    "filters": [{"column": "id", "op": "lte", "value": 3}],
    "locale": "de-DE",
    "formatting": {"nullText": "n/a", "datePattern": "yyyy-MM-dd"},
}


@pytest.fixture
def headers(token, user):
    return {"Authorization": f"Bearer {token(user, 'products:read')}"}


def jobs_of(db_url: str, user: str) -> int:
    with psycopg.connect(db_url) as conn:
        query = "SELECT count(*) FROM export_jobs WHERE user_id = %s"
        return conn.execute(query, (user,)).fetchone()[0]


def test_translation_maps_the_formatting_options():
    req = to_request("products", ExportOptions.model_validate(BODY))
    assert (req.locale, req.null_text, req.date_pattern) == ("de-DE", "n/a", "yyyy-MM-dd")
    assert req.delimiter is None  # the locale's, filled in at planning
    with_csv = {**BODY, "csv": {"delimiter": "|"}}
    assert to_request("products", ExportOptions.model_validate(with_csv)).delimiter == "|"


def test_direct_export_is_the_engines_localised_file(client, headers, registry, api_settings):
    resp = client.post("/api/products/export", json=BODY, headers=headers)
    assert resp.status_code == 200, resp.text
    plan = plan_export(
        to_request("products", ExportOptions.model_validate(BODY)), registry, api_settings
    )
    buf = io.BytesIO()
    export(api_settings.database_url, plan, buf, api_settings)
    assert resp.content == buf.getvalue()
    assert resp.content.decode().split("\r\n")[:2] == ["ID;Price;Released on", "1;79,19;2020-01-02"]


def test_preview_validates_the_locale(client, headers, user, api_settings):
    ok = client.post("/api/products/export/preview", json=BODY, headers=headers)
    assert ok.status_code == 200, ok.text
    bad = client.post("/api/products/export/preview", json={"locale": "xx"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "unknown_locale"
    assert "de-DE, en-GB, en-US, fr-FR" in bad.json()["error"]["message"]


@pytest.mark.parametrize(
    ("formatting", "code"),
    [
        ({"timestampPattern": "yyyy-MM-dd hh:mm"}, "invalid_pattern"),
        ({"decimalSeparator": ";"}, "invalid_request"),  # FastAPI's own check of the enum
        ({"decimalSeparator": ",", "nullText": "x", "delimiterToo": True}, "invalid_option"),
        ({"trueText": "@x"}, "invalid_option"),
        ({"colour": "red"}, "invalid_request"),
    ],
)
def test_bad_formatting_is_a_422_and_no_job(client, headers, user, api_settings, formatting, code):
    body = {"locale": "de-DE", "formatting": formatting}
    if formatting.pop("delimiterToo", False):  # the decimal comma is also the delimiter
        body["csv"] = {"delimiter": ","}
    resp = client.post("/api/products/export", json=body, headers=headers)
    assert resp.status_code == 422 and resp.json()["error"]["code"] == code, resp.text
    assert jobs_of(api_settings.database_url, user) == 0
