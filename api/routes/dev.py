"""POST /api/dev/token: a token for every module, in development only (create_app adds it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import jwt
from fastapi import APIRouter, Body
from pydantic import Field

from api.deps import ServicesDep
from api.options import Strict
from api.schemas import DevToken, ErrorBody
from flows.control.tokens import mint_token

TTL = timedelta(hours=12)
router = APIRouter(tags=["development"])


class TokenRequest(Strict):
    """Who the token names."""

    user: str = Field("demo", min_length=1, max_length=200)


@router.post(
    "/api/dev/token",
    response_model=DevToken,
    responses={code: {"model": ErrorBody} for code in (413, 422)},
)
def dev_token(
    services: ServicesDep, body: Annotated[TokenRequest | None, Body()] = None
) -> DevToken:
    """A 12-hour token holding every module's permission, for trying the export page."""
    user = (body or TokenRequest()).user
    perms = sorted({ds.permission for ds in services.rt.registry.modules.values()})
    token = mint_token(services.settings, user, perms, int(TTL.total_seconds()))
    # The token's own expiry, not a second clock reading.
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    expires = datetime.fromtimestamp(exp, UTC)
    return DevToken(token=token, user=user, permissions=perms, expires_at=expires)
