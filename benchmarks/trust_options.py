"""Generalization and trust options side by side: each variant of a standard fine-tuned with the same
seed, the same data and the same steps, then scored with the robustness report on.

    NLPSTD_DATA=../shared/data python benchmarks/trust_options.py \\
        --standard standards/conll2003-ner-quick.yaml --variants off,augment,fgm --out /tmp/trust-conll

What it runs: data-prep (and pretrain, when the standard pretrains) once, with the standard as given;
then, per variant, `nlpstd stage finetune` and `nlpstd stage evaluate` on those same folders, the
variant's standard written beside the others with only its `finetune` option added, so every
variant starts from the same prepared data and the same pretrained encoder. Every variant's
evaluate runs `evaluate.robustness` (typos, punctuation and, for NER, unseen entity names, at
`--rate`) on every labelled split, so the test set with typo noise is the noisy split, and explains
3 errors and 3 successes (`evaluate.explain`). Stages run
one after the other, never two at once, and each in its own process.

It prints, and writes to `<out>/results.json` and `<out>/results.md`, per variant: validation and
test scores of the gate metric, each perturbation's drop, and the finetune stage's training
seconds (the loop's own clock) and wall seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml
from stage_runs import finetune_and_evaluate, prepare

# what each variant adds to the standard's finetune section
VARIANTS = {
    "off": {},
    "augment": {"augment": {"probability": 0.3}},
    "fgm": {"adversarial": {"method": "fgm"}},  # the default epsilon, 0.1
    "pgd": {"adversarial": {"method": "pgd", "steps": 3}},
    "ensemble": {"seeds": [42, 43, 44]},  # three members; the first has the standard's seed
}


def _option(name: str) -> dict:
    """A variant's finetune option: a name of VARIANTS, or `fgm@1.0` / `pgd@1.0` for another epsilon."""
    method, _, epsilon = name.partition("@")
    option = json.loads(json.dumps(VARIANTS[method]))  # a deep copy
    if epsilon:
        option["adversarial"]["epsilon"] = float(epsilon)
    return option


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--standard", required=True, help="the standard to vary")
    parser.add_argument("--variants", default="off,augment,fgm", help=f"comma-separated, of: {', '.join(VARIANTS)}; fgm@1.0 sets epsilon")
    parser.add_argument("--rate", type=float, default=0.1, help="the typo rate of the robustness report")
    parser.add_argument("--out", type=Path, required=True, help="work folder (data, pretrain, one folder per variant)")
    args = parser.parse_args()
    names = args.variants.split(",")
    unknown = [name for name in names if name.partition("@")[0] not in VARIANTS
               or ("@" in name and "adversarial" not in VARIANTS[name.partition("@")[0]])]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")

    args.out.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load(Path(args.standard).read_text())
    prepared = prepare(Path(args.standard), base, args.out)
    results = {name: _variant(name, base, args.standard, prepared, args.rate, args.out) for name in names}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    table = _table(results, base)
    (args.out / "results.md").write_text(table)
    print(table)


def _variant(name: str, base: dict, standard: str, prepared: dict[str, Path], rate: float, out: Path) -> dict:
    """Fine-tune and evaluate one variant; its scores, drops and seconds."""
    folder = out / name
    folder.mkdir(exist_ok=True)
    spec = json.loads(json.dumps(base))  # a deep copy
    spec["finetune"].update(_option(name))
    splits = ["validation", "test"] if "test" in spec["data"] else ["validation"]
    perturbations = ["typos", "punctuation"] + (["entity_swap"] if spec["task"] == "token-classification" else [])
    spec.setdefault("evaluate", {})["robustness"] = {"perturbations": perturbations, "rate": rate, "splits": splits}
    if "seeds" in spec["finetune"]:  # an ensemble is served from its ONNX graph, and has no one embedding to explain
        spec.setdefault("export", {}).setdefault("serving", {})["format"] = "onnx"
    else:
        spec["evaluate"]["explain"] = {"examples": 3}  # the report's attribution pictures, for a look at what changed
    finetune_wall = finetune_and_evaluate(spec, standard, "trust", prepared, folder)
    trained = json.loads((folder / "finetune" / "metrics.json").read_text())
    evaluated = json.loads((folder / "evaluate" / "metrics.json").read_text())
    metric = spec["evaluate"].get("gate", {}).get("metric", "f1")
    scores = evaluated["scores"]
    return {
        "metric": metric,
        "scores": {split: scores[split][metric] for split in splits},
        "drops": {split: {p: row["drop"] for p, row in scores[split].get("robustness", {}).items()} for split in splits},
        "train_seconds": trained["train_seconds"],
        "finetune_wall_seconds": round(finetune_wall, 1),
        "steps": trained["steps"],
        "augmented_examples": trained.get("augmented_examples"),
        "members": {key: value for key, value in trained.items() if key.startswith("member")},
    }


def _table(results: dict[str, dict], base: dict) -> str:
    """One row per variant: scores, drops under each perturbation, and time."""
    first = next(iter(results.values()))
    metric, splits = first["metric"], list(first["scores"])
    perturbations = list(first["drops"][splits[-1]])
    head = ["variant", *(f"{split} {metric}" for split in splits),
            *(f"{splits[-1]} drop {p}" for p in perturbations), "train s", "steps"]
    rows = [f"| {' | '.join(head)} |", f"| {' | '.join('---' for _ in head)} |"]
    for name, result in results.items():
        cells = [name, *(f"{result['scores'][split]:.4f}" for split in splits),
                 *(f"{result['drops'][splits[-1]][p]:.4f}" for p in perturbations),
                 f"{result['train_seconds']:.0f}", str(result["steps"])]
        rows.append(f"| {' | '.join(cells)} |")
    return f"{base['name']}\n\n" + "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
