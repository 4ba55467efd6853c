;; trap: divides by zero; the engine reports it as a trap, never as a result.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (i32.div_u (i32.const 1) (i32.const 0)))))
