;; fd_exhaustion: opens /tmp/f again and again without closing; the sandbox stops at its
;; descriptor limit and the guest exits with the errno it got (EBIG = 1).
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "f")
  (func (export "_start")
    (local $err i32)
    (loop $again
      (local.set $err
        (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 1)
                         (i32.const 1) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 200)))
      (br_if $again (i32.eqz (local.get $err))))
    (call $proc_exit (local.get $err))))
