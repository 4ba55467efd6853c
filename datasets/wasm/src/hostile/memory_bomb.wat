;; memory_bomb: grows memory one page at a time, filling every new page, and traps when a
;; grow is refused: MemoryLimitExceeded, with host memory bounded by the scope's memory_mb.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $grow
      (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then (unreachable)))
      ;; fill the new page, so every byte the guest was given is really resident
      (memory.fill (i32.mul (i32.sub (memory.size) (i32.const 1)) (i32.const 65536))
                   (i32.const 1) (i32.const 65536))
      (br $grow))))
