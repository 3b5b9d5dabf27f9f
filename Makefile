# Two entry points for a newcomer: `make demo` and `make test`. Needs Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
ROWS   ?= 100000

.PHONY: install demo test faults lint bench mutation clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@# An editable install leaves the package uncompiled; where PYTHONDONTWRITEBYTECODE is set,
	@# every process (each flow run's) would compile it again.
	$(BIN)/python -m compileall -q flows api
	touch $@

install: $(VENV)/.installed

demo: install  ## embedded PostgreSQL, demo data, a CSV and an XLSX export, then the stack (Ctrl-C stops it)
	$(BIN)/exportflow seed --rows $(ROWS)
	mkdir -p .exportflow/demo
	$(BIN)/exportflow export products --bom -o .exportflow/demo/products.csv
	$(BIN)/exportflow export products --format xlsx --timezone Europe/Berlin -o .exportflow/demo/products.xlsx
	$(BIN)/exportflow export tags --filter name:contains:comma -o .exportflow/demo/tags-with-commas.csv
	@echo "demo files in .exportflow/demo/"; ls -l .exportflow/demo
	EXPORTFLOW_ENV=development $(BIN)/exportflow up

test: install  ## the suite, against EXPORTFLOW_TEST_DATABASE_URL or an embedded PostgreSQL
	$(BIN)/ruff check .
	@# CI installs LibreOffice and Chromium, runs as root and has a full PostgreSQL: it runs everything.
	@# A machine with only Python runs the rest and says what it left out.
	@# The minute-long fault tests run with `make faults`.
	@skip=" and not slow"; \
	if [ -z "$$CI" ] && ! command -v soffice >/dev/null; then skip="$$skip and not libreoffice"; \
		echo "deselected: LibreOffice read-back (apt-get install libreoffice-calc-nogui)"; fi; \
	if [ -z "$$CI" ] && [ ! -x /usr/bin/chromium ]; then skip="$$skip and not browser"; \
		echo "deselected: export page tests in a browser (apt-get install chromium)"; fi; \
	if [ -z "$$CI" ] && [ "$$(id -u)" != 0 ]; then skip="$$skip and not root"; \
		echo "deselected: storage-full tests on a tmpfs (they need root)"; fi; \
	if [ -z "$$CI" ] && [ -z "$$EXPORTFLOW_TEST_DATABASE_URL" ]; then skip="$$skip and not contrib"; \
		echo "deselected: citext tests (the embedded PostgreSQL has no contrib extensions)"; fi; \
	$(BIN)/pytest -q -m "$${skip# and }"

faults: install  ## the fault suite: restarted PostgreSQL, S3 down for 30 s, a full disk, killed runs
	$(BIN)/pytest -q -m faults tests/faults

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install  ## the benchmark table (seeds 1M and 10M rows once; takes several minutes)
	$(BIN)/python bench/bench_export.py

mutation: install  ## mutants of the data path and resume/cleanup logic against the fast tests
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2 > mutation.log 2>&1 || (tail -40 mutation.log; exit 1)
	$(BIN)/mutmut export-cicd-stats > /dev/null
	$(BIN)/python tests/mutation_report.py

clean:
	-$(BIN)/exportflow db stop
	rm -rf $(VENV) .exportflow .pytest_cache .ruff_cache mutants mutation.log
