# The README's commands. Every target sets up what it needs (a local .venv) first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install gen check-gen fmt lint unit test serve bench

$(STAMP): requirements-dev.txt clients/python/pyproject.toml server/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q -e clients/python -e server
	touch $(STAMP)

install: $(STAMP)

# Python through grpc_tools, every other language through buf.gen.yaml (Go's plugins are
# pinned in clients/go/go.mod and fetched from the Go module proxy on first use).
GENERATED := clients/python/trackline/v1 clients/go/gen

gen: $(STAMP)
	PY=$(BIN)/python bash scripts/gen_python.sh
	rm -rf clients/go/gen
	$(BIN)/buf generate

# Fails when the committed generated code differs from what the protos produce.
check-gen: gen
	git diff --exit-code -- $(GENERATED)
	@test -z "$$(git status --porcelain -- $(GENERATED))" || (echo "untracked generated files"; exit 1)

# Rewrites the sources in the house style (ruff's fixes and formatter, buf's proto format).
fmt: $(STAMP)
	$(BIN)/ruff check --fix -q .
	$(BIN)/ruff format server clients/python/trackline tests bench --exclude clients/python/trackline/v1
	$(BIN)/buf format -w --path protos/trackline

# buf breaking compares the protos with the main branch (a no-op on main itself); a clone
# without a main branch compares with HEAD.
lint: $(STAMP)
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code --path protos/trackline
	$(BIN)/buf breaking --against ".git#branch=$$(git rev-parse --verify -q main >/dev/null && echo main || git rev-parse --abbrev-ref HEAD)"
	$(BIN)/ruff check .
	$(BIN)/ruff format --check server clients/python/trackline tests --exclude clients/python/trackline/v1
	$(BIN)/mypy server/trackline_server clients/python/trackline
	cd clients/go && go vet ./...

# Starts a local PostgreSQL (scripts/start_postgres.sh, needs root for apt) unless
# TRACKLINE_TEST_PG_URL is set; without one the PostgreSQL half of the suite is skipped.
test: $(STAMP) check-gen lint
	@url="$${TRACKLINE_TEST_PG_URL:-$$(bash scripts/start_postgres.sh)}" || url=""; \
	case "$$url" in postgresql*|"") ;; *) echo "Not a PostgreSQL URL: $$url"; exit 1;; esac; \
	if [ -z "$$url" ] && [ -n "$${TRACKLINE_REQUIRE_PG:-}" ]; then echo "PostgreSQL could not be started"; exit 1; fi; \
	echo "PostgreSQL for tests: $${url:-none (skipping those tests)}"; \
	TRACKLINE_TEST_PG_URL="$$url" $(BIN)/pytest -q --durations=15

# The fast loop: unit tests only (no server process, no PostgreSQL), a few seconds.
unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

serve: $(STAMP)
	$(BIN)/trackline server

# Every benchmark the README quotes (bench.ingest also runs log_metric_cost and history on
# each store); each starts its own servers. BENCH_PG_URL (a
# postgresql+asyncpg:// URL) adds the PostgreSQL figures where a bench has them.
bench: $(STAMP)
	$(BIN)/python -m bench.ingest $${BENCH_PG_URL:+--pg-url $$BENCH_PG_URL}
	$(BIN)/python -m bench.logbatch
	$(BIN)/python -m bench.search
	$(BIN)/python -m bench.unary $${BENCH_PG_URL:+--pg-url $$BENCH_PG_URL}
	$(BIN)/python -m bench.registry $${BENCH_PG_URL:+--pg-url $$BENCH_PG_URL}
	$(BIN)/python -m bench.artifacts
	$(BIN)/python -m bench.projects
	$(BIN)/python -m bench.auth
