"""The price and the soundness of verification, per scheme and attacker class.

``meshbench bench verify [--quick] --json`` prints ``{"rows": [{"scheme", "attacker", "f",
"tasks", "executions_per_task", "wrong_accept" (finalized), "bound" (closed form), ...}],
"seconds"}`` (:func:`meshbench.sim.table.verification_table`): 10,000 simulated tasks per
cell for six schemes, five attacker classes and f in {0.05, 0.1, 0.2, 0.3}; ``--quick``
runs 400 tasks per cell at f = 0.1 and 0.3.
"""

from __future__ import annotations

from typing import Any

from meshbench.sim.table import verification_table


def run(quick: bool = False) -> dict[str, Any]:
    if quick:
        return verification_table(tasks=400, fractions=(0.1, 0.3))
    return verification_table(tasks=10_000)
