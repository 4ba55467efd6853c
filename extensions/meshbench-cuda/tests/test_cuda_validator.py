"""The tolerance validator on array bundles."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from meshbench.core.encoding import blob_cid
from meshbench.core.types import ExecutionSummary
from meshbench_cuda import KernelResult, ToleranceValidator, compare_bundles, encode_arrays

SUMMARY = ExecutionSummary(fuel_used=0, peak_memory_bytes=0, wall_time_us=0)


def result(arrays, rtol=1e-9, atol=0.0) -> KernelResult:
    return KernelResult(
        output=encode_arrays(arrays), stdout=b"", stderr=b"", exit_code=0, summary=SUMMARY,
        kernel="t@1", rtol=rtol, atol=atol,
    )  # fmt: skip


def judge(claimed: dict, mine: KernelResult, *, supply: bool = True):
    data = encode_arrays(claimed)
    return ToleranceValidator().confirms(
        blob_cid(data), SUMMARY, mine, claimed_output=data if supply else None
    )


X = np.array([1.0, -2.0, 3e10, np.nan])


def test_identical_outputs_confirm_even_without_bytes():
    assert judge({"x": X}, result({"x": X}), supply=False) == (True, "")


def test_within_and_outside_relative_tolerance():
    close = X * (1 + 1e-12)
    assert judge({"x": close}, result({"x": X}))[0]
    ok, why = judge({"x": X * (1 + 1e-6)}, result({"x": X}))
    assert not ok and "outside rtol" in why


def test_absolute_tolerance_near_zero():
    mine = result({"x": np.array([0.0, 1.0])}, rtol=0.0, atol=1e-12)
    assert judge({"x": np.array([1e-13, 1.0])}, mine)[0]
    assert not judge({"x": np.array([1e-11, 1.0])}, mine)[0]


@pytest.mark.parametrize(
    ("claimed", "why"),
    [
        ({"x": np.array([1.0, -2.0, 3e10, 0.0])}, "NaNs"),
        ({"x": np.array([1.0, -2.0, np.inf, np.nan])}, "outside"),
        ({"y": X}, "arrays"),
        ({"x": X, "y": X}, "arrays"),
        ({"x": X[:3]}, "recomputed"),
        ({"x": X.astype(np.float32)}, "recomputed"),
    ],
)
def test_structural_differences_reject(claimed, why):
    ok, reason = judge(claimed, result({"x": X}))
    assert not ok and why in reason


def test_integers_must_be_equal():
    mine = result({"n": np.array([1, 2], dtype=np.int64)}, rtol=0.5)
    assert not judge({"n": np.array([1, 3], dtype=np.int64)}, mine)[0]


def test_missing_or_forged_bytes_and_zero_tolerance_reject():
    mine = result({"x": X})
    assert not judge({"x": X * 1.0000000000001}, mine, supply=False)[0]
    data = encode_arrays({"x": X + 1})
    ok, why = ToleranceValidator().confirms(blob_cid(b"other"), SUMMARY, mine, claimed_output=data)
    assert not ok and "do not hash" in why
    exact = dataclasses.replace(mine, rtol=0.0, atol=0.0)
    assert not judge({"x": X * (1 + 1e-15)}, exact)[0]


def test_garbage_claimed_output_rejects():
    ok, why = compare_bundles(b"junk", encode_arrays({"x": X}), rtol=1, atol=1)
    assert not ok and "not an array bundle" in why
