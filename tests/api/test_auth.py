"""Bearer tokens: HS256 with the shared secret, RS256/ES256 from a JWKS served on loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr

from api.auth import permissions
from api.deps import CallerDep
from flows.control.errors import ConfigError
from flows.control.tokens import mint_token
from tests.api.conftest import JWT_SECRET

# GET /api/exports needs only a valid token: it shows what the token's user may see.
PROBE = "/api/exports"
INVALID = 'Bearer error="invalid_token"'


def claims(**extra) -> dict:
    now = int(time.time())
    # Parametrised tokens are minted at collection: they must outlive a long session.
    return {"sub": "alice", "exp": now + 6 * 3600, "iat": now, **extra}


def hs256(payload: dict, secret: str = JWT_SECRET, **kw) -> str:
    return jwt.encode(payload, secret, algorithm="HS256", **kw)


def call(client, token: str | None, scheme: str = "Bearer"):
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    return client.get(PROBE, headers=headers)


def assert_invalid(resp, needle: str = ""):
    assert resp.status_code == 401, resp.text
    assert resp.headers["www-authenticate"] == INVALID
    err = resp.json()["error"]
    assert err["code"] == "invalid_token"
    assert needle in err["message"]


def test_a_valid_hs256_token_is_accepted(client):
    resp = call(client, hs256(claims()))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"items": [], "nextCursor": None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(payload: dict) -> str:
    head = json.dumps({"alg": "none", "typ": "JWT"}).encode()
    return f"{_b64(head)}.{_b64(json.dumps(payload).encode())}."


@pytest.mark.parametrize(
    ("token", "needle"),
    [
        pytest.param(None, "Authorization: Bearer", id="missing"),
        pytest.param("", "Authorization: Bearer", id="empty"),
        pytest.param("not-a-jwt", "not a JWT", id="malformed"),
        pytest.param("a.b.c", "not a JWT", id="garbage-parts"),
        pytest.param(hs256(claims(exp=int(time.time()) - 3600)), "expired", id="expired"),
        pytest.param(
            hs256(claims(), secret="another-secret-0123456789abcdef-xyz"),
            "bad signature",
            id="wrong-secret",
        ),
        pytest.param(_unsigned(claims()), "'none'", id="alg-none"),
        pytest.param(hs256({"sub": "alice"}), "`exp`", id="no-exp"),
        pytest.param(hs256({"exp": int(time.time()) + 60}), "`sub`", id="no-sub"),
        pytest.param(hs256(claims(sub="")), "`sub`", id="empty-sub"),
        pytest.param(hs256(claims(nbf=int(time.time()) + 3600)), "not valid yet", id="future"),
    ],
)
def test_bad_tokens_are_401_invalid_token(client, token, needle):
    assert_invalid(call(client, token), needle)


def test_another_scheme_is_refused(client):
    assert_invalid(call(client, hs256(claims()), scheme="Basic"), "Bearer")


def test_hs256_token_cannot_pose_as_rs256(client):
    # Signed with the shared secret under an RS256 header: no key set is configured.
    head = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims()).encode())
    sig = hmac.new(JWT_SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert_invalid(call(client, f"{head}.{body}.{_b64(sig)}"), "'RS256'")


def test_permissions_from_list_or_scope():
    assert permissions({"permissions": ["tags:read", 7]}) == ["tags:read"]
    assert permissions({"scope": "tags:read products:read"}) == ["tags:read", "products:read"]
    assert permissions({}) == []


def test_minted_token_carries_user_and_permissions(api_settings):
    token = mint_token(api_settings, "bob", ["tags:read"], ttl=60)
    got = jwt.decode(token, JWT_SECRET, algorithms=["HS256"])
    assert got["sub"] == "bob" and got["permissions"] == ["tags:read"]
    assert 55 <= got["exp"] - time.time() <= 60


def test_issuer_and_audience_are_checked_when_configured(create_app, api_settings, rt):
    from fastapi.testclient import TestClient

    settings = api_settings.model_copy(update={"jwt_issuer": "idp", "jwt_audience": "exportflow"})
    with TestClient(create_app(settings, rt=rt)) as c:
        good = hs256(claims(iss="idp", aud="exportflow"))
        assert call(c, good).status_code == 200
        assert_invalid(call(c, hs256(claims(iss="other", aud="exportflow"))), "wrong issuer")
        assert_invalid(call(c, hs256(claims(iss="idp", aud="other"))), "wrong audience")
        assert call(c, mint_token(settings, "alice", [], 60)).status_code == 200


def test_production_needs_a_token_key(create_app, api_settings):
    settings = api_settings.model_copy(update={"jwt_secret": None, "jwks_url": None})
    with pytest.raises(ConfigError, match="EXPORTFLOW_JWT_SECRET"):
        create_app(settings)


def test_development_derives_the_token_key_from_the_secret(create_app, api_settings, rt):
    from fastapi.testclient import TestClient

    settings = api_settings.model_copy(update={"jwt_secret": None, "env": "development"})
    token = mint_token(settings, "alice", [], 60)
    with TestClient(create_app(settings, rt=rt)) as c:
        assert call(c, token).status_code == 200
        assert_invalid(call(c, hs256(claims(), secret=settings.secret_key.get_secret_value())))


# --- RS256 / ES256 from a key set served on loopback ---


class KeySet:
    """A JWKS endpoint in a thread, with an RSA and an EC key."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        keys = []
        for kid, key, alg in (("r1", self.rsa, "RS256"), ("e1", self.ec, "ES256")):
            jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
        body = json.dumps({"keys": keys}).encode()
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                """Keep access lines out of the test output."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sign(self, payload: dict, kid: str) -> str:
        key, alg = (self.rsa, "RS256") if kid.startswith("r") else (self.ec, "ES256")
        return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture(scope="module")
def keyset():
    ks = KeySet()
    yield ks
    ks.server.shutdown()


@pytest.fixture
def jwks_client(create_app, api_settings, rt, keyset):
    from fastapi.testclient import TestClient

    settings = api_settings.model_copy(update={"jwt_secret": None, "jwks_url": keyset.url})
    with TestClient(create_app(settings, rt=rt)) as c:
        yield c


@pytest.mark.parametrize("kid", ["r1", "e1"], ids=["RS256", "ES256"])
def test_key_set_tokens_are_accepted(jwks_client, keyset, kid):
    resp = call(jwks_client, keyset.sign(claims(scope="tags:read"), kid))
    assert resp.status_code == 200, resp.text


def test_key_set_rejects_unknown_kid_foreign_key_and_hs256(jwks_client, keyset):
    assert_invalid(call(jwks_client, keyset.sign(claims(), "r-unknown")), "known key")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims(), other, algorithm="RS256", headers={"kid": "r1"})
    assert_invalid(call(jwks_client, forged), "bad signature")
    # No shared secret is configured, so an HS256 token has nothing to verify against.
    assert_invalid(call(jwks_client, hs256(claims())), "'HS256'")
    expired = keyset.sign(claims(exp=int(time.time()) - 600), "e1")
    assert_invalid(call(jwks_client, expired), "expired")


def test_unreachable_key_set_is_503(create_app, api_settings, rt, keyset):
    from fastapi.testclient import TestClient

    from tests.e2e.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/jwks.json"
    settings = api_settings.model_copy(update={"jwt_secret": None, "jwks_url": url})
    with TestClient(create_app(settings, rt=rt)) as c:
        resp = call(c, keyset.sign(claims(), "r1"))
    assert resp.status_code == 503
    assert resp.json()["error"]["details"] == {"part": "key set"}


def test_jwt_secret_setting_is_secret(api_settings):
    assert isinstance(api_settings.jwt_secret, SecretStr)
    assert JWT_SECRET not in repr(api_settings)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"permissions": ["tags:read", "products:read"]}, ["products:read", "tags:read"]),
        ({"scope": "tags:read products:read"}, ["products:read", "tags:read"]),
        ({}, []),
    ],
)
def test_the_dependency_gives_the_caller(create_app, api_settings, rt, extra, expected):
    from fastapi import APIRouter
    from fastapi.testclient import TestClient

    router = APIRouter()

    @router.get("/whoami")
    def whoami(caller: CallerDep) -> dict:
        return {"user": caller.user_id, "permissions": sorted(caller.permissions)}

    app = create_app(api_settings, rt=rt)
    app.include_router(router)
    with TestClient(app) as c:
        resp = c.get("/whoami", headers={"Authorization": f"Bearer {hs256(claims(**extra))}"})
    assert resp.json() == {"user": "alice", "permissions": expected}
