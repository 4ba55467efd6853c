"""What a kernel package declares: :class:`KernelSpec`, registered in ``meshbench.kernels``.

A kernel is Python code that a worker's operator installed (a package) and approved; a task
only *names* it (name, version, content hash) and supplies data. The spec says which arrays
and scalar parameters the kernel takes, checks their shapes, counts the FLOPs and device
bytes a call needs (before anything runs), launches it, and gives a CPU reference.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final

import numpy as np

from meshbench.core.errors import ArrayFormatError, LaunchParameterError

__all__ = [
    "MAX_BLOCK_THREADS",
    "MAX_GRID_X",
    "MAX_GRID_YZ",
    "Arrays",
    "KernelSpec",
    "Param",
    "Params",
    "grid_for",
    "require",
]

#: CUDA limits every current device shares (threads per block, grid dimensions).
MAX_BLOCK_THREADS: Final = 1024
MAX_BLOCK_DIM: Final = (1024, 1024, 64)
MAX_GRID_X: Final = 2**31 - 1
MAX_GRID_YZ: Final = 65535

Arrays = Mapping[str, np.ndarray]
Params = Mapping[str, float | int]


@dataclass(frozen=True)
class Param:
    """A scalar parameter: its kind (``float`` or ``int``), closed range and default."""

    kind: type
    lo: float
    hi: float
    default: float | int | None = None


@dataclass(frozen=True, kw_only=True)
class KernelSpec:
    """An installable kernel. ``launch`` runs on the device; the rest runs before it."""

    name: str
    version: str
    summary: str
    #: The Python module holding the kernel's code; its source bytes are the content hash.
    module: str
    #: Input array name -> dtype name (see :mod:`meshbench_cuda.arrays`).
    inputs: Mapping[str, str]
    params: Mapping[str, Param] = field(default_factory=dict)
    #: Dimensions of a thread block (1 or 2) and the default block.
    block_dims: int = 1
    default_block: tuple[int, ...] = (128,)
    #: Bit-identical on every device (integer-only work), not only within one GPU class.
    portable: bool = False
    #: ``check(arrays, params)`` raises ArrayFormatError for wrong shapes.
    check: Callable[[Arrays, Params], None]
    flops: Callable[[Arrays, Params], int]
    #: Bytes the call holds on the device (inputs, outputs, scratch).
    device_bytes: Callable[[Arrays, Params], int]
    #: ``launch(arrays, params, block, seed) -> outputs`` (NumPy arrays back on the host).
    launch: Callable[[Arrays, Params, tuple[int, ...], bytes], dict[str, np.ndarray]]
    #: ``reference(arrays, params, seed) -> outputs``: the same arithmetic on the CPU.
    reference: Callable[[Arrays, Params, bytes], dict[str, np.ndarray]]

    @property
    def ref(self) -> str:
        """``name@version``: how tasks name the kernel (with :attr:`code_hash`)."""
        return f"{self.name}@{self.version}"

    @cached_property
    def code_hash(self) -> str:
        """sha256 (hex) of the kernel module's source file: what an operator approves."""
        found = importlib.util.find_spec(self.module)
        if found is None or found.origin is None:
            raise LaunchParameterError(f"kernel {self.ref}: module {self.module} not found")
        with open(found.origin, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    def resolve_params(self, given: Mapping[str, Any]) -> dict[str, float | int]:
        """Check and complete the scalar parameters (LaunchParameterError when out of range)."""
        unknown = set(given) - set(self.params)
        if unknown:
            raise LaunchParameterError(
                f"kernel {self.ref} has no parameter(s) {', '.join(sorted(unknown))}; "
                f"it takes {', '.join(self.params) or 'none'}"
            )
        out: dict[str, float | int] = {}
        for name, p in self.params.items():
            value = given.get(name, p.default)
            if value is None:
                raise LaunchParameterError(f"kernel {self.ref} needs the parameter {name!r}")
            if p.kind is int and (type(value) is not int):
                raise LaunchParameterError(f"{self.ref}: {name} must be an integer, not {value!r}")
            if p.kind is float:
                if type(value) not in (int, float) or not math.isfinite(value):
                    raise LaunchParameterError(f"{self.ref}: {name} must be a finite number")
                value = float(value)
            if not p.lo <= value <= p.hi:
                raise LaunchParameterError(
                    f"{self.ref}: {name}={value} is outside [{p.lo}, {p.hi}]"
                )
            out[name] = value
        return out

    def check_block(self, block: tuple[int, ...]) -> tuple[int, ...]:
        """A valid thread block for this kernel, or LaunchParameterError."""
        block = tuple(block) or self.default_block
        if len(block) != self.block_dims or not all(type(b) is int for b in block):
            raise LaunchParameterError(
                f"kernel {self.ref} takes a {self.block_dims}-D block of integers, not {block!r}"
            )
        if any(not 1 <= b <= lim for b, lim in zip(block, MAX_BLOCK_DIM, strict=False)):
            raise LaunchParameterError(f"block {block} has a dimension outside 1..{MAX_BLOCK_DIM}")
        if math.prod(block) > MAX_BLOCK_THREADS:
            raise LaunchParameterError(
                f"block {block} has {math.prod(block)} threads; at most {MAX_BLOCK_THREADS}"
            )
        return block

    def check_inputs(self, arrays: Arrays) -> None:
        """Names and dtypes of the input arrays (shapes: the spec's own ``check``)."""
        if set(arrays) != set(self.inputs):
            raise ArrayFormatError(
                f"kernel {self.ref} takes arrays {sorted(self.inputs)}, not {sorted(arrays)}"
            )
        for name, dtype in self.inputs.items():
            if arrays[name].dtype != np.dtype(dtype):
                raise ArrayFormatError(
                    f"kernel {self.ref}: array {name!r} must be {dtype}, not {arrays[name].dtype}"
                )


def require(condition: bool, message: str) -> None:
    """Raise ArrayFormatError(``message``) unless ``condition`` (for shape checks)."""
    if not condition:
        raise ArrayFormatError(message)


def grid_for(extent: tuple[int, ...], block: tuple[int, ...]) -> tuple[int, ...]:
    """Blocks per grid dimension to cover ``extent`` (LaunchParameterError past CUDA limits)."""
    grid = tuple(-(-e // b) for e, b in zip(extent, block, strict=True))
    limits = (MAX_GRID_X, MAX_GRID_YZ, MAX_GRID_YZ)
    if any(g > lim for g, lim in zip(grid, limits, strict=False)):
        raise LaunchParameterError(f"grid {grid} exceeds the CUDA grid limits {limits}")
    return grid
