;; host_call_spin: calls sched_yield forever: host calls cost fuel, so OutOfFuel.
(module
  (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $spin (drop (call $yield)) (br $spin))))
