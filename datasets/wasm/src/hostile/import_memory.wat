;; import_memory: imports its memory from the host instead of defining one: InvalidModule.
(module
  (import "env" "memory" (memory 1))
  (export "memory" (memory 0))
  (func (export "_start")))
