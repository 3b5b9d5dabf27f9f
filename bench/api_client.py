"""The HTTP side of bench/bench_api.py: timed requests against the API, one client per thread."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import threading
import time

import httpx

STREAM_FILTERS = ["id:lte:100000"]
STREAM_BODY = {"format": "csv", "filters": [{"column": "id", "op": "lte", "value": 100_000}]}
BACKGROUND_BODY = {"format": "csv", "mode": "background"}


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered) / 100) - 1)]


def load() -> str:
    """The load averages now, 1/5/15 min."""
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


class Api:
    """The API under test; one keep-alive client per thread that uses it."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def client(self) -> httpx.Client:
        """A new keep-alive client with the bearer token."""
        return httpx.Client(base_url=self.base, headers=self.headers, timeout=600)


def direct_latencies(api: Api, n: int, warmup: int) -> list[float]:
    """Seconds from sending to the last byte of `n` direct 1,000-row CSV exports."""
    ids = list(range(1, 1_000_001, 1000))  # spread over the table, as a user's selection is
    body = json.dumps({"format": "csv", "scope": "selected", "selectedIds": ids}).encode()
    seconds = []
    with api.client() as client:
        for i in range(warmup + n):
            started = time.perf_counter()
            r = client.post("/api/products/export", content=body)
            took = time.perf_counter() - started
            if r.status_code != 200 or "Content-Length" not in r.headers:
                raise RuntimeError(f"direct export: {r.status_code} {r.headers} {r.text[:300]}")
            if i >= warmup:
                seconds.append(took)
    return seconds


def stream_once(client: httpx.Client) -> dict:
    """One streamed 100k export: seconds to headers, first body byte, last byte; sha256."""
    body = json.dumps(STREAM_BODY).encode()
    parts, first = [], None
    started = time.perf_counter()
    with client.stream("POST", "/api/products/export", content=body) as r:
        headers = time.perf_counter() - started
        if r.status_code != 200 or "Content-Length" in r.headers:
            raise RuntimeError(f"streamed export: {r.status_code} {r.headers} {r.read()[:300]!r}")
        for chunk in r.iter_raw():
            if first is None and chunk:
                first = time.perf_counter() - started
            parts.append(chunk)
    total = time.perf_counter() - started
    data = b"".join(parts)  # hashed after the clock stopped
    digest = hashlib.sha256(data).hexdigest()
    return {
        "headers": headers,
        "first": first,
        "total": total,
        "bytes": len(data),
        "sha256": digest,
    }


def post_background(client: httpx.Client) -> tuple[str, float, float]:
    """(job id, perf_counter when sent, seconds to the 202) of a 1M-row background export."""
    sent = time.perf_counter()
    r = client.post("/api/products/export", content=json.dumps(BACKGROUND_BODY).encode())
    if r.status_code != 202:
        raise RuntimeError(f"background export: {r.status_code} {r.text[:300]}")
    return r.json()["jobId"], sent, time.perf_counter() - sent


def watch(api: Api, interval: float, streams: bool) -> dict:
    """POST a 1M-row background export and poll it to the end, timing every poll; with
    `streams`, streamed 100k exports run back to back from Running until completed."""
    busy, done = threading.Event(), threading.Event()
    streamed: list[dict] = []
    failed: list[BaseException] = []

    def stream_loop() -> None:
        try:
            with api.client() as client:
                while not done.is_set():
                    busy.set()
                    streamed.append(stream_once(client))
        except BaseException as exc:  # re-raised in the polling thread
            failed.append(exc)
        finally:
            busy.clear()

    polls: list[tuple[float, bool]] = []  # (seconds, a stream and the run were both active)
    running_at, loader = None, None
    with api.client() as client:
        job_id, sent, accepted = post_background(client)
        while True:
            started = time.perf_counter()
            r = client.get(f"/api/exports/{job_id}")
            took = time.perf_counter() - started
            view = r.json()
            if r.status_code != 200:
                raise RuntimeError(f"status poll: {r.status_code} {view}")
            polls.append((took, busy.is_set() and running_at is not None))
            if running_at is None and (view["stateName"] == "Running" or view["processedRows"]):
                running_at = time.perf_counter() - sent
                if streams:
                    loader = threading.Thread(target=stream_loop, daemon=True)
                    loader.start()
            if view["status"] in ("completed", "failed", "cancelled", "expired"):
                break
            time.sleep(interval)
    completed = time.perf_counter() - sent
    done.set()
    if loader is not None:
        loader.join()
    if failed:
        raise failed[0]
    if view["status"] != "completed":
        raise RuntimeError(f"background export ended {view['status']}: {view['error']}")
    stamp = dt.datetime.fromisoformat
    created = stamp(view["createdAt"])
    return {
        "accepted": accepted,
        "running": running_at,
        "completed": completed,
        "server_started": (stamp(view["startedAt"]) - created).total_seconds(),
        "server_finished": (stamp(view["finishedAt"]) - created).total_seconds(),
        "polls": polls,
        "streams": len(streamed),
    }
