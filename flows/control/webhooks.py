"""Signed webhooks: `Exportflow-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`,
POSTed to the address the SSRF guard checked, never following a redirect."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import ssl
import time
from dataclasses import dataclass

import httpx

from flows.control.errors import NotificationFailed, NotificationUnavailable
from flows.control.settings import Settings
from flows.control.ssrf import check_url, resolve

SIGNATURE_HEADER = "Exportflow-Signature"
PURPOSE = "webhook"
USER_AGENT = "exportflow-webhooks/1"


def signing_secret(settings: Settings) -> bytes:
    """The deployment's webhook secret: EXPORTFLOW_WEBHOOK_SECRET, else derived."""
    if settings.webhook_secret is not None:
        return settings.webhook_secret.get_secret_value().encode()
    return settings.secret(PURPOSE).hex().encode()


def sign(body: bytes, secret: bytes | str, timestamp: int | None = None) -> str:
    """The signature header's value for `body` at `timestamp` (now by default)."""
    key = secret.encode() if isinstance(secret, str) else secret
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(key, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(body: bytes, header: str, secret: bytes | str, tolerance: int = 300) -> bool:
    """Whether `header` signs `body` with `secret` within `tolerance` seconds of now (any
    of several v1 values may match, so a secret can be rotated)."""
    key = secret.encode() if isinstance(secret, str) else secret
    t, macs = None, []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            t = int(value)
        elif name == "v1":
            macs.append(value.encode())
    if t is None or not macs or abs(time.time() - t) > tolerance:
        return False
    expected = hmac.new(key, f"{t}.".encode() + body, hashlib.sha256).hexdigest().encode()
    return any(hmac.compare_digest(expected, mac) for mac in macs)


@dataclass(frozen=True)
class Delivery:
    """A delivered webhook: the receiver's status and the address it was sent to."""

    status_code: int
    address: str


def post(url: str, payload: dict, settings: Settings, headers: dict | None = None) -> Delivery:
    """POST `payload` signed; NotificationUnavailable (retry) on 5xx, timeouts and lost
    connections, NotificationFailed (never retried) on 4xx, 3xx and refused addresses."""
    target = check_url(url, settings)  # the allow-list may have changed since the request
    ip = resolve(target, settings)
    body = json.dumps(payload, separators=(",", ":")).encode()
    host = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else str(ip)
    # Connect to the checked address, not the name: it cannot resolve elsewhere meanwhile.
    # TLS still names the host (SNI) and checks its certificate; Host names it for routing.
    pinned = httpx.URL(url).copy_with(host=host)
    authority = target.host if httpx.URL(url).port is None else f"{target.host}:{target.port}"
    sent = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Host": authority,
        SIGNATURE_HEADER: sign(body, signing_secret(settings)),
        **(headers or {}),
    }
    try:
        with httpx.Client(
            verify=tls_context(settings),
            timeout=settings.notify_timeout_seconds,
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: the checked address is the peer
        ) as client:
            response = client.post(
                pinned, content=body, headers=sent, extensions={"sni_hostname": target.host}
            )
    except httpx.TimeoutException as exc:
        raise NotificationUnavailable(f"the webhook timed out ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        raise NotificationUnavailable(f"the webhook could not be reached ({exc})") from None
    code = response.status_code
    if code >= 500:
        raise answered(NotificationUnavailable(f"the webhook answered {code}"), code)
    if code >= 300:
        why = "a redirect, which is not followed" if code < 400 else "a refusal"
        raise answered(NotificationFailed(f"the webhook answered {code} ({why})"), code)
    return Delivery(code, str(ip))


def answered(exc: Exception, status_code: int) -> Exception:
    """`exc` carrying the receiver's HTTP status, which the attempt's record keeps."""
    exc.status_code = status_code
    return exc


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Certificates checked against the system's CAs, or the configured bundle."""
    if settings.notify_ca_file is not None:
        return ssl.create_default_context(cafile=str(settings.notify_ca_file))
    return ssl.create_default_context()
