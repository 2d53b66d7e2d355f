# The two commands the README names: `make demo` and `make test`.
# `make demo` opens the quickstart notebook in JupyterLab (runs go to the default SQLite file);
# `make demo ARGS=--no-browser` prints the URL instead of opening a browser.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# jlpm (yarn, building labextension/ during the install) uses the registry npm is set up with.
NPM_REGISTRY := $(shell npm config get registry 2>/dev/null)
ifneq ($(NPM_REGISTRY),)
export YARN_NPM_REGISTRY_SERVER := $(NPM_REGISTRY)
endif
# JupyterLab refuses to start as root unless told to (containers, CI machines).
AS_ROOT := $(if $(filter 0,$(shell id -u)),--ServerApp.allow_root=True)

.PHONY: demo example test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The install also builds the JupyterLab panel (labextension/): rebuild when its sources change.
LABEXT := $(wildcard labextension/package.json labextension/yarn.lock labextension/src/*.ts labextension/style/*)

# tools/prepare-machine.sh installs (as root) or names what pip cannot: Node.js, chromium, PostgreSQL.
$(STAMP): pyproject.toml $(LABEXT) | $(BIN)/python
	bash tools/prepare-machine.sh node
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# JupyterLab serves notebooks/; default_url makes the printed URL open the quickstart itself.
# jupyter-config/demo/thodare-demo.json goes to the venv's lab settings overrides.d (defaults a
# user can still change): no "Jupyter news?" prompt and no update check over the notebook.
demo: $(STAMP)
	$(BIN)/python -c 'import pathlib, shutil, jupyterlab.commands as c; \
	  d = pathlib.Path(c.get_app_dir(), "settings", "overrides.d"); d.mkdir(parents=True, exist_ok=True); \
	  shutil.copy("jupyter-config/demo/thodare-demo.json", d)'
	$(BIN)/python -m jupyterlab notebooks/01-quickstart.ipynb \
	  --LabApp.default_url=/lab/tree/01-quickstart.ipynb $(AS_ROOT) $(ARGS)

example: $(STAMP)
	$(BIN)/python examples/lead_notifier.py

test: $(STAMP)
	bash tools/prepare-machine.sh test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check thodare_jupyter tests bench examples
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/patch.py
	$(BIN)/python bench/durable.py
	$(BIN)/python bench/for_each.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/assistant_eval.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/history.py
	$(BIN)/python bench/data.py
	$(BIN)/python bench/fuzz_patch.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache
