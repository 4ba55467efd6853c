;; huge_table: a table of two million elements can never be instantiated (the store allows
;; a million): refused from its bytes, before compiling (InvalidModule).
(module
  (memory (export "memory") 1)
  (table 2000000 funcref)
  (func (export "_start")))
