# make demo / make train / make test set everything up on a fresh machine (a .venv here), then run.
VENV   ?= .venv
PYTHON ?= python3
# The torch build to install. These releases are in this project's machines' local pip cache;
# elsewhere any torch>=2.2 works, e.g. make setup TORCH="torch torchvision".
TORCH  ?= torch==2.14.1 torchvision==0.29.1
# Extra Hydra overrides for make train, e.g. ARGS="data.root=/path/to/photos".
ARGS   ?=
STYLE  ?= starry_night
# The project's shared data and models (real photos, paintings, ImageNet VGG16 weights).
SHARED ?= ../shared

PY := $(VENV)/bin/python
STAMP := $(VENV)/.fastnst-installed

# make stylize: a photo painted by a model that ships with fastnst (fastnst-models lists them).
MODEL  ?= starry_night
PHOTO  ?= $(SHARED)/data/content/chicago.jpg

.PHONY: setup stylize demo train test test-slow lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

stylize: setup
	$(VENV)/bin/fastnst-stylize $(MODEL) $(PHOTO) -o outputs/stylize/

# Train a small network against the real VGG16 features of $(SHARED)/models for 300 steps at
# 128 px (minutes on a CPU), then stylize $(SHARED)/data/content into outputs/demo/$(STYLE)/.
# STYLE is any painting of $(SHARED)/data/styles (make demo STYLE=wave).
demo: setup
	$(PY) scripts/demo.py --style $(STYLE) --shared $(SHARED) $(ARGS)

train: setup
	$(PY) -m fastnst.train style=$(STYLE) $(ARGS)

# The default suite, on every core (pytest-xdist); TEST_ARGS="-n 0" runs it in one process.
TEST_ARGS ?= -n auto
test: setup
	$(PY) -m pytest $(TEST_ARGS)

# Tests marked slow (longer training runs); minutes on a CPU.
test-slow: setup
	$(PY) -m pytest -m slow

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf outputs lightning_logs .pytest_cache .ruff_cache
