# Two commands on a fresh machine: `make run` and `make test` (README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Another interval gets a home of its own inside it (settings.default_home): STOCK_ASSETS_INTERVAL=60min -> .stock_assets/60min
export STOCK_ASSETS_HOME ?= $(CURDIR)/.stock_assets$(if $(filter-out 1d,$(or $(STOCK_ASSETS_INTERVAL),1d)),/$(STOCK_ASSETS_INTERVAL))
export DAGSTER_HOME ?= $(STOCK_ASSETS_HOME)/dagster
SESSIONS ?= 60

.PHONY: install instance run backfill live rebuild dev test test-fast test-deploy bench bench-peers lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@.tmp.$$$$ && mv $@.tmp.$$$$ $@

# The instance's storage is created once, under a lock: two first commands at once are safe.
instance: install $(DAGSTER_HOME)/dagster.yaml
	@$(BIN)/python -m stock_assets.instance

run: install instance
	$(BIN)/python -m stock_assets.cli run --sessions $(SESSIONS) $(if $(SYMBOLS),--symbols $(SYMBOLS))

backfill: install instance
	@test -n "$(START)" -a -n "$(END)" || { echo "usage: make backfill START=YYYY-MM-DD END=YYYY-MM-DD [SYMBOLS=X,Y]"; exit 2; }
	$(BIN)/python -m stock_assets.cli backfill --start $(START) --end $(END) $(if $(CHUNK),--chunk $(CHUNK)) $(if $(SYMBOLS),--symbols $(SYMBOLS))

# The session in progress so far (live_prices): nothing outside NYSE market hours (README.md).
live: install instance
	$(BIN)/python -m stock_assets.cli live

rebuild: install
	@test -n "$(TABLE)" || { echo "usage: make rebuild TABLE=lake/prices|lake/deduped|lake/dq_report|lake/indicators"; exit 2; }
	$(BIN)/python -m stock_assets.cli rebuild --table $(TABLE)

dev: install instance
	$(BIN)/dagster dev -w workspace.yaml $(if $(PORT),-p $(PORT))

# Two workers: most tests wait on subprocesses, servers and SQLite, not on the two cores.
test: install
	$(BIN)/python -m pytest -n 2 --durations=15

# While editing: every test but those marked slow (pyproject.toml's markers). CI runs `make test`, which runs them all.
test-fast: install
	$(BIN)/python -m pytest -n 2 -m "not slow" --durations=10

# deploy/ for real with Docker (deploy/README.md, "How this is tested"): installs and starts what it needs, cleans up.
test-deploy: install
	bash deploy/test/run.sh

bench: install
	$(BIN)/python -m benchmarks

# The peers (zipline-reloaded, qlib, ArcticDB, pandas) in an environment of their own, then the
# peers item of the benchmarks; `make bench` includes it from then on (benchmarks/README.md).
PEERS_VENV := benchmarks/.peers-venv
bench-peers: install $(PEERS_VENV)/.installed
	$(BIN)/python -m benchmarks peers

$(PEERS_VENV)/.installed: benchmarks/peers/requirements.txt benchmarks/peers/install.py
	$(PYTHON) benchmarks/peers/install.py
	touch $@

lint: install
	$(BIN)/ruff check stock_assets stock_assets_tests

clean:
	rm -rf $(STOCK_ASSETS_HOME)
