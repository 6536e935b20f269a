# Two commands on a fresh clone: `make test` and `make demo`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.visheads-installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test demo demo-docs clean

setup: $(STAMP)

# torch is held to its CPU build by the constraints file; lmms-eval's torchvision requirement then
# resolves to a CUDA build that cannot load here, so it is removed and transformers falls back to
# its PIL image processors. decord (imported by lmms-eval's llava_hf) is a declared dependency.
$(STAMP): pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -c constraints-cpu.txt torch==2.13.0
	$(VPY) -m pip install --quiet -c constraints-cpu.txt -e '.[dev]'
	$(VPY) -m pip uninstall --quiet --yes torchvision
	touch $(STAMP)

test: $(STAMP)
	$(VPY) -m pytest -q

# The paper's pipeline end to end on the shipped organism (visheads-tiny); a second run reuses demo_out/.
demo: $(STAMP)
	$(VENV)/bin/visheads demo --out demo_out

# The two demo figures that README shows, copied into docs/demo/ (README quotes demo_out/leaderboard.md).
DEMO_SHOWN := figures/heatmap_region_attn.png figures/attention_vs_concentration.png
demo-docs: demo
	mkdir -p docs/demo
	cp $(addprefix demo_out/,$(DEMO_SHOWN)) docs/demo/

clean:
	rm -rf $(VENV) build dist .pytest_cache
