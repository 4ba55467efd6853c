;; membomb: grows linear memory 16 pages (1 MiB) at a time until a grow is refused,
;; then exits with status 3, as a C program whose malloc failed would.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $grow
      (if (i32.ne (memory.grow (i32.const 16)) (i32.const -1))
        (then
          ;; touch the new memory so a host that over-commits would notice
          (i32.store (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 4))
                     (i32.const 1))
          (br $grow))))
    (call $proc_exit (i32.const 3))))
