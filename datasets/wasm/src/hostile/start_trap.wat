;; start_trap: the start function traps while the module is being instantiated: GuestTrap.
(module
  (memory (export "memory") 1)
  (func $boom (unreachable))
  (start $boom)
  (func (export "_start")))
