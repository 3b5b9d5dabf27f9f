"""The webhook guard: scheme and allowed host when asked for, addresses at delivery."""

from __future__ import annotations

import ipaddress

import pytest

from flows.control.errors import InvalidWebhookUrl, WebhookAddressRefused, WebhookHostNotAllowed
from flows.control.settings import Settings
from flows.control.ssrf import address_allowed, check_url, host_allowed, resolve

HOSTS = ["hooks.example.com", "*.example.org", "localhost", "169.254.169.254"]


def settings(**extra) -> Settings:
    return Settings(_env_file=None, webhook_allowed_hosts=HOSTS, **extra)


def test_https_on_an_allowed_host_passes_with_its_port():
    target = check_url("https://Hooks.Example.com:8443/x?y=1", settings())
    assert (target.scheme, target.host, target.port) == ("https", "hooks.example.com", 8443)
    assert check_url("https://a.b.example.org/", settings()).port == 443


def test_http_is_refused_outside_development_and_allowed_in_it():
    with pytest.raises(InvalidWebhookUrl, match="must start with https://"):
        check_url("http://hooks.example.com/x", settings())
    assert check_url("http://hooks.example.com/x", settings(env="development")).port == 80
    with pytest.raises(InvalidWebhookUrl):
        check_url("ftp://hooks.example.com/x", settings(env="development"))


@pytest.mark.parametrize(
    "url", ["https://evil.com/", "https://example.org/", "https://hooks.example.com.evil.com/"]
)
def test_a_host_off_the_list_is_refused_naming_the_setting(url):
    with pytest.raises(WebhookHostNotAllowed, match="EXPORTFLOW_WEBHOOK_ALLOWED_HOSTS") as exc:
        check_url(url, settings())
    assert exc.value.code == "webhook_host_not_allowed"


@pytest.mark.parametrize(
    "url",
    ["https://user:pw@hooks.example.com/", "https:///nohost", "https://hooks.example.com:99999/",
     "https://hooks.example.com/a b", "not a url"],
)  # fmt: skip
def test_malformed_urls_are_refused(url):
    with pytest.raises(InvalidWebhookUrl):
        check_url(url, settings())


def test_patterns_match_subdomains_only():
    assert host_allowed("a.example.org", ["*.example.org"])
    assert host_allowed("a.b.example.org.", ["*.EXAMPLE.org"])
    assert not host_allowed("example.org", ["*.example.org"])
    assert not host_allowed("badexample.org", ["*.example.org"])
    assert not host_allowed("anything", [])


@pytest.mark.parametrize(
    ("ip", "private_ok", "allowed"),
    [
        ("93.184.216.34", False, True),
        ("127.0.0.1", False, False),
        ("127.0.0.1", True, True),
        ("10.1.2.3", False, False),
        ("192.168.1.1", True, True),
        ("100.64.0.1", False, False),
        ("::1", False, False),
        ("::ffff:127.0.0.1", False, False),
        ("::ffff:127.0.0.1", True, True),
        ("169.254.169.254", True, False),
        ("fd00:ec2::254", True, False),
        ("169.254.1.1", False, False),
        ("224.0.0.1", True, False),
        ("0.0.0.0", True, False),
        ("240.0.0.1", False, False),
    ],
)
def test_addresses(ip, private_ok, allowed):
    assert address_allowed(ipaddress.ip_address(ip), private_ok) is allowed


def test_a_name_resolving_to_loopback_is_refused_unless_private_addresses_are_allowed():
    target = check_url("https://localhost:8443/hook", settings())
    with pytest.raises(WebhookAddressRefused, match="may not reach") as exc:
        resolve(target, settings())
    assert exc.value.code == "webhook_address_refused"
    assert resolve(target, settings(webhook_allow_private_addresses=True)).is_loopback


def test_the_metadata_address_is_refused_even_with_private_addresses_allowed():
    target = check_url("https://169.254.169.254/latest/meta-data", settings())
    with pytest.raises(WebhookAddressRefused):
        resolve(target, settings(webhook_allow_private_addresses=True))
