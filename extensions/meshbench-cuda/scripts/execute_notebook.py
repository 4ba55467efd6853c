"""Execute a notebook top to bottom and store its outputs (what nbval later compares).

    NUMBA_ENABLE_CUDASIM=1 .venv/bin/python extensions/meshbench-cuda/scripts/execute_notebook.py \\
        notebooks/06-gpu-kernels.ipynb

Uses jupyter_client and nbformat (already installed with nbval); stops at the first error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from jupyter_client.manager import start_new_kernel


def execute(path: Path, timeout: float = 600) -> None:
    nb = nbformat.read(path, as_version=4)
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(path.parent))
    try:
        count = 0
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            count += 1
            outputs: list = []
            msg_id = kc.execute(cell.source)
            while True:
                msg = kc.get_iopub_msg(timeout=timeout)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "status" and content["execution_state"] == "idle":
                    break
                if kind == "stream":
                    if outputs and outputs[-1].get("name") == content["name"]:
                        outputs[-1]["text"] += content["text"]
                    else:
                        outputs.append(nbformat.v4.new_output("stream", **content))
                elif kind in ("execute_result", "display_data"):
                    out = nbformat.v4.new_output(kind, data=content["data"])
                    if kind == "execute_result":
                        out["execution_count"] = count
                    outputs.append(out)
                elif kind == "error":
                    raise RuntimeError(f"cell {count} failed:\n" + "\n".join(content["traceback"]))
            cell.outputs = outputs
            cell.execution_count = count
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    nbformat.write(nb, path)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        execute(Path(arg))
        print(f"executed {arg}")
