#!/usr/bin/env bash
# The training engine's GPU checks on one CUDA machine, from the repository root, with the machine's
# own torch and transformers (nlpstd need not be installed; pydantic must be importable for the tests):
#
#   benchmarks/gpu_checks.sh BUNDLE OUT [PART...]
#
# BUNDLE is a folder made by `python benchmarks/gpu_bundle.py pack BUNDLE` (the data and the MiniLM
# base); OUT receives the logs and results, one folder per part, and timeline.txt. PARTs run in the
# order given; the default order puts the figures the engine is judged by first:
#   mlm-base, ner-minilm, ner-base  train_throughput.py, one case: Trainer eager, Trainer torch_compile
#                                   and nlpstd side by side
#   finetune                        train_throughput.py --full-finetune: test F1 of Trainer and nlpstd
#   tests                           tests/test_gpu.py
#   graphs                          Trainer eager and nlpstd with CUDA graphs, ner-minilm then mlm-base
#
# BUDGET_S (default 570) is what the whole run may take: each part runs under `timeout` for what is
# left, and a part that would start with under MIN_PART_S (default 60) left is skipped, so a run
# with a time limit still keeps every figure finished before it. Each runner's figures are printed
# as it ends, so a case cut short keeps its finished runners in log.txt.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 BUNDLE OUT [mlm-base|ner-minilm|ner-base|finetune|tests|graphs ...]" >&2
    exit 2
fi
bundle=$(realpath "$1")
out=$(mkdir -p "$2" && realpath "$2")
shift 2
if [ $# -gt 0 ]; then parts=("$@"); else parts=(mlm-base ner-minilm finetune ner-base tests graphs); fi
for part in "${parts[@]}"; do
    case $part in
        mlm-base|ner-minilm|ner-base|finetune|tests|graphs) ;;
        *) echo "unknown part: $part (mlm-base, ner-minilm, ner-base, finetune, tests, graphs)" >&2; exit 2 ;;
    esac
done
python=${PYTHON:-python3}
budget=${BUDGET_S:-570}
min_part=${MIN_PART_S:-60}
started=$SECONDS

export PYTHONPATH="$PWD/src:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export NLPSTD_DATA="$bundle/data"

# the fp32 base goes to a scratch folder, never into the bundle, which stays small enough to copy again
base=${TMPDIR:-/tmp}/nlpstd-gpu-checks/minilm-l6
[ -f "$base/model.safetensors" ] || "$python" benchmarks/gpu_bundle.py unpack "$bundle" --into "$base"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"; } | tee "$out/device.txt"
"$python" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$out/device.txt"

throughput() {  # PART-FOLDER SECONDS ARG...: one train_throughput.py run, its log without progress bars
    local folder=$out/$1 seconds=$2
    shift 2
    mkdir -p "$folder"
    timeout --kill-after=10 "$seconds" "$python" benchmarks/train_throughput.py --base "$base" --out "$folder" "$@" 2>&1 \
        | grep --line-buffered -v "it/s\]\|step/s\]" | tee "$folder/log.txt"
}

status=0
for part in "${parts[@]}"; do
    left=$((budget - (SECONDS - started)))
    if [ "$left" -lt "$min_part" ]; then
        echo "$part: skipped, ${left} s of the budget left" | tee -a "$out/timeline.txt"
        status=1
        continue
    fi
    echo "== $part ($(date -u +%H:%M:%S), ${left} s left)"
    part_started=$SECONDS
    set +e
    case $part in
        mlm-base|ner-minilm|ner-base)
            throughput "$part" "$left" --cases "$part" --runners trainer,trainer-compile,nlpstd ;;
        finetune)
            throughput finetune "$left" --full-finetune ;;
        tests)
            timeout --kill-after=10 "$left" "$python" -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/gpu_tests.log" ;;
        graphs)
            throughput graphs "$left" --cases ner-minilm,mlm-base --runners trainer,nlpstd-graphs ;;
    esac
    code=$?  # with pipefail: the run's own status, 124 when its time ran out
    set -e
    [ "$code" -eq 0 ] || status=1
    echo "$part: exit $code after $((SECONDS - part_started)) s" | tee -a "$out/timeline.txt"
done
exit $status
