# nlpstd: one command sets up and runs the main job, one sets up and runs the tests.
PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
STANDARD ?= standards/conll2003-ner-quick.yaml
OUT      ?=

.PHONY: install test test-fast pipeline-local validate bench-hf bench-mlm clean

install: $(STAMP)

# torch is pinned and installed first so the CPU build is the one that satisfies every later pin.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q -m "not slow"

pipeline-local: $(STAMP)
	PYTHONUNBUFFERED=1 $(BIN)/nlpstd run $(STANDARD) $(if $(OUT),--out $(OUT))

validate: $(STAMP)
	$(BIN)/nlpstd validate $(STANDARD)

bench-hf: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/hf_baseline.py --standard $(STANDARD)

# MLM training throughput, Trainer and nlpstd side by side (BERT-base shape on a GPU; BENCH_ARGS="--size mini --steps 30" on a CPU)
bench-mlm: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/mlm_throughput.py $(BENCH_ARGS)

clean:
	rm -rf runs build .pytest_cache
