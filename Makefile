# canfar-catalogue: the two commands of the README, and their helpers.
#
#   make demo    run the whole pipeline on this machine (embedded default)
#   make test    run the test suite
#   make stop    stop what `make demo` started

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test stop venv clean lock

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --constraint constraints.txt ".[test]"
	touch $(STAMP)

# pytest exits 5 when it collects no test: that is a failure of the suite here.
test: venv
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall . >/dev/null
	$(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

demo: venv
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall . >/dev/null
	bash deployments/demo.sh

stop:
	bash deployments/demo.sh stop

clean: stop
	rm -rf $(VENV) .demo build *.egg-info

# Re-resolve the dependencies from pyproject.toml and record exact versions.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade "pip>=24"
	.lock-venv/bin/python -m pip install --quiet ".[test]"
	{ echo "# Exact versions the project is tested with (pip install -c constraints.txt .[test])."; \
	  echo "# Regenerate: make lock"; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^canfar-catalogue'; } > constraints.txt
	rm -rf .lock-venv
