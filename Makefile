# micromoment: `make demo` and `make test` are the whole quick start.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast clean

install: $(STAMP) ## create .venv and install the project with its test tools

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "micromoment needs Python 3.11+, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $@

demo: install ## embedded broker + worker + synthetic stream, live recommendations (Ctrl-C stops)
	$(BIN)/micromoment demo

test: install ## the whole suite: unit, integration and end-to-end on the embedded broker
	$(BIN)/python -m pytest

test-fast: install ## unit tests only (no broker)
	$(BIN)/python -m pytest tests/unit streams

clean:
	rm -rf $(VENV) .micromoment .pytest_cache
