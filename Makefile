# nlpstd: one command sets up and runs the main job, one sets up and runs the tests.
PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
STANDARD ?= standards/conll2003-ner-quick.yaml
OUT      ?=

.PHONY: install lint test test-fast pipeline-local pipeline-docker docker-stack docker-stack-down sweep sweep-compile pipeline-compile pipeline-submit schedule images base-image docker-engine mlflow-ui validate bench-hf bench-train bench-mlm bench-inference clean

install: $(STAMP)

# torch is pinned and installed first so the CPU build is the one that satisfies every later pin.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

# The linter (ruff.toml) first, then the tests.
test: lint
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q

RUFF := ruff==0.17.6
lint: $(STAMP)
	$(BIN)/pip install --quiet $(RUFF)
	$(BIN)/python -m ruff check .

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q -m "not slow"

# The Kubeflow pipeline on this machine (kfp.local: each stage a subprocess, no cluster, no Docker).
pipeline-local: $(STAMP)
	PYTHONUNBUFFERED=1 $(BIN)/nlpstd pipeline run $(STANDARD) $(if $(OUT),--out $(OUT))

# The same pipeline with every task in this checkout's CPU image (kfp.local's DockerRunner, host network),
# against the S3 endpoint and MLflow server of `make docker-stack`; the image is built when missing or dirty.
pipeline-docker: docker-stack
	eval "$$($(BIN)/python -m pipelines.stack up)" && HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 \
	  $(BIN)/nlpstd pipeline run --docker $(STANDARD) $(if $(OUT),--out $(OUT))

# The servers task containers reach on 127.0.0.1: moto (S3, :9005) and MLflow (:5005, store in runs/docker-stack).
# Print their settings with `python -m pipelines.stack up`; stop them with `make docker-stack-down`.
docker-stack: $(STAMP)
	$(BIN)/python -m pipelines.stack check
	$(BIN)/python -m pipelines.stack up >/dev/null

docker-stack-down: $(STAMP)
	$(BIN)/python -m pipelines.stack down

# A standard's sweep on this machine: trials, report and recommended standard in runs/<name>-sweep/.
SWEEP ?= standards/sweep-conll-sizes-quick.yaml
sweep: $(STAMP)
	HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 $(BIN)/nlpstd sweep $(SWEEP) $(if $(OUT),--out $(OUT))

# The sweep as a Kubeflow pipeline (parallel trials) and a Katib Experiment, in build/.
sweep-compile: $(STAMP)
	$(BIN)/nlpstd pipeline sweep $(SWEEP)

# The pipeline YAML for STANDARD, in build/.
pipeline-compile: $(STAMP)
	$(BIN)/nlpstd pipeline compile $(STANDARD)

# One run on the cluster at $$KFP_HOST ($$KFP_TOKEN or $$KFP_TOKEN_FILE, $$KFP_NAMESPACE).
pipeline-submit: $(STAMP)
	$(BIN)/nlpstd pipeline submit $(STANDARD)

# Recurring retraining from the standard's schedule section.
schedule: $(STAMP)
	$(BIN)/nlpstd pipeline schedule $(STANDARD)

# Build the CPU and GPU images with the Docker SDK (tag <version>-<commit>), each tagged only once
# `nlpstd --help`, `pip check` and a non-root user check pass in it; pushed when $$NLPSTD_REGISTRY is set.
# FLAVOURS=cpu builds one. Where Docker Hub cannot be reached: LOCAL=1 (the base image of
# `make base-image`, this machine's pip CA bundle and wheelhouse, host network), or set
# BASE_IMAGE, WHEELHOUSE, CA_BUNDLE, TORCH_INDEX, BUILD_NETWORK (see pipelines/images.py).
FLAVOURS ?= cpu gpu
images: $(STAMP)
	$(if $(LOCAL),eval "$$($(BIN)/python -m pipelines.stack env)" && )$(foreach v,BASE_IMAGE WHEELHOUSE CA_BUNDLE BUILD_NETWORK,$(if $($(v)),NLPSTD_$(v)='$($(v))')) \
	  $(if $(filter command line environment,$(origin TORCH_INDEX)),NLPSTD_TORCH_INDEX='$(TORCH_INDEX)') \
	  $(BIN)/nlpstd pipeline images $(if $(filter 1,$(words $(FLAVOURS))),--only $(FLAVOURS)) $(if $(NLPSTD_REGISTRY),--push)

# A Docker engine (as root: dockerd on /var/run/docker.sock, log /var/log/dockerd.log) when none answers.
docker-engine: $(STAMP)
	$(BIN)/python -m pipelines.stack engine

# nlpstd-base:bookworm from Debian's packages (debootstrap, as root), unless the engine has it.
base-image: docker-engine
	$(BIN)/python -m pipelines.stack base-image

# The MLflow UI over the local store, on 127.0.0.1.
mlflow-ui: $(STAMP)
	$(BIN)/mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///mlflow.db

validate: $(STAMP)
	$(BIN)/nlpstd validate $(STANDARD)

bench-hf: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/hf_baseline.py --standard $(STANDARD)

# Training throughput, Trainer (eager, torch_compile) and nlpstd side by side: the GPU cases on a GPU,
# the `cpu` case on a CPU (BENCH_ARGS="--cases cpu --steps 30 --warmup 5"; see benchmarks/train_throughput.py)
bench-train: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/train_throughput.py $(BENCH_ARGS)

# MLM training throughput alone (BERT-base shape on a GPU; BENCH_ARGS="--size mini --steps 30 --warmup 5" on a CPU)
bench-mlm: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/train_throughput.py --cases mlm-base $(BENCH_ARGS)

# Inference speed of an exported model: torch eager fp32, ONNX Runtime fp32 and int8 (MODEL=runs/<standard>/export/model)
MODEL ?= runs/conll2003-ner-quick/export/model
bench-inference: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/inference.py --model $(MODEL) --standard $(STANDARD)

clean:
	rm -rf runs build .pytest_cache
