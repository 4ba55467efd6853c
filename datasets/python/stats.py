"""An example Python task: `meshbench run --python datasets/python/stats.py --entry summary
--arg '[1, 2, 3]' --json` runs ``summary([1, 2, 3])`` in the deterministic sandbox."""

import statistics


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "mean": statistics.fmean(values), "max": max(values)}
