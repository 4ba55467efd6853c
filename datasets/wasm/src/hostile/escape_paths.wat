;; escape_paths: tries every way out of its directories that WASI offers and writes each
;; errno to stdout as one byte, then exits with the number of attempts that succeeded (0).
;; Run it with an input directory at /data (fd 3) holding a file "f"; /tmp is fd 4.
;; Expected: ENOTCAPABLE (76) for the ten path escapes, then ENOTSUP (58) for a symlink,
;; ENOENT (44) for readlink, EROFS (69) for moving the input out, EBADF (8) for an unopened
;; descriptor, ENOTDIR (54) for a path under stdout, EROFS (69) for truncating an input.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink"
    (func $path_symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_readlink"
    (func $path_readlink (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_rename"
    (func $path_rename (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 1000) "/etc/passwd")             ;; 11
  (data (i32.const 1100) "../etc/passwd")           ;; 13
  (data (i32.const 1200) "../../../../etc/passwd")  ;; 22
  (data (i32.const 1300) "./../tmp")                ;; 8
  (data (i32.const 1400) "..")                      ;; 2
  (data (i32.const 1500) "link")                    ;; 4
  (data (i32.const 1600) "f")                       ;; 1
  (global $n (mut i32) (i32.const 0))
  (global $ok (mut i32) (i32.const 0))
  (func $record (param $errno i32)
    (i32.store8 (i32.add (i32.const 2000) (global.get $n)) (local.get $errno))
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (if (i32.eqz (local.get $errno)) (then (global.set $ok (i32.add (global.get $ok) (i32.const 1))))))
  (func $open (param $fd i32) (param $ptr i32) (param $len i32) (param $oflags i32) (result i32)
    (call $path_open (local.get $fd) (i32.const 0) (local.get $ptr) (local.get $len)
                     (local.get $oflags) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 900)))
  (func (export "_start")
    (local $fd i32)
    (local.set $fd (i32.const 3))
    (loop $both
      (call $record (call $open (local.get $fd) (i32.const 1000) (i32.const 11) (i32.const 0)))
      (call $record (call $open (local.get $fd) (i32.const 1100) (i32.const 13) (i32.const 0)))
      (call $record (call $open (local.get $fd) (i32.const 1200) (i32.const 22) (i32.const 0)))
      (call $record (call $open (local.get $fd) (i32.const 1300) (i32.const 8) (i32.const 0)))
      (call $record (call $open (local.get $fd) (i32.const 1400) (i32.const 2) (i32.const 0)))
      (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
      (br_if $both (i32.le_u (local.get $fd) (i32.const 4))))
    (call $record
      (call $path_symlink (i32.const 1000) (i32.const 11) (i32.const 4) (i32.const 1500) (i32.const 4)))
    (call $record
      (call $path_readlink (i32.const 4) (i32.const 1500) (i32.const 4)
                           (i32.const 3000) (i32.const 100) (i32.const 900)))
    (call $record
      (call $path_rename (i32.const 3) (i32.const 1600) (i32.const 1) (i32.const 4) (i32.const 1600) (i32.const 1)))
    (call $record (call $open (i32.const 1000) (i32.const 1600) (i32.const 1) (i32.const 0)))
    (call $record (call $open (i32.const 1) (i32.const 1600) (i32.const 1) (i32.const 0)))
    (call $record (call $open (i32.const 3) (i32.const 1600) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 2000))
    (i32.store (i32.const 4) (global.get $n))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $proc_exit (global.get $ok))))
