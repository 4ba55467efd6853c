;; memory_bomb: grows memory one page at a time, touching every page, and traps when a grow
;; is refused: MemoryLimitExceeded, with host memory bounded by the scope's memory_mb.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $grow
      (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then (unreachable)))
      (i32.store (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 4))
                 (i32.const 1))
      (br $grow))))
