# The README's two commands: `make serve` and `make test`. Each creates .venv and installs
# what it needs when missing, so both work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: serve test bench torture overload clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/septet serve

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(VENV)/bin/septet bench all

torture: $(STAMP)
	$(PY) -m bench.torture

overload: $(STAMP)
	$(PY) -m bench.overload

clean:
	rm -rf $(VENV) var *.egg-info
