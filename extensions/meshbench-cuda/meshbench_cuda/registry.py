"""Installed kernels (entry point group ``meshbench.kernels``) and the operator's approvals."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import Final

from meshbench.core.errors import KernelHashMismatch, KernelNotApproved, UnknownKernel
from meshbench_cuda.spec import KernelSpec

__all__ = ["KERNEL_GROUP", "KernelRegistry", "installed_kernels"]

KERNEL_GROUP: Final = "meshbench.kernels"
#: Kernels shipped in this package are approved unless the operator says otherwise.
BUILT_IN_PREFIX: Final = "meshbench_cuda.kernels."


def installed_kernels() -> dict[str, KernelSpec]:
    """Every kernel installed on this host, by ``name@version`` (entry point order)."""
    out: dict[str, KernelSpec] = {}
    for ep in entry_points(group=KERNEL_GROUP):
        spec = ep.load()
        if isinstance(spec, KernelSpec):
            out[spec.ref] = spec
    return out


class KernelRegistry:
    """The kernels this worker may run: installed ones that its operator approved.

    ``approved`` lists ``name@version#sha256hex`` (or ``name@version`` for "the installed
    code, whatever its hash"); None approves the kernels shipped with meshbench-cuda and no
    third-party kernel package.
    """

    def __init__(
        self,
        kernels: Mapping[str, KernelSpec] | Iterable[KernelSpec] | None = None,
        *,
        approved: Iterable[str] | None = None,
    ) -> None:
        if kernels is None:
            self.kernels = installed_kernels()
        elif isinstance(kernels, Mapping):
            self.kernels = dict(kernels)
        else:
            self.kernels = {k.ref: k for k in kernels}
        if approved is None:
            self.approved = {
                ref: spec.code_hash
                for ref, spec in self.kernels.items()
                if spec.module.startswith(BUILT_IN_PREFIX)
            }
        else:
            self.approved = {}
            for entry in approved:
                ref, _, digest = entry.partition("#")
                self.approved[ref] = digest or None

    def resolve(self, name: str, version: str, code_hash: str) -> KernelSpec:
        """The approved kernel a task names, or UnknownKernel / KernelHashMismatch /
        KernelNotApproved."""
        ref = f"{name}@{version}"
        spec = self.kernels.get(ref)
        if spec is None:
            versions = sorted(k for k in self.kernels if k.startswith(f"{name}@"))
            hint = f" (installed: {', '.join(versions)})" if versions else ""
            raise UnknownKernel(f"kernel {ref} is not installed on this worker{hint}", fuel_used=0)
        if code_hash != spec.code_hash:
            raise KernelHashMismatch(
                f"kernel {ref}: the task wants code {code_hash[:16]}..., this worker has "
                f"{spec.code_hash[:16]}...",
                fuel_used=0,
            )
        if ref not in self.approved:
            raise KernelNotApproved(
                f"kernel {ref} is installed but not approved by this worker's operator",
                fuel_used=0,
            )
        pinned = self.approved[ref]
        if pinned is not None and pinned != spec.code_hash:
            raise KernelNotApproved(
                f"kernel {ref}: the operator approved code {pinned[:16]}..., not the "
                f"installed {spec.code_hash[:16]}...",
                fuel_used=0,
            )
        return spec

    def approves(self, name: str, version: str, code_hash: str) -> bool:
        try:
            self.resolve(name, version, code_hash)
        except (UnknownKernel, KernelHashMismatch, KernelNotApproved):
            return False
        return True
