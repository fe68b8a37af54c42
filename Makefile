# canfar-catalogue: the two commands of the README, and their helpers.
#
#   make demo    run the whole pipeline on this machine (embedded default)
#   make test    run the test suite
#   make stop    stop what `make demo` started
#   make test-nova   the OpenStack boundary against a real Nova API (own environment)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-nova stop venv clean lock

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt setup.py
	@command -v cc >/dev/null || { echo "make: no C compiler; the science package's C loops need one: apt install gcc python3-dev" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --constraint constraints.txt ".[test]"
	touch $(STAMP)

# pytest exits 5 when it collects no test: that is a failure of the suite here.
test: venv
	rm -rf build  # setuptools reuses compiled objects whatever the flags: build the C loops afresh
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall . >/dev/null
	$(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

# A real Nova API in-process (Nova's functional-test fixtures: fake virt driver,
# SQLite, Placement), in its own environment with exact pins, wheels only.
# Nova's fixtures look for its etc/ folder beside site-packages: linked there.
NOVA_VENV := .venv-nova
test-nova:
	test -x $(NOVA_VENV)/bin/python || $(PYTHON) -m venv $(NOVA_VENV)
	$(NOVA_VENV)/bin/python -m pip install --quiet --only-binary=:all: -r tests/nova/requirements.txt
	$(NOVA_VENV)/bin/python -m pip install --quiet --no-deps --force-reinstall . >/dev/null
	ln -sfn "$(abspath $(NOVA_VENV))/etc" "$$($(NOVA_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/etc"
	timeout 480 $(NOVA_VENV)/bin/python -m pytest tests/nova --confcutdir=tests/nova -p no:cacheprovider -p no:warnings -q

demo: venv
	rm -rf build  # setuptools reuses compiled objects whatever the flags: build the C loops afresh
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall . >/dev/null
	bash deployments/demo.sh

stop:
	bash deployments/demo.sh stop

clean: stop
	rm -rf $(VENV) $(NOVA_VENV) .demo build *.egg-info

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
