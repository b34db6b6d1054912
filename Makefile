# make up    — install into .venv on first use (and whenever pyproject.toml changes), then `wardrobe up`
# make test  — same install, then the test suite (PYTEST_ARGS="-m 'not integration'" for unit tests only)
VENV   ?= .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PORT   ?= 8000
PYTEST_ARGS ?=

.PHONY: up test bench clean-stamp

$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -e '.[all]'
	touch $@

up: $(STAMP)
	$(VENV)/bin/wardrobe up --port $(PORT)

test: $(STAMP)
	$(PYTHON) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PYTHON) bench/pipeline.py --photos ../shared/data/clothing/images --json bench/pipeline.json

clean-stamp:
	rm -f $(STAMP)
