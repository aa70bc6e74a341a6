# The two commands: `make run` (HAAO on embedded defaults) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: run test lint typecheck check-deploy css clean

$(VENV)/bin/python:
	@$(PYTHON) -m venv $(VENV) || { echo "Python's venv module is missing: apt-get install python3-venv"; exit 1; }
	@$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	@touch $@

# The local model server (llama-cpp-python) compiles llama.cpp once, about 8 minutes on 2
# cores; pip keeps the built wheel, so later installs take seconds.
$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[dev,localmodel]'
	@touch $@ $(VENV)/.installed-run

.env:
	@$(PY) -m haao.envfile .env

run: $(VENV)/.installed-run .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py createcachetable
	$(PY) manage.py seed_demo
	PORT=$(PORT) $(PY) manage.py serve

test: $(VENV)/.installed-dev
	./scripts/test.sh $(ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.installed-dev
	$(VENV)/bin/mypy .

css:
	npm ci --no-audit --no-fund && npm run build:css

clean:
	rm -rf $(VENV) var
