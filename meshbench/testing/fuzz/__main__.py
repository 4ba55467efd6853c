"""Run one fuzz target under atheris: ``python -m meshbench.testing.fuzz TARGET [options]``.

    python -m meshbench.testing.fuzz dagcbor --seconds 120
    python -m meshbench.testing.fuzz seed            # write the seed inputs into the corpus
    python -m meshbench.testing.fuzz dagcbor --merge  # minimise the target's corpus

Coverage comes from atheris' bytecode instrumentation of every loaded ``meshbench`` module
(applied after import, since importing meshbench loads the core first). New inputs that add
coverage go into ``tests/fuzz/corpus/TARGET``; a crash (any exception that is not a
``MeshError``) stops the run and leaves ``crash-*`` in the working directory, as libFuzzer does.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import sys
import threading
import types
from pathlib import Path

from meshbench.core.errors import MeshError
from meshbench.testing.fuzz.targets import TARGETS, seeds

CORPUS = Path(__file__).resolve().parents[3] / "tests" / "fuzz" / "corpus"


def write_seeds(corpus: Path) -> int:
    count = 0
    for name, inputs in seeds().items():
        folder = corpus / name
        folder.mkdir(parents=True, exist_ok=True)
        for data in inputs:
            path = folder / hashlib.sha1(data).hexdigest()
            if not path.exists():
                path.write_bytes(data)
                count += 1
    return count


def _arcs(target: str, data: bytes, prefix: str) -> frozenset[tuple[object, int, int]]:
    """The (code, line, next line) arcs one input runs through in ``prefix``'s source."""
    arcs: set[tuple[object, int, int]] = set()

    def tracer(frame: types.FrameType, event: str, arg: object) -> object:
        if not frame.f_code.co_filename.startswith(prefix):
            return None
        last = [frame.f_lineno]

        def local(frame: types.FrameType, event: str, arg: object) -> object:
            if event == "line":
                arcs.add((frame.f_code, last[0], frame.f_lineno))
                last[0] = frame.f_lineno
            return local

        return local

    sys.settrace(tracer)
    threading.settrace(tracer)
    try:
        with contextlib.suppress(MeshError):
            TARGETS[target](data)
    finally:
        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type]
    return frozenset(arcs)


def minimize(target: str, corpus: Path) -> tuple[int, int]:
    """Keep the smallest inputs that together cover every arc the corpus covers.

    libFuzzer's own ``-merge`` re-executes the fuzzer binary, which under atheris is the
    interpreter without this module's arguments; a greedy set cover over line arcs (traced
    in meshbench's own source) does the same job in process.
    """
    prefix = str(Path(__file__).resolve().parents[2])
    files = sorted(corpus.iterdir(), key=lambda p: (p.stat().st_size, p.name))
    covered: set[tuple[object, int, int]] = set()
    kept = 0
    for path in files:
        new = _arcs(target, path.read_bytes(), prefix) - covered
        if new:
            covered |= new
            kept += 1
        else:
            path.unlink()
    return kept, len(files)


def _instrument(prefix: str = "meshbench") -> int:
    """Instrument every function and method defined in loaded ``prefix`` modules."""
    import atheris

    done = 0
    for name, module in list(sys.modules.items()):
        if not (name == prefix or name.startswith(prefix + ".")) or name.endswith("__main__"):
            continue
        for obj in list(vars(module).values()):
            funcs: list[types.FunctionType] = []
            with contextlib.suppress(ValueError):  # lru_cache and functools.wraps wrappers
                obj = inspect.unwrap(obj)
            if inspect.isfunction(obj) and obj.__module__ == name:
                funcs.append(obj)
            elif inspect.isclass(obj) and obj.__module__ == name:
                for attr in vars(obj).values():
                    fn = getattr(attr, "__func__", attr)
                    fn = getattr(fn, "fget", fn)  # properties
                    fn = getattr(fn, "func", fn)  # cached_property
                    if inspect.isfunction(fn):
                        funcs.append(fn)
            for fn in funcs:
                try:
                    atheris.instrument_func(fn)
                    done += 1
                except Exception:  # builtins wrapped as functions, odd code objects
                    continue
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meshbench.testing.fuzz")
    parser.add_argument("target", choices=[*TARGETS, "seed"])
    parser.add_argument("--seconds", type=int, default=60, help="stop after this long")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--merge", action="store_true", help="minimise the corpus in place")
    parser.add_argument("libfuzzer", nargs="*", help="extra libFuzzer flags (after --)")
    args = parser.parse_args(argv)
    if args.target == "seed":
        print(f"{write_seeds(args.corpus)} new seed inputs in {args.corpus}")
        return 0

    corpus = args.corpus / args.target
    if args.merge:
        kept, total = minimize(args.target, corpus)
        print(f"{args.target}: kept {kept} of {total} inputs", file=sys.stderr)
        return 0

    import atheris

    target = TARGETS[args.target]

    def one_input(data: bytes) -> None:
        with contextlib.suppress(MeshError):
            target(data)

    corpus.mkdir(parents=True, exist_ok=True)
    print(f"instrumented {_instrument()} functions", file=sys.stderr)
    flags = [f"-max_total_time={args.seconds}", "-timeout=10", "-rss_limit_mb=4096"]
    flags += ["-max_len=8192", *args.libfuzzer]
    atheris.Setup([sys.argv[0], *flags, str(corpus)], one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
