"""Serve the `export`, `cleanup` and `reconcile` deployments from this process, on one machine.

    python deployments/serve.py        # the same as `exportflow serve`

Needs PREFECT_API_URL (a running Prefect server) and the EXPORTFLOW_* settings; the
export concurrency limit and the cleanup schedule come from those settings.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Runnable from a checkout that is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.control.settings import get_settings
from flows.tools.serve import serve_deployments

if __name__ == "__main__":
    serve_deployments(get_settings())
