"""A kernel call: the descriptor blob a GPU task names as its ``wasm_cid``.

Descriptor (strict DAG-CBOR, so its CID is canonical)::

    {"@type": "meshbench.KernelCall", "v": 1,
     "kernel": NAME, "version": VERSION, "code_hash": SHA256_HEX,
     "params": {NAME: number, ...}, "block": [] (the kernel's default), [bx] or [bx, by],
     "max_flops": int, "max_time_ms": int, "rtol": float, "atol": float}

A GPU TaskIntent has ``executor="cuda"``, ``wasm_cid`` = the descriptor's raw CID,
``input_cid`` = the array bundle's raw CID (:mod:`meshbench_cuda.arrays`),
``args = ("NAME@VERSION", SHA256_HEX)`` (so a worker can decide to offer without fetching
anything), ``validator`` = ``exact`` when ``rtol == atol == 0`` else ``tolerance``, and
``scope.gpu_flops`` = the throughput (FLOP/s) needed to finish ``max_flops`` within
``max_time_ms``: selection gives the task only to workers that measured at least that.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from meshbench.core import encoding
from meshbench.core.errors import EncodingError, LaunchParameterError
from meshbench.core.types import CapabilityScope
from meshbench.exec.plugins import TaskPayload
from meshbench_cuda.arrays import encode_arrays
from meshbench_cuda.registry import installed_kernels

__all__ = ["Descriptor", "KernelCall", "parse_descriptor"]

TYPE: Final = "meshbench.KernelCall"
KEYS: Final = frozenset(
    {"@type", "v", "kernel", "version", "code_hash", "params", "block", "max_flops",
     "max_time_ms", "rtol", "atol"}
)  # fmt: skip
HEX64: Final = re.compile(r"^[0-9a-f]{64}$")
NAME: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
VERSION: Final = re.compile(r"^[0-9A-Za-z.+-]{1,32}$")
MAX_FLOPS: Final = 10**18
MAX_TIME_MS: Final = 24 * 3600 * 1000


@dataclass(frozen=True, kw_only=True)
class Descriptor:
    """A decoded, range-checked kernel call (what the executor runs)."""

    kernel: str
    version: str
    code_hash: str
    params: Mapping[str, float | int]
    block: tuple[int, ...]
    max_flops: int
    max_time_ms: int
    rtol: float
    atol: float

    @property
    def ref(self) -> str:
        return f"{self.kernel}@{self.version}"

    def encode(self) -> bytes:
        return encoding.encode(
            {
                "@type": TYPE,
                "v": 1,
                "kernel": self.kernel,
                "version": self.version,
                "code_hash": self.code_hash,
                "params": dict(self.params),
                "block": list(self.block),
                "max_flops": self.max_flops,
                "max_time_ms": self.max_time_ms,
                "rtol": float(self.rtol),
                "atol": float(self.atol),
            }
        )


def parse_descriptor(data: bytes) -> Descriptor:
    """Decode and check a descriptor; anything off raises LaunchParameterError."""
    try:
        d = encoding.decode(data, max_bytes=64 * 1024)
    except EncodingError as exc:
        raise LaunchParameterError(f"not a kernel call descriptor: {exc}", fuel_used=0) from None
    if not isinstance(d, dict) or d.get("@type") != TYPE or d.get("v") != 1 or set(d) != KEYS:
        raise LaunchParameterError(
            f"a version 1 {TYPE} has exactly the keys {sorted(KEYS)}", fuel_used=0
        )

    def bad(why: str) -> LaunchParameterError:
        return LaunchParameterError(f"kernel call: {why}", fuel_used=0)

    if not isinstance(d["kernel"], str) or not NAME.match(d["kernel"]):
        raise bad(f"kernel name {d['kernel']!r} must match {NAME.pattern}")
    if not isinstance(d["version"], str) or not VERSION.match(d["version"]):
        raise bad(f"version {d['version']!r} must match {VERSION.pattern}")
    if not isinstance(d["code_hash"], str) or not HEX64.match(d["code_hash"]):
        raise bad("code_hash must be 64 lower-case hex digits (sha256)")
    params = d["params"]
    if not isinstance(params, dict) or len(params) > 32:
        raise bad("params must be a map of at most 32 numbers")
    for k, v in params.items():
        if type(v) not in (int, float) or (type(v) is float and not math.isfinite(v)):
            raise bad(f"parameter {k!r} must be a finite number, not {v!r}")
    block = d["block"]
    if not isinstance(block, list) or len(block) > 3:
        raise bad("block must be a list of up to 3 integers (empty: the kernel's default)")
    for name, hi in (("max_flops", MAX_FLOPS), ("max_time_ms", MAX_TIME_MS)):
        if type(d[name]) is not int or not 1 <= d[name] <= hi:
            raise bad(f"{name} must be an integer in 1..{hi}")
    for name in ("rtol", "atol"):
        if type(d[name]) is not float or not 0.0 <= d[name] <= 1.0:
            raise bad(f"{name} must be a float in [0, 1]")
    return Descriptor(
        kernel=d["kernel"],
        version=d["version"],
        code_hash=d["code_hash"],
        params=params,
        block=tuple(block),
        max_flops=d["max_flops"],
        max_time_ms=d["max_time_ms"],
        rtol=d["rtol"],
        atol=d["atol"],
    )


@dataclass(frozen=True, kw_only=True)
class KernelCall:
    """What a publisher asks for: ``mesh.publish(kernel=KernelCall(...), fee=..., verifiers=3)``.

    ``version`` and ``code_hash`` default to the kernel installed here (the publisher's own
    copy of the kernel package); ``max_flops`` to the call's exact FLOP count.
    """

    kernel: str
    arrays: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, float | int] = field(default_factory=dict)
    version: str = ""
    code_hash: str = ""
    block: tuple[int, ...] = ()
    max_flops: int | None = None
    max_time_ms: int = 60_000
    rtol: float = 0.0
    atol: float = 0.0
    memory_mb: int = 128
    io_mb: int = 50

    def descriptor(self) -> Descriptor:
        spec = _local_spec(self.kernel, self.version)
        version = self.version or (spec.version if spec else "")
        code_hash = self.code_hash or (spec.code_hash if spec else "")
        if not version or not code_hash:
            raise LaunchParameterError(
                f"kernel {self.kernel!r} is not installed here: give version and code_hash"
            )
        flops = self.max_flops
        if flops is None:
            if spec is None:
                raise LaunchParameterError("give max_flops for a kernel not installed here")
            from meshbench_cuda.arrays import decode_arrays

            arrays = decode_arrays(self.bundle())
            params = spec.resolve_params(self.params)
            spec.check(arrays, params)
            flops = max(1, spec.flops(arrays, params))
        block = tuple(self.block) or (spec.default_block if spec else ())
        return Descriptor(
            kernel=self.kernel,
            version=version,
            code_hash=code_hash,
            params=dict(self.params),
            block=block,
            max_flops=flops,
            max_time_ms=self.max_time_ms,
            rtol=float(self.rtol),
            atol=float(self.atol),
        )

    def bundle(self) -> bytes:
        return encode_arrays(self.arrays)

    def task_payload(self) -> TaskPayload:
        """The task parts :meth:`meshbench.runtime.mesh.Mesh.publish` stores and signs."""
        d = self.descriptor()
        rate = math.ceil(d.max_flops * 1000 / d.max_time_ms)
        return TaskPayload(
            executor="cuda",
            validator="exact" if d.rtol == 0.0 and d.atol == 0.0 else "tolerance",
            module=d.encode(),
            input=self.bundle(),
            args=(d.ref, d.code_hash),
            scope=CapabilityScope(memory_mb=self.memory_mb, gpu_flops=rate, io_mb=self.io_mb),
        )


def _local_spec(name: str, version: str) -> Any:
    specs = [s for s in installed_kernels().values() if s.name == name]
    if version:
        specs = [s for s in specs if s.version == version]
    return specs[-1] if specs else None
