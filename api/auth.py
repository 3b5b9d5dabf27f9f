"""Bearer JWTs: HS256 with a shared secret, or RS256/ES256 keys from a JWKS URL.

`sub` is the user; permissions come from a `permissions` list claim or an OAuth2 `scope`
string ("tags:read products:read"); `exp` is required. Every failure is a 401
`invalid_token` whose message says what was wrong, never which key was tried.
"""

from __future__ import annotations

import jwt

from api.errors import AuthUnavailable, Unauthorized
from flows.control.settings import Settings
from flows.control.tokens import token_secret
from flows.datapath.access import Caller

SHARED = ("HS256",)
PUBLIC = ("RS256", "ES256")
LEEWAY_SECONDS = 30


class TokenVerifier:
    """Checks bearer tokens against the configured keys and gives the Caller."""

    def __init__(self, settings: Settings) -> None:
        self.secret = token_secret(settings)
        # PyJWKClient caches the key set and refetches when a token names an unknown kid.
        self.jwks = (
            jwt.PyJWKClient(settings.jwks_url, cache_keys=True, timeout=5)
            if settings.jwks_url
            else None
        )
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience

    def caller(self, authorization: str | None) -> Caller:
        """The Caller an `Authorization: Bearer <jwt>` header names; Unauthorized if none."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send `Authorization: Bearer <token>`")
        claims = self.claims(token.strip())
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise Unauthorized("the token has no `sub` (user) claim")
        return Caller(sub, frozenset(permissions(claims)), email_of(claims))

    def claims(self, token: str) -> dict:
        """The verified claims of `token`."""
        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError:
            raise Unauthorized("the token is not a JWT") from None
        key, algorithms = self._key(token, alg)
        try:
            return jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired; get a new one") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"the token has no `{exc.claim}` claim") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"the token is not valid ({_reason(exc)})") from None

    def _key(self, token: str, alg: object):
        # The algorithm is fixed by which key verifies it, never taken from the token alone:
        # `none`, or HS256 signed with a public key, cannot pass.
        if alg in SHARED and self.secret is not None:
            return self.secret, list(SHARED)
        if alg in PUBLIC and self.jwks is not None:
            try:
                return self.jwks.get_signing_key_from_jwt(token), list(PUBLIC)
            except jwt.PyJWKClientConnectionError:
                raise AuthUnavailable("the token key set could not be fetched") from None
            except (jwt.PyJWKClientError, jwt.InvalidTokenError):
                raise Unauthorized("the token is not signed by a known key") from None
        raise Unauthorized(f"tokens signed with {alg!r} are not accepted")


def permissions(claims: dict) -> list[str]:
    """Permissions from a `permissions` list, else from an OAuth2 `scope` string."""
    listed = claims.get("permissions")
    if isinstance(listed, list):
        return [p for p in listed if isinstance(p, str)]
    scope = claims.get("scope")
    return scope.split() if isinstance(scope, str) else []


def email_of(claims: dict) -> str | None:
    """The token's `email` claim, unless the issuer says it is not verified."""
    email = claims.get("email")
    if not isinstance(email, str) or claims.get("email_verified") is False:
        return None
    return email.strip() or None


def _reason(exc: jwt.InvalidTokenError) -> str:
    if isinstance(exc, jwt.InvalidSignatureError):
        return "bad signature"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "wrong audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong issuer"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "not valid yet"
    return "malformed"
