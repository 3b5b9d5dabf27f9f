"""The request's `notify` option: who to tell when a background export ends, checked when
the export is asked for so that a bad one is refused before anything is created."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from flows.control import errors
from flows.control.settings import Settings
from flows.control.ssrf import check_url
from flows.datapath.access import Caller

# One address, nothing a mail header could be split on.
ADDRESS = re.compile(r"^[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+\.[^@\s<>,;:\"()\[\]\\]+$")


class Notify(BaseModel):
    """Tell the caller when the export ends: by email to their token's address, and/or by a
    signed POST to a webhook. Only background exports notify: asking makes one."""

    model_config = ConfigDict(extra="forbid")

    email: bool = Field(False, description="Email the address of the caller's token.")
    webhook: str | None = Field(None, description="An https URL on the allowed hosts.")
    # Filled from the caller's token when the export is asked for, never sent by a client.
    address: str | None = None


def check_notify(notify: Notify | None, settings: Settings, caller: Caller) -> Notify | None:
    """`notify` checked for `caller`, with the token's email address filled in; an
    InvalidRequest with a stable code saying what to change."""
    if notify is None:
        return None
    if not notify.email and notify.webhook is None:
        raise errors.InvalidNotify(
            "notify asks for nothing; set email: true and/or webhook, or leave notify out"
        )
    if notify.webhook is not None:
        check_url(notify.webhook, settings)
    if not notify.email:
        return notify.model_copy(update={"address": None})
    if settings.smtp_host is None:
        raise errors.NotifyEmailUnavailable(
            "this service sends no email (no SMTP server is configured); use a webhook"
        )
    if caller.email is None or not ADDRESS.match(caller.email):
        raise errors.NotifyEmailUnavailable(
            "your token carries no usable `email` claim; use a webhook, or a token with"
            " your email address"
        )
    return notify.model_copy(update={"address": caller.email})
