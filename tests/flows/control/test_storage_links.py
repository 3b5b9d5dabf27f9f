"""Download links: HMAC-signed API links for the local folder, SigV4 presigned URLs for S3."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

import pytest
from pydantic import SecretStr

from flows.control.errors import ConfigError
from flows.control.settings import DEFAULT_SECRET, Settings
from flows.control.storage import Storage, sign_local, verify_local
from tests.flows.control.storage_helpers import API, SECRET, MiB, fetch, payload, with_query

# The key local links are signed with: derived from the secret for this one purpose.
LINK_KEY = Settings(_env_file=None, secret_key=SecretStr(SECRET)).secret("download")


def parse_local_link(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    prefix = urlsplit(API).path + "/downloads/"
    assert parts.path.startswith(prefix), url
    query = parse_qs(parts.query)
    assert set(query) == {"expires", "signature"}
    return unquote(parts.path[len(prefix) :]), int(query["expires"][0]), query["signature"][0]


def test_local_sign_gives_an_api_link_that_verifies_until_expiry(local: Storage):
    key = "exports/user 7/report ü.csv"
    before = int(time.time())
    url = local.sign(key, 3600)

    assert url.startswith(f"{API}/downloads/")
    link_key, expires, signature = parse_local_link(url)
    assert link_key == key
    assert before + 3600 <= expires <= int(time.time()) + 3600
    assert verify_local(link_key, expires, signature, LINK_KEY)
    assert verify_local(link_key, expires, signature, LINK_KEY, now=expires)
    assert not verify_local(link_key, expires, signature, LINK_KEY, now=expires + 1)


def test_local_link_expires_in_real_time(local: Storage):
    key, expires, signature = parse_local_link(local.sign("exports/soon.csv", 1))
    assert verify_local(key, expires, signature, LINK_KEY)
    time.sleep(max(0.0, expires - time.time()) + 1.1)
    assert not verify_local(key, expires, signature, LINK_KEY)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda k, e, s: (k + "x", e, s), id="other-key"),
        pytest.param(lambda k, e, s: ("exports/other.csv", e, s), id="someone-elses-file"),
        pytest.param(lambda k, e, s: (k, e + 3600, s), id="extended-expiry"),
        pytest.param(lambda k, e, s: (k, e, s[:-1] + ("0" if s[-1] != "0" else "1")), id="sig"),
        pytest.param(lambda k, e, s: (k, e, s.upper()), id="sig-case"),
        pytest.param(lambda k, e, s: (k, e, s[:20]), id="sig-truncated"),
        pytest.param(lambda k, e, s: (k, e, ""), id="sig-empty"),
        pytest.param(lambda k, e, s: (k, e, "é" * 64), id="sig-non-ascii"),
    ],
)
def test_local_link_rejects_tampering(local: Storage, tamper):
    key, expires, signature = parse_local_link(local.sign("exports/mine.csv", 3600))
    assert verify_local(key, expires, signature, LINK_KEY)
    assert not verify_local(*tamper(key, expires, signature), LINK_KEY)


def test_local_link_quotes_the_key(local: Storage):
    key = "exports/a b/ç?&=#.csv"
    url = local.sign(key, 60)
    assert quote(key) in url
    assert parse_local_link(url)[0] == key


def test_local_link_rejects_another_secret(local: Storage):
    key, expires, signature = parse_local_link(local.sign("exports/mine.csv", 3600))
    assert not verify_local(key, expires, signature, b"another-secret")
    assert signature == sign_local(key, expires, LINK_KEY)


def test_local_link_is_signed_for_downloads_only(local: Storage, local_settings: Settings):
    """A signature made with the token key, or with the raw secret, never passes as a link."""
    key, expires, signature = parse_local_link(local.sign("exports/mine.csv", 3600))
    assert local.verify(key, expires, signature)
    token_key = local_settings.secret("token")
    assert token_key != LINK_KEY
    assert not verify_local(key, expires, signature, token_key)
    assert not local.verify(key, expires, sign_local(key, expires, token_key))
    assert not local.verify(key, expires, sign_local(key, expires, SECRET.encode()))
    assert not local.verify(key, expires + 1, signature)


@pytest.mark.parametrize("env", ["production", None], ids=["production", "unset"])
def test_default_secret_outside_development_refuses_to_sign(tmp_path, env):
    options = {"env": env} if env else {}
    settings = Settings(_env_file=None, data_dir=tmp_path, **options)
    assert settings.secret_key.get_secret_value() == DEFAULT_SECRET
    store = Storage.from_settings(settings)
    with pytest.raises(ConfigError) as err:
        store.sign("exports/mine.csv", 60)
    assert "EXPORTFLOW_SECRET_KEY" in err.value.message
    with pytest.raises(ConfigError):
        store.verify("exports/mine.csv", int(time.time()) + 60, "0" * 64)


def test_default_secret_signs_in_development(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path, env="development", public_api_url=API)
    store = Storage.from_settings(settings)
    key, expires, signature = parse_local_link(store.sign("exports/mine.csv", 60))
    assert store.verify(key, expires, signature)
    assert verify_local(key, expires, signature, settings.secret("download"))


def test_s3_sign_gives_a_sigv4_url_that_downloads_the_bytes(store: Storage, s3_server):
    key = "exports/user 7/report ü.csv"
    data = payload(2 * MiB + 1)
    with store.open_write(key) as f:
        f.write(data)

    url = store.sign(key, 600)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert url.startswith(s3_server.endpoint_url + "/")
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["600"]
    assert query["X-Amz-Credential"][0].startswith(s3_server.access_key + "/")
    assert "X-Amz-Signature" in query
    assert s3_server.secret_key not in url

    assert fetch(url) == (200, data)


def test_s3_expired_url_is_refused(store: Storage):
    with store.open_write("exports/soon.csv") as f:
        f.write(b"id\n1\n")
    url = store.sign("exports/soon.csv", 2)
    assert fetch(url) == (200, b"id\n1\n")
    # Valid from X-Amz-Date (whole seconds) for X-Amz-Expires seconds.
    signed = parse_qs(urlsplit(url).query)["X-Amz-Date"][0]
    expiry = datetime.strptime(signed, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp() + 2
    time.sleep(max(0.0, expiry - time.time()) + 1.1)
    status, body = fetch(url)
    assert status == 403, body
    assert b"id\n1\n" not in body


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda q: {"X-Amz-Signature": flip(q["X-Amz-Signature"])}, id="signature"),
        pytest.param(lambda q: {"X-Amz-Expires": "604800"}, id="extended-expiry"),
        pytest.param(lambda q: {"X-Amz-Credential": "other/" + q["X-Amz-Credential"]}, id="key"),
        pytest.param(lambda q: {"X-Amz-Signature": ""}, id="no-signature"),
    ],
)
def test_s3_tampered_url_is_refused(store: Storage, tamper):
    with store.open_write("exports/mine.csv") as f:
        f.write(b"secret rows\n")
    url = store.sign("exports/mine.csv", 600)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    status, body = fetch(with_query(url, **tamper(query)))
    assert status in (400, 403), body  # 400 only for a signature that is missing outright
    assert b"secret rows" not in body


def test_s3_url_for_one_key_does_not_open_another(store: Storage):
    for key, rows in (("exports/mine.csv", b"my rows"), ("exports/theirs.csv", b"their rows")):
        with store.open_write(key) as f:
            f.write(rows)
    url = store.sign("exports/mine.csv", 600)
    parts = urlsplit(url)
    other = urlunsplit(parts._replace(path=parts.path.replace("mine.csv", "theirs.csv")))
    status, body = fetch(other)
    assert status == 403, body
    assert b"their rows" not in body


def flip(sig: str) -> str:
    return sig[:-1] + ("0" if sig[-1] != "0" else "1")
