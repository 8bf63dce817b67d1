# archer_lite: `make course` runs the course, `make test` runs the tests. Both set themselves up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
OUT    := notebooks/_out
SMOKE  ?= False

.PHONY: install test course lab data clean-outputs help

help:
	@echo "make course  - set up .venv (first time) and run every notebook (outputs in $(OUT)/)"
	@echo "make test    - set up .venv (first time) and run the test suite"
	@echo "make lab     - start JupyterLab on notebooks/ at 127.0.0.1"
	@echo "make data    - rebuild demonstrations and tokenizers in data/"

install: $(STAMP)

# torch first, pinned to the CPU wheel, so nothing later pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[course,test]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

course: $(STAMP)
	@mkdir -p $(OUT)
	@for nb in $(NOTEBOOKS); do \
		echo "== $$nb"; \
		$(PY) -m papermill --no-progress-bar --log-level WARNING -p SMOKE $(SMOKE) $$nb $(OUT)/$$(basename $$nb) || exit 1; \
	done
	@echo "Course done: executed notebooks are in $(OUT)/ (open them with 'make lab')."

lab: $(STAMP)
	@echo "JupyterLab on http://127.0.0.1:8888/lab (Ctrl-C to stop)"
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --port 8888 --no-browser --notebook-dir notebooks

data: $(STAMP)
	$(PY) -m archer_lite.data

clean-outputs:
	rm -rf $(OUT)
