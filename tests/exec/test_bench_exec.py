"""``meshbench bench exec --quick``: runs, reports every figure, kernels match Numba bit for bit."""

from __future__ import annotations

import json

from click.testing import CliRunner

from meshbench.cli.meshbench import main_group


def test_bench_exec_quick_json():
    res = CliRunner().invoke(main_group, ["bench", "exec", "--json", "--quick"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    for key in (
        "hello_ms",
        "hello_vs_bare",
        "kernel_vs_numba",
        "fuel_overhead",
        "cold_compile_s",
        "cached_load_s",
        "matmul_vs_numba",
    ):
        assert isinstance(report[key], float) and report[key] > 0, key
    assert report["stencil_bit_identical"] is True
    assert report["matmul_bit_identical"] is True
