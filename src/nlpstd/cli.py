"""The `nlpstd` command: validate a standard, run it, predict with what it exported."""

from __future__ import annotations

import argparse
import json
import sys

from nlpstd.errors import GateFailed, NlpstdError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nlpstd", description="Train BERT-family models the same way every time, from one YAML standard.")
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check a standard and every file it names, without training")
    validate.add_argument("standard")

    run = commands.add_parser("run", help="run a standard's stages: data-prep, pretrain, finetune, evaluate, export")
    run.add_argument("standard")
    run.add_argument("--out", help="output folder (default: runs/<standard name>)")
    run.add_argument("--stages", help="comma-separated subset, e.g. evaluate,export")
    run.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")

    predict = commands.add_parser("predict", help="entities or labels for texts, from a model folder")
    predict.add_argument("model_dir")
    predict.add_argument("texts", nargs="*", help="texts to label (or --file)")
    predict.add_argument("--file", help="a text file, one text per line")
    predict.add_argument("--json", action="store_true", help="print one JSON object per text")

    args = parser.parse_args(argv)
    try:
        if args.command == "validate":
            return _validate(args.standard)
        if args.command == "run":
            return _run(args)
        return _predict(args)
    except GateFailed as exc:
        print(f"nlpstd: {exc}", file=sys.stderr)
        return 3
    except NlpstdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130


def _validate(path: str) -> int:
    from nlpstd.spec import check_files, load_standard

    from nlpstd.data import corpus

    std = load_standard(path)
    files = check_files(std, path)
    if std.pretrain.enabled:
        files += corpus.check(std.pretrain.corpus)
    print(f"ok: {std.name} ({std.task}), {len(files)} data files readable, spec hash {std.spec_hash()[:12]}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from nlpstd.runner import parse_stages, run_standard

    summary = run_standard(args.standard, args.out, parse_stages(args.stages), tracking=not args.no_tracking)
    print(f"\n{summary['standard']}: done in {sum(s['seconds'] for s in summary['stages'].values()):.0f} s")
    for stage, info in summary["stages"].items():
        print(f"  {stage:<10} {info['seconds']:>7.1f} s")
    scores = summary["stages"].get("evaluate", {}).get("metrics", {})
    if scores:
        print("  " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if isinstance(v, float)))
    print(f"  outputs in {summary['out']}" + (f"; MLflow run {summary['mlflow_run_id']}" if summary.get("mlflow_run_id") else ""))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from nlpstd.predict import Predictor

    texts = list(args.texts)
    if args.file:
        with open(args.file, encoding="utf-8") as handle:
            texts += [line.rstrip("\n") for line in handle if line.strip()]
    if not texts:
        raise NlpstdError("predict: give texts as arguments or --file")
    for result in Predictor(args.model_dir)(texts):
        if args.json:
            print(json.dumps(result))
        elif "entities" in result:
            print(result["text"])
            for e in result["entities"]:
                print(f"  {e['label']:<6} {e['text']!r} [{e['start']}:{e['end']}] {e['score']:.3f}")
        else:
            print(f"{result['label']}\t{result['score']:.3f}\t{result['text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
