"""Every bad GPU task is a typed error and nothing is launched; plug-in discovery."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from meshbench.core import encoding
from meshbench.core.encoding import blob_cid
from meshbench.core.errors import (
    ArrayFormatError,
    ExecutionError,
    ExecutionTimeout,
    IOLimitExceeded,
    KernelBudgetExceeded,
    KernelError,
    KernelHashMismatch,
    KernelNotApproved,
    LaunchParameterError,
    MemoryLimitExceeded,
    UnknownKernel,
)
from meshbench.core.types import CapabilityScope, TaskIntent
from meshbench.exec import load_executor, load_validator
from meshbench.testing.factories import T0, make_identity
from meshbench_cuda import CudaExecutor, KernelCall, ToleranceValidator, installed_kernels
from meshbench_cuda.call import Descriptor

SAXPY = installed_kernels()["saxpy@1.0.0"]
X = {"x": np.arange(4.0), "y": np.ones(4)}


class Launches:
    """Counts launches: a bad task must never reach the device."""

    def __init__(self) -> None:
        self.count = 0

    def spec(self, spec=SAXPY, **changes):
        real = spec.launch

        def launch(*args):
            self.count += 1
            return real(*args)

        return dataclasses.replace(spec, launch=launch, **changes)


@pytest.fixture
def launches() -> Launches:
    return Launches()


@pytest.fixture
def executor(launches: Launches) -> CudaExecutor:
    spec = launches.spec()
    return CudaExecutor(kernels=[spec], approved=[f"{spec.ref}#{spec.code_hash}"])


def payload(**kw):
    return KernelCall(**{"kernel": "saxpy", "arrays": X, "params": {"a": 2.0}, **kw}).task_payload()


def descriptor(**changes) -> bytes:
    base = KernelCall(kernel="saxpy", arrays=X, params={"a": 2.0}).descriptor()
    return dataclasses.replace(base, **changes).encode()


def refuse(executor, launches, exc, module, data=None, scope=None, match=None):
    with pytest.raises(exc, match=match) as info:
        executor.run(
            module, payload().input if data is None else data, scope=scope or CapabilityScope()
        )
    assert isinstance(info.value, ExecutionError) and info.value.fuel_used == 0
    assert launches.count == 0
    return info.value


def test_a_good_call_launches_once(executor, launches):
    p = payload()
    result = executor.run(p.module, p.input, scope=p.scope)
    assert launches.count == 1 and result.exit_code == 0


def test_unknown_kernel_and_version(executor, launches):
    refuse(executor, launches, UnknownKernel, descriptor(kernel="nbody"), match="not installed")
    refuse(executor, launches, UnknownKernel, descriptor(version="9.9.9"), match="installed: saxpy")


def test_hash_mismatch(executor, launches):
    bad = hashlib.sha256(b"other code").hexdigest()
    refuse(executor, launches, KernelHashMismatch, descriptor(code_hash=bad))


def test_installed_but_not_approved(launches):
    spec = launches.spec()
    ex = CudaExecutor(kernels=[spec], approved=[])
    refuse(ex, launches, KernelNotApproved, descriptor(), match="not approved")
    pinned = CudaExecutor(kernels=[spec], approved=[f"{spec.ref}#{'0' * 64}"])
    refuse(pinned, launches, KernelNotApproved, descriptor(), match="approved code")


def test_third_party_kernels_are_not_approved_by_default(launches):
    foreign = launches.spec(module="some_vendor.kernels.saxpy")
    ex = CudaExecutor(kernels=[foreign])
    assert ex.registry.approved == {}


@pytest.mark.parametrize(
    ("arrays", "exc", "match"),
    [
        ({"x": np.arange(4.0)}, ArrayFormatError, "takes arrays"),
        ({"x": np.arange(4.0), "y": np.ones(4), "z": np.ones(4)}, ArrayFormatError, "takes arrays"),
        ({"x": np.arange(4, dtype=np.int64), "y": np.ones(4)}, ArrayFormatError, "float64"),
        ({"x": np.arange(4.0), "y": np.ones(5)}, ArrayFormatError, "equal 1-D"),
        ({"x": np.ones((2, 2)), "y": np.ones((2, 2))}, ArrayFormatError, "equal 1-D"),
    ],
)
def test_wrong_arrays(executor, launches, arrays, exc, match):
    from meshbench_cuda import encode_arrays

    refuse(executor, launches, exc, descriptor(), data=encode_arrays(arrays), match=match)


def test_input_that_is_not_a_bundle(executor, launches):
    refuse(executor, launches, ArrayFormatError, descriptor(), data=b"\x89PNG", match="bundle")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"params": {}}, "needs the parameter"),
        ({"params": {"a": 2.0, "b": 1.0}}, "no parameter"),
        ({"params": {"a": 1e301}}, "outside"),
        ({"block": (2048,)}, "outside"),
        ({"block": (0,)}, "outside"),
        ({"block": (8, 8)}, "1-D block"),
        ({"block": (True,)}, "1-D block"),
    ],
)
def test_launch_parameters_out_of_range(executor, launches, changes, match):
    refuse(executor, launches, LaunchParameterError, descriptor(**changes), match=match)


def test_block_of_more_than_1024_threads(launches):
    from meshbench_cuda.kernels.matmul import MATMUL

    spec = launches.spec(MATMUL)
    ex = CudaExecutor(kernels=[spec], approved=[spec.ref])
    call = KernelCall(kernel="matmul", arrays={"a": np.ones((2, 2)), "b": np.ones((2, 2))})
    d = dataclasses.replace(call.descriptor(), block=(64, 32)).encode()
    refuse(ex, launches, LaunchParameterError, d, data=call.bundle(), match="2048 threads")


@pytest.mark.parametrize(
    "raw",
    [
        b"not cbor",
        encoding.encode({"@type": "meshbench.KernelCall", "v": 1}),
        encoding.encode([1]),
    ],
)
def test_malformed_descriptors(executor, launches, raw):
    refuse(executor, launches, LaunchParameterError, raw)


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_flops", 0), ("max_time_ms", -1), ("rtol", 2.0), ("atol", -0.5), ("code_hash", "abc")],
)
def test_descriptor_fields_out_of_range(executor, launches, field, value):
    d = KernelCall(kernel="saxpy", arrays=X, params={"a": 2.0}).descriptor()
    raw = encoding.decode(d.encode())
    raw[field] = value
    refuse(executor, launches, LaunchParameterError, encoding.encode(raw))


def test_flop_budget(executor, launches):
    refuse(executor, launches, KernelBudgetExceeded, descriptor(max_flops=7), match="needs 8 FLOPs")


def test_memory_and_io_budgets(executor, launches):
    big = {"x": np.zeros(2**17), "y": np.zeros(2**17)}  # 3 MiB on the device
    p = KernelCall(kernel="saxpy", arrays=big, params={"a": 1.0}).task_payload()
    scope = CapabilityScope(memory_mb=1, io_mb=50)
    refuse(executor, launches, MemoryLimitExceeded, p.module, data=p.input, scope=scope)
    refuse(executor, launches, IOLimitExceeded, p.module, data=p.input,
           scope=CapabilityScope(io_mb=1), match="io_mb")  # fmt: skip


def test_wall_time_budget_is_not_a_result(launches):
    def slow_flops(arrays, params):
        return 1

    spec = launches.spec()
    ex = CudaExecutor(kernels=[spec], approved=[spec.ref])
    p = KernelCall(kernel="saxpy", arrays=X, params={"a": 2.0}, max_time_ms=1).descriptor()
    # the simulator takes milliseconds for any launch: over a 1 ms budget
    with pytest.raises(ExecutionTimeout):
        ex.run(dataclasses.replace(p, max_time_ms=1).encode(), payload().input)


def task_for(p, **changes) -> TaskIntent:
    publisher = make_identity(1)
    fields = dict(
        publisher=publisher.did, federation=make_identity(2).did, wasm_cid=blob_cid(p.module),
        input_cid=blob_cid(p.input), fee=100, scope=p.scope, args=p.args, executor=p.executor,
        validator=p.validator, created_at=T0, deadline=T0 + 60_000,
    )  # fmt: skip
    fields.update(changes)
    return TaskIntent(**fields).sign(publisher)


def test_run_task_checks_cids_and_args(executor, launches):
    p = payload()
    task = task_for(p)
    assert executor.accepts(task)
    assert executor.run_task(task, p.module, p.input).exit_code == 0
    launches.count = 0
    with pytest.raises(LaunchParameterError, match="hash to the task"):
        executor.run_task(task, p.module + b" ", p.input)
    with pytest.raises(ExecutionError, match="input bytes"):
        executor.run_task(task, p.module, p.input + b" ")
    other = task_for(p, args=("saxpy@1.0.0", "0" * 64))
    assert not executor.accepts(other)
    with pytest.raises(LaunchParameterError, match="do not name"):
        executor.run_task(other, p.module, p.input)
    assert launches.count == 0


def test_kernel_call_builds_a_gpu_task_payload():
    p = payload(rtol=1e-9, max_time_ms=1000)
    assert p.executor == "cuda" and p.validator == "tolerance"
    assert p.args == ("saxpy@1.0.0", SAXPY.code_hash)
    assert p.scope.gpu_flops == 8  # 8 FLOPs within one second
    assert payload().validator == "exact"
    with pytest.raises(LaunchParameterError, match="not installed"):
        KernelCall(kernel="nbody").task_payload()


def test_errors_are_kernel_errors():
    for exc in (UnknownKernel, KernelNotApproved, KernelHashMismatch, ArrayFormatError,
                LaunchParameterError, KernelBudgetExceeded):  # fmt: skip
        assert issubclass(exc, KernelError) and issubclass(exc, ExecutionError)


def test_plugins_are_found_through_entry_points():
    assert isinstance(load_executor("cuda"), CudaExecutor)
    assert isinstance(load_validator("tolerance"), ToleranceValidator)


def test_descriptor_round_trip():
    d = KernelCall(kernel="saxpy", arrays=X, params={"a": 2.0}, rtol=1e-6).descriptor()
    from meshbench_cuda import parse_descriptor

    assert parse_descriptor(d.encode()) == d
    assert isinstance(d, Descriptor)
