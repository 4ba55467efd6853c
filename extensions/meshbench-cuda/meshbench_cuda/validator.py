"""The ``tolerance`` validator: floating point results agree within the task's rtol/atol.

Identical output CIDs always confirm. Otherwise both bundles must hold the same array names,
dtypes and shapes; integer arrays must be equal; float arrays must satisfy
``|claimed - mine| <= atol + rtol * |mine|`` element by element, NaN where the other has
NaN (BOINC's "fuzzy validator"). rtol/atol come from the task's own descriptor (the
verifier's run of it, :class:`~meshbench_cuda.executor.KernelResult`, or the descriptor
bytes when the authority judges two revealed outputs with :meth:`ToleranceValidator.compare`),
never from a worker.
"""

from __future__ import annotations

import numpy as np

from meshbench.core.encoding import CID, blob_cid
from meshbench.core.errors import ArrayFormatError
from meshbench.core.types import ExecutionSummary
from meshbench.exec.plugins import ExecutionResult

__all__ = ["ToleranceValidator", "compare_bundles"]


def compare_bundles(claimed: bytes, mine: bytes, *, rtol: float, atol: float) -> tuple[bool, str]:
    """``(agree, reason)`` for two array bundles under rtol/atol."""
    from meshbench_cuda.arrays import decode_arrays

    try:
        theirs = decode_arrays(claimed)
    except ArrayFormatError as exc:
        return False, f"the claimed output is not an array bundle: {exc}"
    ours = decode_arrays(mine)
    if sorted(theirs) != sorted(ours):
        return False, f"arrays {sorted(theirs)} != recomputed {sorted(ours)}"
    worst = 0.0
    for name, b in ours.items():
        a = theirs[name]
        if a.dtype != b.dtype or a.shape != b.shape:
            return False, f"{name}: {a.dtype}{a.shape} != recomputed {b.dtype}{b.shape}"
        if b.dtype.kind != "f":
            if not np.array_equal(a, b):
                return False, f"{name}: integer values differ"
            continue
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        if not np.array_equal(nan_a, nan_b):
            return False, f"{name}: NaNs in different places"
        ok = ~nan_b
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.abs(a[ok].astype(np.float64) - b[ok])
            bound = atol + rtol * np.abs(b[ok].astype(np.float64))
        bad = ~(diff <= bound)  # also catches inf - inf
        if bad.any():
            i = int(np.argmax(bad))
            return False, (
                f"{name}: {int(bad.sum())} element(s) outside rtol={rtol} atol={atol}, "
                f"e.g. {a[ok][i]!r} vs {b[ok][i]!r}"
            )
        if diff.size:
            worst = max(worst, float(np.max(diff)))
    return True, ""


class ToleranceValidator:
    """Confirms a GPU result within the task's relative and absolute tolerance."""

    name = "tolerance"

    def confirms(
        self,
        claimed_output_cid: CID,
        claimed: ExecutionSummary,
        recomputed: ExecutionResult,
        *,
        claimed_output: bytes | None = None,
    ) -> tuple[bool, str]:
        if claimed_output_cid == recomputed.output_cid:
            return True, ""
        if claimed_output is None:
            return False, "outputs differ and the claimed bytes were not supplied"
        if blob_cid(claimed_output) != claimed_output_cid:
            return False, "the claimed bytes do not hash to the claimed output CID"
        rtol = float(getattr(recomputed, "rtol", 0.0))
        atol = float(getattr(recomputed, "atol", 0.0))
        if rtol == 0.0 and atol == 0.0:
            return False, f"output {claimed_output_cid} != recomputed {recomputed.output_cid}"
        return compare_bundles(claimed_output, recomputed.output, rtol=rtol, atol=atol)

    def compare(self, claimed: bytes, recomputed: bytes, *, module: bytes) -> tuple[bool, str]:
        """The authority's judgement of two revealed outputs: ``module`` is the task's
        descriptor, whose rtol/atol bound the difference (zero tolerance: bytes must match)."""
        from meshbench_cuda.call import parse_descriptor

        if claimed == recomputed:
            return True, ""
        d = parse_descriptor(module)
        if d.rtol == 0.0 and d.atol == 0.0:
            return False, f"output {blob_cid(claimed)} != recomputed {blob_cid(recomputed)}"
        try:
            return compare_bundles(claimed, recomputed, rtol=d.rtol, atol=d.atol)
        except ArrayFormatError as exc:
            return False, f"the recomputed output is not an array bundle: {exc}"
