"""What a process that exports loads: no pandas (about 60 MiB and half a second), and no
psycopg (45 ms): the catalog check and the reads share one ADBC connection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

EXPORT = """
import io, sys
from flows.control.settings import Settings
from flows.control.registry import load_checked_registry
from flows.datapath.engine import export
from flows.datapath.request import ExportRequest, plan_export
settings = Settings(_env_file=None, database_url=sys.argv[1])
registry = load_checked_registry(settings.datasets, settings.database_url)
for fmt in ("csv", "xlsx"):
    request = ExportRequest(module="products", format=fmt, filters=[
        {"column": "id", "op": "lte", "value": 500}, {"column": "sku", "op": "neq", "value": "x"}])
    export(settings.database_url, plan_export(request, registry, settings), io.BytesIO(), settings)
print(sorted(m for m in ("pandas", "pyarrow.dataset", "psycopg") if m in sys.modules))
"""


def test_an_export_in_a_fresh_process_loads_neither_pandas_nor_psycopg(settings):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", EXPORT, settings.database_url],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    # ADBC's DB-API module (pyarrow.dataset) and pa.array() on Python values import it.
    assert out.stdout.strip() == "[]", out.stderr
