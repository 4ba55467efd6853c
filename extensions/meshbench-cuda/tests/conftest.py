"""meshbench-cuda tests run on Numba's CUDA simulator unless NUMBA_ENABLE_CUDASIM=0 is set
(on a machine with a GPU). The simulator runs one simulated thread in ~0.2 ms: keep the
problems tiny."""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numba

# Another test module may have imported numba first (for @njit): numba.cuda reads the
# setting when it is first imported, which happens only below this line.
numba.config.ENABLE_CUDASIM = int(os.environ["NUMBA_ENABLE_CUDASIM"])
