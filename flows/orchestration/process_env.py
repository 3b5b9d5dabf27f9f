"""The environment of every flow-run process, whoever starts it: `exportflow serve` sets
it for its children, and prefect.yaml gives workers' runs the same (job variables)."""

from __future__ import annotations

import os

from flows.orchestration.automations import HEARTBEAT_SECONDS

FLOW_RUN_ENV = {
    # Heartbeats let the automation crash a run whose host vanished (automations.py).
    "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
    # A run reads and encodes on several threads at once; with the allocators' defaults
    # each thread keeps what it freed (glibc arenas, jemalloc's decay, Arrow's mimalloc),
    # ~85 MiB at the 1M-row peak. These give freed memory back as it is freed: two arenas,
    # large blocks mapped and unmapped, no dirty pages kept by Polars' jemalloc, Arrow on
    # the system allocator. They cost an XLSX export about 1 s in 1M rows.
    "MALLOC_ARENA_MAX": "2",
    "MALLOC_MMAP_THRESHOLD_": "131072",
    "_RJEM_MALLOC_CONF": "dirty_decay_ms:0,muzzy_decay_ms:0",
    "ARROW_DEFAULT_MEMORY_POOL": "system",
}


def apply_flow_run_env() -> None:
    """Give the processes this one starts FLOW_RUN_ENV, where the host set nothing else."""
    for name, value in FLOW_RUN_ENV.items():
        os.environ.setdefault(name, value)
