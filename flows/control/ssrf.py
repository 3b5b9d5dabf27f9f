"""Where a webhook may go: the URL's scheme and host when it is asked for, and at delivery
the addresses its host resolves to, so a notification cannot reach the internal network."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from flows.control.errors import InvalidWebhookUrl, WebhookAddressRefused, WebhookHostNotAllowed
from flows.control.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Cloud metadata services: refused even where private addresses are allowed.
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
MAX_URL_CHARS = 2000


@dataclass(frozen=True)
class Target:
    """A checked webhook URL: its scheme, host (lower case, no trailing dot) and port."""

    url: str
    scheme: str
    host: str
    port: int


def check_url(url: str, settings: Settings) -> Target:
    """The webhook URL's target, or a 4xx-class error saying what to change."""
    if len(url) > MAX_URL_CHARS:
        raise InvalidWebhookUrl(f"the webhook URL is over {MAX_URL_CHARS} characters; shorten it")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidWebhookUrl(
            "the webhook URL is not a valid URL; send https://host/path"
        ) from None
    schemes = ("https", "http") if settings.env == "development" else ("https",)
    if parts.scheme not in schemes:
        raise InvalidWebhookUrl(
            f"the webhook URL must start with https:// (not {parts.scheme or 'nothing'}://)"
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhookUrl("the webhook URL must not hold a user or password; remove them")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidWebhookUrl("the webhook URL holds spaces or control characters; encode them")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InvalidWebhookUrl("the webhook URL has no host; send https://host/path")
    if not host_allowed(host, settings.webhook_allowed_hosts):
        listed = ", ".join(settings.webhook_allowed_hosts) or "none are configured"
        raise WebhookHostNotAllowed(
            f"webhooks may not go to {host!r}; use a host on EXPORTFLOW_WEBHOOK_ALLOWED_HOSTS"
            f" ({listed})"
        )
    return Target(url, parts.scheme, host, port or (443 if parts.scheme == "https" else 80))


def host_allowed(host: str, patterns: list[str]) -> bool:
    """Whether `host` is listed exactly or falls under a `*.example.com` pattern (which
    matches subdomains at any depth, not example.com itself)."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.strip().lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def address_allowed(ip: IPAddress, allow_private: bool) -> bool:
    """Whether a webhook may connect to `ip`: public unicast, or with `allow_private` also
    loopback, private and link-local ones; never multicast, unspecified or metadata."""
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if ip in METADATA or ip.is_multicast or ip.is_unspecified:
        return False
    if ip.is_global:
        return True
    return allow_private and (ip.is_loopback or ip.is_private or ip.is_link_local)


def resolve(target: Target, settings: Settings) -> IPAddress:
    """The address to connect to: the host is resolved once and every address it resolves
    to must be allowed, so a name that also points inside cannot be used to get there."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise WebhookAddressRefused(
            f"the webhook host {target.host!r} does not resolve; check the URL", str(exc)
        ) from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    allow_private = settings.webhook_allow_private_addresses
    refused = [ip for ip in addresses if not address_allowed(ip, allow_private)]
    if refused or not addresses:
        raise WebhookAddressRefused(
            f"the webhook host {target.host!r} resolves to an address webhooks may not reach"
            f" ({', '.join(map(str, refused))})"
        )
    return addresses[0]
