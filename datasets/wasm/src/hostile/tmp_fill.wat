;; tmp_fill: appends to a file in the scratch /tmp forever: files count against io_mb too.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "fill")
  (func (export "_start")
    (local $fd i32)
    ;; /tmp is the first preopen (fd 3) when no input directory is given
    (if (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 4)
                         (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 200))
      (then (unreachable)))
    (local.set $fd (i32.load (i32.const 200)))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 61440))
    (loop $fill
      (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
      (br $fill))))
