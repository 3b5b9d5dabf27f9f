"""Thread pools of native libraries that an exportflow process never uses."""

from __future__ import annotations

# numpy, when installed, comes in with pyarrow, and its OpenBLAS starts a thread per core
# that spins waiting for matrix work no export has: ~0.1 s of a 1M-row CLI export's 1.9 s
# on two cores. Read when numpy loads, so set before it does.
IDLE_POOLS = {"OPENBLAS_NUM_THREADS": "1"}
