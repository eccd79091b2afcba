# The two promises of the README: `make demo` and `make test`, each from a fresh machine.
# Both create/update the local venv, install what they need (Python extras, Debian's chromium for
# plotly's PNG export), register the notebook kernel, and run.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= data
REPORTS ?= reports
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: demo test venv chromium data preview report feedback bench bench-alpaca bench-ib notebooks clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# One stamp per extra set: reinstall when pyproject.toml changes.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[$*]'
	$(BIN)/python -m ipykernel install --sys-prefix --name bridge --display-name "Python (bridge)" >/dev/null
	touch $@

venv: $(VENV)/.installed-dev,research

# Debian's chromium for plotly/kaleido image export (kaleido cannot download a browser here).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-headless-shell >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for plotly image export ..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

data: $(VENV)/.installed-demo
	$(BIN)/bridge data install-samples --data-dir $(DATA) --db $(DATA)/bridge.duckdb

preview: data
	$(BIN)/bridge preview run --data-dir $(DATA) --db $(DATA)/bridge.duckdb

report: preview chromium
	$(BIN)/bridge report preview --db $(DATA)/bridge.duckdb --out $(REPORTS) --png
	$(BIN)/bridge report plan --db $(DATA)/bridge.duckdb --out $(REPORTS)
	$(BIN)/bridge report paper --db $(DATA)/bridge.duckdb --out $(REPORTS)
	$(BIN)/bridge report reconciliation --out $(REPORTS)
	$(BIN)/bridge report feedback --db $(DATA)/bridge.duckdb --out $(REPORTS)

demo: report

	@echo ""
	@echo "Demo done: state in $(DATA)/bridge.duckdb; report in $(REPORTS)/preview.html (open it in a browser),"
	@echo "executed notebook $(REPORTS)/preview.ipynb, NAV chart $(REPORTS)/preview_nav.png;"
	@echo "tomorrow's orders from the momentum book: $(REPORTS)/plan.html and $(REPORTS)/plan/<date>/orders_*.csv;"
	@echo "a snapshot executed on the paper broker, book checked: $(REPORTS)/paper.html;"
	@echo "bridge's book reconciled with the paper broker after real divergences: $(REPORTS)/reconciliation.html;"
	@echo "LiveFeedback for RD-Agent (feedback.json, qlib_res.csv, ret.pkl): $(REPORTS)/feedback/ and $(REPORTS)/feedback.html."

test: $(VENV)/.installed-dev,research chromium
	$(BIN)/bridge data install-samples --data-dir $(DATA) --db $(DATA)/bridge.duckdb
	$(BIN)/bridge preview run --data-dir $(DATA) --db $(DATA)/bridge.duckdb
	$(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_pipeline.py
	$(BIN)/python benchmarks/bench_import.py
	$(BIN)/python benchmarks/bench_plan.py
	$(BIN)/python benchmarks/bench_paper.py
	$(BIN)/python benchmarks/bench_risk.py
	$(BIN)/python benchmarks/bench_outbox.py
	$(BIN)/python benchmarks/bench_reconcile.py
	$(BIN)/python benchmarks/bench_feedback.py

feedback: preview
	$(BIN)/bridge feedback --db $(DATA)/bridge.duckdb --data-dir $(DATA) --out $(REPORTS)/feedback

bench-alpaca: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_alpaca_faults.py --orders 1000

bench-ib: preview $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_ib.py --repeat 5 --orders 1000

notebooks: $(VENV)/.installed-dev
	$(BIN)/python notebooks/make_notebooks.py

clean:
	rm -rf $(VENV) $(DATA)/*.parquet $(DATA)/*.duckdb* $(DATA)/manifest.json $(REPORTS)/*.ipynb $(REPORTS)/*.html $(REPORTS)/*.png
