"""Development and test tokens: HS256 JWTs that the API accepts, minted by `exportflow token`."""

from __future__ import annotations

import time
from collections.abc import Iterable

import jwt

from flows.control.errors import ConfigError
from flows.control.settings import Settings

# Development tokens are signed with a key derived for this purpose alone, so a token key
# never verifies a download link and the other way round.
TOKEN_PURPOSE = "token"


def token_secret(settings: Settings) -> bytes | None:
    """The HS256 key; None when tokens are verified by a key set alone."""
    # EXPORTFLOW_JWT_SECRET, else, in development only, a key derived from the secret key.
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value().encode()
    if settings.env == "development":
        return settings.secret(TOKEN_PURPOSE)
    if settings.jwks_url:
        return None
    raise ConfigError(
        "the API needs EXPORTFLOW_JWT_SECRET (HS256) or EXPORTFLOW_JWKS_URL (RS256/ES256)"
        " to verify bearer tokens, or EXPORTFLOW_ENV=development"
    )


def mint_token(settings: Settings, user: str, permissions: Iterable[str], ttl: int = 3600) -> str:
    """An HS256 token for `user` that the API accepts (development, tests, the CLI)."""
    secret = token_secret(settings)
    if secret is None:
        raise ConfigError("tokens can only be minted with EXPORTFLOW_JWT_SECRET set")
    now = int(time.time())
    claims: dict = {"sub": user, "permissions": list(permissions), "iat": now, "exp": now + ttl}
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, secret, algorithm="HS256")
