"""Prometheus metrics: the exports, computed from export_jobs at each scrape; 429s counted here.

Exports run in every API replica (direct, stream) and in flow-run processes on workers
(background), so counters kept in one process would miss most of them and disagree
between replicas. The job table has every export: each scrape aggregates it, and every
replica reports the same figures (take one replica's, or `max`, not `sum`, across them).

The export counters count the rows export_jobs keeps. The cleanup flow only moves a
completed job to `expired` (counted here as the completed export it was) and deletes no
rows; were old rows ever pruned, the counters would drop, and Prometheus would read the
drop as a counter reset."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from flows.control.database import pg_connect
from flows.control.jobs import JobStore

log = logging.getLogger("api")

# Process-local: a refusal leaves no row (nothing is created for it), so only the process
# that answered knows of it; sum this one across replicas.
TOO_MANY_REQUESTS = Counter(
    "exportflow_http_429_responses",
    "Requests this process refused with 429, by error code.",
    ["code"],
    registry=None,
)

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
ROW_BUCKETS = (10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000)
LABELS = ["module", "format", "strategy"]
HISTOGRAM_LABELS = ["strategy", "format"]
FINAL = ("completed", "failed", "cancelled")
CONNECT_TIMEOUT_SECONDS = 3
# A scrape gives up on a slow database rather than pile up behind it.
QUERY_OPTIONS = "-c statement_timeout=10000"

# An expired export completed; only its file went later.
_OUTCOME = "CASE status WHEN 'expired' THEN 'completed' ELSE status END"

_BY_LABELS = f"""
SELECT module, format, strategy, {_OUTCOME}, count(*),
       coalesce(sum(file_bytes), 0)::bigint, coalesce(sum(processed_rows), 0)::bigint
FROM export_jobs GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"""


def _cumulative(column: str, buckets: tuple) -> str:
    """`count(*) FILTER (WHERE column <= %s)` per bucket: the histogram's cumulative counts."""
    return ", ".join(f"count(*) FILTER (WHERE {column} <= %s)" for _ in buckets)


# Completed exports that were started (claimed): their time is finished_at - started_at.
_HISTOGRAMS = f"""
SELECT strategy, format, count(*),
       {_cumulative("seconds", DURATION_BUCKETS)}, coalesce(sum(seconds), 0),
       {_cumulative("processed_rows", ROW_BUCKETS)}, coalesce(sum(processed_rows), 0)::bigint
FROM (SELECT strategy, format, processed_rows,
             extract(epoch FROM finished_at - started_at)::float8 AS seconds
      FROM export_jobs WHERE status IN ('completed', 'expired')
        AND started_at IS NOT NULL AND finished_at IS NOT NULL) AS done
GROUP BY 1, 2 ORDER BY 1, 2"""


class ExportCollector(Collector):
    """The export metrics, aggregated from export_jobs when Prometheus scrapes."""

    def __init__(self, jobs: JobStore) -> None:
        self.jobs = jobs

    def describe(self) -> Iterator[Metric]:
        """The families (for the registry's name check), without querying."""
        return iter(_families())

    def collect(self) -> Iterator[Metric]:
        """Every family, from a few aggregate queries; only `up` (0) if they failed."""
        up = GaugeMetricFamily(
            "exportflow_job_metrics_up", "1 if the export metrics could be read from export_jobs."
        )
        try:
            families = self._read()
        except Exception as exc:  # the scrape still answers, with this process's metrics
            log.warning("export metrics not read from export_jobs: %r", exc)
            up.add_metric([], 0)
            return iter([up])
        up.add_metric([], 1)
        return iter([*families, up])

    def _read(self) -> list[Metric]:
        """The families, filled from export_jobs."""
        total, active, file_bytes, in_flight, duration, rows, rate, finished, failed = _families()
        url, timeout = self.jobs.url, CONNECT_TIMEOUT_SECONDS
        with pg_connect(url, connect_timeout=timeout, options=QUERY_OPTIONS) as conn:
            grouped = conn.execute(_BY_LABELS).fetchall()
            params = (*DURATION_BUCKETS, *ROW_BUCKETS)
            histograms = conn.execute(_HISTOGRAMS, params).fetchall()
        flight: dict[tuple, int] = defaultdict(int)
        written: dict[tuple, int] = defaultdict(int)
        for *labels, status, count, size, processed in grouped:
            if status in FINAL:
                total.add_metric([*labels, status], count)
            else:
                active.add_metric([*labels, status], count)
                flight[tuple(labels)] += processed
            if status == "completed":
                written[tuple(labels)] += size
        for labels, size in written.items():
            file_bytes.add_metric(list(labels), size)
        for labels, processed in flight.items():
            in_flight.add_metric(list(labels), processed)
        n = len(DURATION_BUCKETS)
        for strategy, fmt, count, *rest in histograms:
            times, rows_done = _buckets(DURATION_BUCKETS, rest[:n], count), rest[n + 1 : -1]
            duration.add_metric([strategy, fmt], times, rest[n])
            rows.add_metric([strategy, fmt], _buckets(ROW_BUCKETS, rows_done, count), rest[-1])
        lost, done = self.jobs.failure_rate(60)
        rate.add_metric([], lost / done if done else 0.0)
        finished.add_metric([], done)
        failed.add_metric([], lost)
        return [total, active, file_bytes, in_flight, duration, rows, rate, finished, failed]


def _buckets(bounds: tuple, counts: list[int], total: int) -> list[tuple[str, int]]:
    """Prometheus's (le, cumulative count) pairs, ending with +Inf = every observation."""
    pairs = [(floatToGoString(b), c) for b, c in zip(bounds, counts, strict=True)]
    return [*pairs, ("+Inf", total)]


def _families() -> list[Metric]:
    """The exported families, empty."""
    return [
        CounterMetricFamily(
            "exportflow_exports",
            "Exports that ended, by module, format, strategy and status (expired counts as"
            " completed).",
            labels=[*LABELS, "status"],
        ),
        GaugeMetricFamily(
            "exportflow_exports_active",
            "Exports pending or processing, by module, format, strategy and status.",
            labels=[*LABELS, "status"],
        ),
        CounterMetricFamily(
            "exportflow_export_bytes",
            "Bytes of the files of completed exports.",
            labels=LABELS,
        ),
        GaugeMetricFamily(
            "exportflow_rows_in_flight",
            "Rows already written by exports still pending or processing.",
            labels=LABELS,
        ),
        HistogramMetricFamily(
            "exportflow_export_duration_seconds",
            "Time from start to end of completed exports.",
            labels=HISTOGRAM_LABELS,
        ),
        HistogramMetricFamily(
            "exportflow_export_rows",
            "Rows of completed exports.",
            labels=HISTOGRAM_LABELS,
        ),
        GaugeMetricFamily(
            "exportflow_failure_rate_last_hour",
            "Share of the exports that ended in the last hour (completed or failed) that failed.",
        ),
        GaugeMetricFamily(
            "exportflow_exports_finished_last_hour",
            "Exports that completed or failed in the last hour.",
        ),
        GaugeMetricFamily(
            "exportflow_exports_failed_last_hour",
            "Exports that failed in the last hour.",
        ),
    ]


def registry_for(jobs: JobStore) -> CollectorRegistry:
    """A registry with the export metrics of `jobs`' table and this process's 429 count."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ExportCollector(jobs))
    registry.register(TOO_MANY_REQUESTS)
    return registry
