# micromoment: `make demo` and `make test` are the whole quick start.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test-tools demo test test-fast bench clean

install: $(STAMP) ## create .venv and install the project with its test tools

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "micromoment needs Python 3.11+, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $@

# System tools some tests drive: Debian's chromium (the dashboard's browser test) and
# promtool (from the prometheus package: alert rules and their unit tests). Installed when
# missing and root with apt-get allows it; otherwise those tests skip, saying why.
test-tools: ## install chromium and promtool for the browser and alert-rule tests, when possible
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing$$missing (apt-get) for the browser and alert-rule tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; } \
			|| echo "could not install$$missing: those tests will skip"; \
	fi

demo: install ## embedded broker + worker + synthetic stream, live recommendations (Ctrl-C stops)
	$(BIN)/micromoment demo

# Two lanes, one test file per lane: most of the slow tests wait on consumer-group joins,
# not on the CPU (measured: 5 min instead of about 11 on 2 cores).
test: install test-tools ## the whole suite: unit, integration and end-to-end on the embedded broker
	$(BIN)/python -m pytest -n 2 --dist loadfile

test-fast: install ## unit tests only (no broker)
	$(BIN)/python -m pytest tests/unit streams

# The quick bench (5-10 minutes on 2 cores): throughput against bare Faust, latency,
# ranking, memory per user, scale-out; each figure beside its target. The full run
# (10-25 minutes): $(BIN)/micromoment bench --json bench.json
bench: install ## measure the pipeline (quick run); see README "Performance"
	$(BIN)/micromoment bench --quick --json .micromoment/bench/bench.json

clean:
	rm -rf $(VENV) .micromoment .pytest_cache
