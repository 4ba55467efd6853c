"""``meshbench bench gpu --quick``: runs on the simulator and says its GPU figures are not."""

from __future__ import annotations

import json

from click.testing import CliRunner

from meshbench.cli.meshbench import main_group


def test_bench_gpu_quick_json():
    res = CliRunner().invoke(main_group, ["bench", "gpu", "--json", "--quick"])
    assert res.exit_code == 0, res.output
    report = (
        json.loads(res.stdout)["gpu"] if "gpu" in json.loads(res.stdout) else json.loads(res.stdout)
    )
    assert report["simulated"] is True and "not a GPU" in report["note"]
    for key in ("matmul_gpu_gflops", "matmul_numba_cpu_gflops", "matmul_wasm_gflops"):
        assert report[key] > 0, key
    assert report["matmul_gpu_bit_identical_numba"] is True
    assert report["matmul_gpu_bit_identical_wasm"] is True
    assert set(report["kernels"]) == {"saxpy", "heat", "sum", "mc_pi"}
