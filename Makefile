PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --constraint constraints.txt

.PHONY: demo test results install install-dev clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(VENV)/bin/activate pyproject.toml constraints.txt
	$(PIP) -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) -q -e '.[dev]'
	touch $@

$(VENV)/.installed-results: $(VENV)/.installed
	$(PIP) -q -e '.[vision,video,datasets]' matplotlib
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

DEMO_DIR := runs/demo

# the main job: byte MLM on embedded text (about 3 minutes on 2 cores), then fill-mask from the exported weights
demo: $(VENV)/.installed
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/perceiverio fit --export.dirpath $(DEMO_DIR)/model --checkpoint.dirpath $(DEMO_DIR)/checkpoints
	$(VENV)/bin/perceiverio validate --ckpt_path $(DEMO_DIR)/checkpoints/last.ckpt --trainer.logger false
	$(VENV)/bin/perceiverio fill-mask $(DEMO_DIR)/model --mask-char _ \
		--text "The ret_rn stat_ment lea_es the cur_ent func_ion c_ll w_th the exp_ession l_st."
	$(VENV)/bin/perceiverio fill-mask $(DEMO_DIR)/model --mask-char _ \
		--text "The f_r sta_ement is us_d to it_rate o_er the el_ments of a s_quence."

LINTED := src tests benchmarks examples

test: $(VENV)/.installed-dev
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)
	$(PY) -m pytest -q

# re-run the training recipes and rebuild docs/results.md (about 3 hours on 2 cores: the budgets are wall time, so run
# it on idle cores); RECIPES=fashion-mnist,sst2 and SEEDS=0,1 choose, and the page keeps the other recipes' JSON files
results: $(VENV)/.installed-results
	$(PY) benchmarks/results.py $(if $(RECIPES),--recipes $(RECIPES)) $(if $(SEEDS),--seeds $(SEEDS))

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
