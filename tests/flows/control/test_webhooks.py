"""Signed webhooks to a real HTTPS receiver on loopback (a test CA's certificate)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flows.control.errors import (
    NotificationFailed,
    NotificationUnavailable,
    WebhookAddressRefused,
    WebhookHostNotAllowed,
)
from flows.control.settings import Settings
from flows.control.webhooks import SIGNATURE_HEADER, post, sign, signing_secret, verify
from tests.notify_servers import start_receiver

SECRET = "whsec-test-0123456789"
BODY = b'{"event":"export.completed"}'


def hook_settings(ca_file, **extra) -> Settings:
    values = {
        "webhook_allowed_hosts": ["localhost"],
        "webhook_allow_private_addresses": True,
        "webhook_secret": SECRET,
        "notify_ca_file": ca_file,
        "notify_timeout_seconds": 5,
    }
    return Settings(_env_file=None, **(values | extra))


def test_a_signature_verifies_and_any_change_breaks_it():
    header = sign(BODY, SECRET)
    assert verify(BODY, header, SECRET)
    assert not verify(BODY + b" ", header, SECRET)
    assert not verify(BODY, header, SECRET + "x")
    t, mac = header.split(",")
    assert not verify(BODY, f"t={int(t[2:]) + 1},{mac}", SECRET)
    assert not verify(BODY, "garbage", SECRET)


def test_an_old_signature_is_refused_outside_the_tolerance():
    old = sign(BODY, SECRET, timestamp=int(time.time()) - 301)
    assert not verify(BODY, old, SECRET)
    assert verify(BODY, old, SECRET, tolerance=400)


def test_a_rotated_secret_verifies_with_either_v1():
    t = int(time.time())
    new = sign(BODY, "new-secret", t).split(",")[1]
    assert verify(BODY, f"{sign(BODY, SECRET, t)},{new}", "new-secret")


def test_the_secret_is_the_setting_or_derived_per_deployment():
    assert signing_secret(Settings(_env_file=None, webhook_secret="abc")) == b"abc"
    a = Settings(_env_file=None, env="development", secret_key="one-secret")
    b = Settings(_env_file=None, env="development", secret_key="another-secret")
    assert signing_secret(a) != signing_secret(b) and len(signing_secret(a)) == 64


def test_delivered_signed_with_the_host_named_over_tls(webhook_receiver, ca_file):
    sent = post(webhook_receiver.url(), {"event": "x"}, hook_settings(ca_file))
    assert (sent.status_code, sent.address) == (200, "127.0.0.1")
    [got] = webhook_receiver.received
    assert got.path == "/hook" and got.json() == {"event": "x"}
    assert got.headers["Host"] == f"localhost:{webhook_receiver.port}"
    assert verify(got.body, got.headers[SIGNATURE_HEADER], SECRET)


def test_a_certificate_for_another_name_is_refused(test_ca, ca_file):
    # The address is pinned, yet TLS still checks the certificate against the host name.
    receiver, stop = start_receiver(test_ca, ca_file, names=("other.test",))
    try:
        with pytest.raises(NotificationUnavailable, match="certificate verify failed"):
            post(receiver.url(), {}, hook_settings(ca_file))
    finally:
        stop()
    assert receiver.received == []


def test_5xx_is_worth_a_retry_and_4xx_is_not(webhook_receiver, ca_file):
    webhook_receiver.script = [503, 400]
    with pytest.raises(NotificationUnavailable) as exc:
        post(webhook_receiver.url(), {}, hook_settings(ca_file))
    assert exc.value.transient and exc.value.status_code == 503
    with pytest.raises(NotificationFailed) as exc:
        post(webhook_receiver.url(), {}, hook_settings(ca_file))
    assert not exc.value.transient and exc.value.status_code == 400


def test_a_redirect_is_not_followed(webhook_receiver, ca_file):
    webhook_receiver.script = [302]
    with pytest.raises(NotificationFailed, match="302") as exc:
        post(webhook_receiver.url(), {}, hook_settings(ca_file))
    assert not exc.value.transient
    assert [r.path for r in webhook_receiver.received] == ["/hook"]


def test_loopback_is_refused_without_the_private_setting_and_nothing_is_sent(
    webhook_receiver, ca_file
):
    settings = hook_settings(ca_file, webhook_allow_private_addresses=False)
    with pytest.raises(WebhookAddressRefused):
        post(webhook_receiver.url(), {}, settings)
    assert webhook_receiver.received == []


def test_a_host_removed_from_the_list_is_refused_at_delivery(webhook_receiver, ca_file):
    with pytest.raises(WebhookHostNotAllowed):
        post(webhook_receiver.url(), {}, hook_settings(ca_file, webhook_allowed_hosts=[]))
    assert webhook_receiver.received == []


def test_a_closed_port_is_worth_a_retry(ca_file):
    from tests.e2e.conftest import free_port

    with pytest.raises(NotificationUnavailable):
        post(f"https://localhost:{free_port()}/hook", {}, hook_settings(ca_file))


def test_the_readmes_receiver_snippet_verifies_what_is_sent():
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme[readme.index("**The signature**") :]
    code = section[
        section.index("```python") + 9 : section.index("```", section.index("```python") + 9)
    ]
    scope: dict = {}
    exec(code, scope)  # the receiver's code exactly as the README shows it
    header = sign(BODY, SECRET)
    assert scope["verify"](BODY, header, SECRET)
    assert not scope["verify"](BODY + b"x", header, SECRET)
    assert not scope["verify"](BODY, sign(BODY, SECRET, int(time.time()) - 600), SECRET)
