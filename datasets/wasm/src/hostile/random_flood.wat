;; random_flood: asks for 60 KiB of random bytes forever: random bytes count against io_mb.
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $more
      (drop (call $random_get (i32.const 1024) (i32.const 61440)))
      (br $more))))
