;; many_memories: two linear memories need multi-memory, which the engine leaves off:
;; InvalidModule at validation.
(module
  (memory (export "memory") 1)
  (memory $second 1)
  (func (export "_start")))
