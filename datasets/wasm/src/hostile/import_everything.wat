;; import_everything: asks for host functions nobody provides (and a memory and a global):
;; refused from the import section, before compiling (InvalidModule).
(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "env" "system" (func (param i32) (result i32)))
  (import "wasi_snapshot_preview2" "sockets" (func))
  (import "os" "fork" (func (result i32)))
  (import "env" "memory" (memory 1))
  (import "env" "stack_pointer" (global (mut i32)))
  (func (export "_start")))
