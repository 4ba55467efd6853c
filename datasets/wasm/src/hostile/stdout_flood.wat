;; stdout_flood: writes 60 KiB to stdout again and again: IOLimitExceeded, and the host never
;; holds more than io_mb of it.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))   ;; iovec.buf
    (i32.store (i32.const 4) (i32.const 61440))  ;; iovec.len
    (loop $flood
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (br $flood))))
