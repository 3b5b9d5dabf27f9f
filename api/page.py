"""The export page: the static files of `api/static/`, behind every path the API owns."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.routing import Match, Mount
from starlette.types import Scope

STATIC = Path(__file__).parent / "static"


class Fallback(Mount):
    """A mount that answers only what no route matches even in part.

    A mount at / matches every path fully, so it would take `PUT /healthz` or
    `GET /api/{module}/export` before the router could answer them 405 with their own
    Allow header. Claiming only a partial match puts it behind every route: the router
    takes the first partial match, and the mount is the last route.
    """

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        # Files are only read: `POST /api/nowhere` stays the router's 404, not a 405.
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD"):
            return Match.NONE, {}
        match, child = super().matches(scope)
        return (Match.PARTIAL if match == Match.FULL else match), child


def mount_page(app: FastAPI) -> None:
    """Serve the page at / (index.html for a folder); call after every router is added."""
    app.router.routes.append(
        Fallback("/", app=StaticFiles(directory=STATIC, html=True), name="page")
    )
