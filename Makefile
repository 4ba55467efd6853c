# meshbench: the two commands are `make demo` and `make test`.
# Both build .venv from nothing (pinned by requirements.lock); a no-op when it is up to date.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9

.PHONY: demo test lint unit lock bench wasm wasm-check clean

# Installable extensions (their own pyproject.toml), installed editable beside meshbench.
EXTENSIONS := extensions/meshbench-cuda

$(STAMP): pyproject.toml requirements.lock $(addsuffix /pyproject.toml,$(EXTENSIONS))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip sync -q --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e . $(addprefix -e ,$(EXTENSIONS))
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/meshbench demo

lint: $(STAMP)
	$(BIN)/ruff check meshbench tests extensions
	$(BIN)/ruff format --check meshbench tests extensions

# js-libp2p for the interoperability test (tests/net/test_js_interop.py); skipped without npm
interop/js/node_modules/.installed: interop/js/package-lock.json
	if command -v npm >/dev/null 2>&1; then \
	    cd interop/js && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: the js-libp2p interop test will be skipped"; fi

unit: $(STAMP) interop/js/node_modules/.installed
	$(BIN)/python -m pytest -n 2 --timeout=300 -q

test: lint unit

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
