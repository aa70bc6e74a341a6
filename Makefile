# The two commands: `make run` (HAAO on embedded defaults) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: run test axe lint typecheck check-deploy css clean clean-localmodel localmodel-wheel bench bench-quick

$(VENV)/bin/python:
	@$(PYTHON) -m venv $(VENV) || { echo "Python's venv module is missing: apt-get install python3-venv"; exit 1; }
	@$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[demo]'
	@touch $@

# The local model server (llama-cpp-python) compiles llama.cpp once, about 8 minutes on 2
# cores. It is built portably: a build tuned to the building CPU (-march=native, AVX-512)
# crashes on machines whose CPU differs, and pip's own cache keys a built wheel by version
# only, so the portable wheel is kept under its own name in WHEELS and installed from there.
LLAMA_VERSION := 0.3.36
WHEELS ?= $(HOME)/.cache/haao-wheels/llama-$(LLAMA_VERSION)-portable
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

$(WHEELS)/.built: | $(VENV)/bin/python
	@echo "== building llama-cpp-python $(LLAMA_VERSION) portably (about 8 minutes on 2 cores, once)"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" FORCE_CMAKE=1 $(PY) -m pip wheel --quiet --no-cache-dir \
	  --no-deps -w $(WHEELS) 'llama-cpp-python==$(LLAMA_VERSION)'
	@touch $@

localmodel-wheel: $(WHEELS)/.built

$(VENV)/.installed-dev: pyproject.toml $(WHEELS)/.built | $(VENV)/bin/python
	$(PY) -m pip install --quiet --find-links $(WHEELS) -e '.[dev,demo,localmodel]'
	@touch $@ $(VENV)/.installed-run

.env:
	@$(PY) -m haao.envfile .env

# The demo: sample models stand in for any model without a key (README, "Models"), and the
# sample project's checks run with this virtualenv's Python and pytest.
run: export HAAO_SAMPLE_MODELS ?= true
run: export HAAO_CHECK_TOOLCHAIN ?= $(abspath $(VENV))
run: $(VENV)/.installed-run .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py createcachetable
	$(PY) manage.py seed_demo --no-logins
	PORT=$(PORT) $(PY) manage.py serve

# axe-core for the accessibility browser tests (tests/e2e/test_accessibility_browser.py),
# installed from its lock file before the tests run, so they never need the internet.
AXE := tests/e2e/axe/node_modules/axe-core/axe.min.js

$(AXE): tests/e2e/axe/package-lock.json
	@if ! command -v npm >/dev/null; then echo "npm not found: the accessibility browser tests will be skipped (apt-get install npm)"; \
	elif (cd tests/e2e/axe && npm ci --no-audit --no-fund --loglevel=error); then touch $@; \
	else echo "npm ci in tests/e2e/axe failed: the accessibility browser tests will be skipped"; fi

axe: $(AXE)

test: $(VENV)/.installed-dev $(AXE)
	./scripts/test.sh $(ARGS)

# Drops the built llama.cpp wheel and uninstalls it, e.g. after the local model server died
# with SIGILL on another CPU: the next `make test` compiles it again (about 8 minutes).
clean-localmodel:
	rm -rf $(WHEELS)
	if [ -x $(PY) ]; then $(PY) -m pip uninstall --quiet -y llama-cpp-python; fi
	rm -f $(VENV)/.installed-dev

# Every benchmark in bench/ (bench/run.py): full sizes rewrite docs/benchmarks.md's figures;
# QUICK=1 (or bench-quick) runs small sizes into var/bench/quick.md. BENCH_ARGS, e.g.
# "--only loop,live" or "--skip first_run", go to the runner.
bench: $(VENV)/.installed-dev
	$(PY) bench/run.py $(if $(filter-out 0,$(QUICK)),--quick) $(BENCH_ARGS)

bench-quick: $(VENV)/.installed-dev
	$(PY) bench/run.py --quick $(BENCH_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

typecheck: $(VENV)/.installed-dev
	$(VENV)/bin/mypy .

css:
	npm ci --no-audit --no-fund && npm run build:css

clean:
	rm -rf $(VENV) var
