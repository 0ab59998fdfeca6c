#!/usr/bin/env bash
# The training engine's GPU checks on one CUDA machine, from the repository root, with the machine's
# own torch and transformers (nlpstd need not be installed; pydantic must be importable for the tests):
#
#   benchmarks/gpu_checks.sh BUNDLE OUT [PART...]
#
# BUNDLE is a folder made by `python benchmarks/gpu_bundle.py pack BUNDLE` (the data and the MiniLM
# base); OUT receives the logs and results, one folder per part. PARTs run in the order given
# (default: all; each throughput case takes minutes, most of them compiling):
#   tests                          tests/test_gpu.py
#   mlm-base, ner-minilm, ner-base train_throughput.py, one case: the four runners side by side
#   finetune                       train_throughput.py --full-finetune: test F1 of Trainer and nlpstd
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 BUNDLE OUT [tests|mlm-base|ner-minilm|ner-base|finetune ...]" >&2
    exit 2
fi
bundle=$(realpath "$1")
out=$(mkdir -p "$2" && realpath "$2")
shift 2
if [ $# -gt 0 ]; then parts=("$@"); else parts=(tests mlm-base ner-minilm ner-base finetune); fi
python=${PYTHON:-python3}

export PYTHONPATH="$PWD/src:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export NLPSTD_DATA="$bundle/data"

[ -f "$bundle/minilm-l6/model.safetensors" ] || "$python" benchmarks/gpu_bundle.py unpack "$bundle"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"; } | tee "$out/device.txt"
"$python" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$out/device.txt"

status=0
for part in "${parts[@]}"; do
    echo "== $part ($(date -u +%H:%M:%S))"
    case $part in
        tests)
            "$python" -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/gpu_tests.log" || status=1 ;;
        mlm-base|ner-minilm|ner-base)
            mkdir -p "$out/$part"
            "$python" benchmarks/train_throughput.py --cases "$part" --base "$bundle/minilm-l6" --out "$out/$part" 2>&1 \
                | grep -v "it/s\]\|step/s\]" | tee "$out/$part/log.txt" || status=1 ;;
        finetune)
            mkdir -p "$out/finetune"
            "$python" benchmarks/train_throughput.py --full-finetune --base "$bundle/minilm-l6" --out "$out/finetune" 2>&1 \
                | grep -v "it/s\]\|step/s\]" | tee "$out/finetune/log.txt" || status=1 ;;
        *)
            echo "unknown part: $part (tests, mlm-base, ner-minilm, ner-base, finetune)" >&2
            exit 2 ;;
    esac
done
exit $status
