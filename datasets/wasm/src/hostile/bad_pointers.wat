;; bad_pointers: a WASI call with buffers outside memory gets EFAULT (21), written to stdout
;; as one byte; then an ICN output_store past the end of memory traps (GuestTrap).
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "env" "output_store" (func $output_store (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    ;; iovec at 0 points past the end of memory
    (i32.store (i32.const 0) (i32.const 65000))
    (i32.store (i32.const 4) (i32.const 1000))
    (i32.store8 (i32.const 100)
      (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 1))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $output_store (i32.const 65535) (i32.const 2))))
