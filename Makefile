# micromoment: `make demo` and `make test` are the whole quick start.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install browser demo test test-fast clean

install: $(STAMP) ## create .venv and install the project with its test tools

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "micromoment needs Python 3.11+, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $@

# The dashboard's browser test drives Debian's Chromium; without it (or without root) it skips.
browser: ## install Debian's chromium for the browser test when root and apt-get allow it
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium (apt-get) for the dashboard's browser test"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
			|| echo "could not install chromium: the browser test will skip"; \
	fi

demo: install ## embedded broker + worker + synthetic stream, live recommendations (Ctrl-C stops)
	$(BIN)/micromoment demo

test: install browser ## the whole suite: unit, integration and end-to-end on the embedded broker
	$(BIN)/python -m pytest

test-fast: install ## unit tests only (no broker)
	$(BIN)/python -m pytest tests/unit streams

clean:
	rm -rf $(VENV) .micromoment .pytest_cache
