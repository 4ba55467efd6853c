;; poll_forever: sleeps for 2^62 ns at a time, forever. Time is virtual (the sleep returns at
;; once and advances the clock), so the host never waits: OutOfFuel.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    ;; one clock subscription at 0: userdata 0, tag 0 (clock), clock id 1, timeout 2^62
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 4611686018427387904))
    (loop $sleep
      (drop (call $poll (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 200)))
      (br $sleep))))
