;; table_grow_bomb: grows a table 100k elements at a time; the store refuses past a million
;; (table.grow returns -1) and the guest traps: GuestTrap, host memory bounded.
(module
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (func (export "_start")
    (loop $grow
      (if (i32.eq (table.grow $t (ref.null func) (i32.const 100000)) (i32.const -1))
        (then (unreachable)))
      (br $grow))))
