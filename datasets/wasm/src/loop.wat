;; loop: never returns. Only fuel (or the wall-clock backstop) stops it.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $forever (br $forever))))
