;; icn: the ICN guest ABI. Reads the input with env.input_load, logs its length,
;; and stores the input upper-cased (ASCII) with env.output_store.
(module
  (import "env" "input_load" (func $input_load (param i32 i32) (result i32)))
  (import "env" "output_store" (func $output_store (param i32 i32)))
  (import "env" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "upper-casing the input")
  (func (export "_start")
    (local $len i32) (local $i i32) (local $c i32)
    (call $log (i32.const 1) (i32.const 0) (i32.const 22))
    ;; input goes at 1024; at most 60 KiB of it
    (local.set $len (call $input_load (i32.const 1024) (i32.const 61440)))
    (if (i32.gt_u (local.get $len) (i32.const 61440))
      (then (local.set $len (i32.const 61440))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $c (i32.load8_u (i32.add (i32.const 1024) (local.get $i))))
        (if (i32.and (i32.ge_u (local.get $c) (i32.const 97))
                     (i32.le_u (local.get $c) (i32.const 122)))
          (then (i32.store8 (i32.add (i32.const 1024) (local.get $i))
                            (i32.sub (local.get $c) (i32.const 32)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $output_store (i32.const 1024) (local.get $len))))
