# The README's two set-up commands: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install token unit integration e2e bench clean fuzz

$(STAMP): requirements.lock shared/pyproject.toml services/plan-service/pyproject.toml services/notification-service/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e shared -e services/plan-service -e services/notification-service
	touch $@

install: $(STAMP)

## run: both services on embedded defaults (SQLite under ./var, HTTP feed); Ctrl-C stops
run: $(STAMP)
	@scripts/run

## test: install, start the infrastructure the tests need, run every test layer
test: $(STAMP)
	@scripts/test

## token ROLE=integration SUB=epr-1 [OBO=clin-7]: print a dev bearer token
token: $(STAMP)
	@$(BIN)/plan-service token --role $(or $(ROLE),integration) --sub $(or $(SUB),epr-1) \
		$(if $(OBO),--on-behalf-of $(OBO))

unit: $(STAMP)
	$(BIN)/pytest -q -m "not integration and not e2e"

## fuzz [EXAMPLES=2000] [SEED=N]: schemathesis over both OpenAPI documents, the long version
## (EXAMPLES generated cases per operation, a fresh seed unless SEED repeats one; the test suite
## runs the same test with 25 cases each, derandomized)
fuzz: $(STAMP)
	@seed=$${SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; echo "fuzz: seed $$seed (repeat with SEED=$$seed)"; \
	SCHEMATHESIS_SEED=$$seed SCHEMATHESIS_MAX_EXAMPLES=$(or $(EXAMPLES),2000) \
		$(BIN)/pytest -p no:cacheprovider -q tests/test_schemathesis.py

## bench: the write path's figures side by side (wrk, pgbench; PostgreSQL and Kafka from infra/, stopped
## again if it started them), one table each, medians of 3 rounds; ~10-15 min (README, "Benchmarks")
bench: $(STAMP)
	@bench/run

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
