"""Real receivers for notifications on loopback: an SMTP server (aiosmtpd) that keeps what
arrives, and an HTTPS webhook receiver whose certificate a test CA (trustme) issued."""

from __future__ import annotations

import email
import email.policy
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller

from tests.e2e.conftest import free_port


class Inbox:
    """aiosmtpd's handler: every message that arrived, parsed."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(msg)
        self.arrived.set()
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Inbox]]:
    """A plain SMTP server on a loopback port: (port, inbox)."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


@dataclass
class Received:
    """One request the webhook receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """The HTTPS receiver: answers each POST with the next scripted status (then 200)."""

    port: int
    ca_file: Path
    received: list[Received] = field(default_factory=list)
    script: list[int] = field(default_factory=list)

    def url(self, path: str = "/hook", host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{path}"


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            receiver.received.append(Received(self.path, dict(self.headers.items()), body))
            status = receiver.script.pop(0) if receiver.script else 200
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", receiver.url("/redirected"))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            """Each request is kept in `received`; stderr needs no line per request."""

    return Handler


@pytest.fixture(scope="session")
def test_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(test_ca, tmp_path_factory) -> Path:
    """The test CA's certificate as a bundle file (EXPORTFLOW_NOTIFY_CA_FILE)."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    test_ca.cert_pem.write_to_path(str(path))
    return path


def start_receiver(test_ca, ca_file: Path, names: tuple[str, ...] = ("localhost",)):
    """A receiver whose certificate names `names`; returns (receiver, stop)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    test_ca.issue_cert(*names).configure_cert(context)
    receiver = Receiver(free_port(), ca_file)
    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), _handler(receiver))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return receiver, stop


@pytest.fixture
def webhook_receiver(test_ca, ca_file) -> Iterator[Receiver]:
    """An HTTPS receiver on loopback, certified for `localhost` by the test CA."""
    receiver, stop = start_receiver(test_ca, ca_file)
    try:
        yield receiver
    finally:
        stop()
