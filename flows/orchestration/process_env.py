"""The environment of every flow-run process, whoever starts it: `exportflow serve` sets
it for its children, and prefect.yaml gives workers' runs the same (job variables)."""

from __future__ import annotations

import os

from flows.control.threads import IDLE_POOLS
from flows.orchestration.automations import HEARTBEAT_SECONDS

FLOW_RUN_ENV = {
    # Heartbeats let the automation crash a run whose host vanished (automations.py).
    "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
    # A run reads and encodes on several threads at once; with the allocators' defaults
    # each thread keeps what it freed (glibc arenas, jemalloc's decay, Arrow's mimalloc),
    # ~120 MiB at the 1M-row peak. These give freed memory back: two arenas, large blocks
    # mapped and unmapped, Polars' jemalloc purging after 0.1 s (at once, an XLSX export
    # took ~40 % longer), Arrow on the system allocator.
    "MALLOC_ARENA_MAX": "2",
    "MALLOC_MMAP_THRESHOLD_": "131072",
    "_RJEM_MALLOC_CONF": "dirty_decay_ms:100,muzzy_decay_ms:0",  # Polars' jemalloc
    "ARROW_DEFAULT_MEMORY_POOL": "system",
    **IDLE_POOLS,
}


def apply_flow_run_env() -> None:
    """Give the processes this one starts FLOW_RUN_ENV, as a worker's job variables give
    them to its runs: over whatever the host set. A run's Polars adds its own jemalloc
    defaults in front of ours at import, and jemalloc takes the last value."""
    os.environ.update(FLOW_RUN_ENV)
