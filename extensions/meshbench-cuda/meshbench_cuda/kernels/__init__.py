"""The kernels shipped with meshbench-cuda (each module is one kernel; its bytes are its hash)."""
