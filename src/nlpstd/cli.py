"""The `nlpstd` command: validate a standard, run it, predict with what it exported."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from nlpstd import jsonio, logs, pipeline_command
from nlpstd.errors import GateFailed, NlpstdError
from nlpstd.stages import contract


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported like every other error: one line, `error: --flag:
    message`, exit code 2 (not a usage block); `--help` still prints the help. `intermixed=True` lets
    positional arguments and flags come in any order (`predict MODEL --json "a text"`)."""

    def __init__(self, *args, intermixed: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.intermixed, self._mixing = intermixed, False

    def parse_known_args(self, args=None, namespace=None):
        if not self.intermixed or self._mixing:
            return super().parse_known_args(args, namespace)
        self._mixing = True  # parse_known_intermixed_args calls back into parse_known_args
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._mixing = False

    def error(self, message: str):
        raise NlpstdError(_flag_first(message))


def _flag_first(message: str) -> str:
    """argparse's message with the argument it is about at the start, as `field: message`."""
    if message.startswith("argument "):  # argument --nproc: invalid int value: 'x'
        return message.removeprefix("argument ")
    if message.startswith("ambiguous option: "):  # ambiguous option: --o could match --out, --output
        name, _, rest = message.removeprefix("ambiguous option: ").partition(" ")
        return f"{name}: ambiguous option, {rest}"
    if message.startswith("the following arguments are required: "):
        first, _, others = message.removeprefix("the following arguments are required: ").partition(", ")
        return f"{first}: required" + (f" (so are {others})" if others else "")
    if message.startswith("unrecognized arguments: "):
        first, _, others = message.removeprefix("unrecognized arguments: ").partition(" ")
        return f"{first}: unrecognized argument" + (f" (then {others})" if others else "")
    return message


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "pipeline":  # its own parser: the arguments, help and usage of python -m pipelines
        return exit_code(lambda: pipeline_command.main(argv[1:]))
    return exit_code(lambda: _dispatch(argv))


def _dispatch(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return _COMMANDS[args.command](args)


def exit_code(command: Callable[[], int]) -> int:
    """Run a command of either CLI (`nlpstd`, `python -m pipelines`) with the library's log lines on the
    console, and turn its failure into one line on stderr and an exit code: 3 for a failed gate, 2 for
    bad input or a refused run, 130 when interrupted."""
    logs.configure()
    try:
        return command()
    except GateFailed as exc:
        print(f"nlpstd: {exc}", file=sys.stderr)
        return 3
    except NlpstdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130


def _parser() -> _Parser:
    parser = _Parser(prog="nlpstd", description="Train BERT-family models the same way every time, from one YAML standard.")
    commands = parser.add_subparsers(dest="command", required=True)
    _training_commands(commands)
    _model_commands(commands)
    return parser


def _training_commands(commands: argparse._SubParsersAction) -> None:
    """validate, run, reproduce, stage, sweep, trial: what makes a model."""
    validate = commands.add_parser("validate", help="check a standard and every file it names, without training")
    validate.add_argument("standard")

    run = commands.add_parser("run", help="run a standard's stages: data-prep, pretrain, finetune, evaluate, export")
    run.add_argument("standard")
    run.add_argument("--out", help="output folder (default: runs/<standard name>)")
    run.add_argument("--stages", help="comma-separated subset, e.g. evaluate,export")
    run.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    run.add_argument("--nproc", type=int, default=1, help="train data-parallel in N processes (torchrun: one per GPU, or gloo on CPU)")
    run.add_argument("--allow-other-inputs", action="store_true",
                     help="with --stages: use earlier stages' outputs in OUT even if another recipe made them")

    reproduce = commands.add_parser("reproduce", help="rerun the standard an MLflow run logged, on the same data and code, and compare metrics")
    reproduce.add_argument("run_id", metavar="RUN_ID", help="the MLflow parent run (as printed by nlpstd run)")
    reproduce.add_argument("--out", help="output folder (default: runs/<standard name>-reproduce-<run id>)")
    reproduce.add_argument("--force", action="store_true", help="rerun even when the data or the code differ from the run's")

    stage = commands.add_parser("stage", help="run one stage over given folders (what a pipeline task runs)")
    stage.add_argument("name", choices=contract.NAMES)
    stage.add_argument("standard")
    stage.add_argument("--data", help="data-prep's output folder (input of every later stage)")
    stage.add_argument("--pretrain", help="pretrain's output folder (finetune, when the standard pretrains)")
    stage.add_argument("--model", help="finetune's output folder (evaluate, export)")
    stage.add_argument("--evaluation", help="evaluate's output folder (export)")
    stage.add_argument("--work", help="pretrain, finetune: keep checkpoints here, to resume from")
    stage.add_argument("--out", required=True, help="this stage's output folder")
    stage.add_argument("--mlflow-run-id", default="", help="log a nested run under this parent run")
    stage.add_argument("--allow-other-inputs", action="store_true", help="use input folders even if another recipe made them")

    sweep = commands.add_parser("sweep", help="run a standard's sweep: trials over sizes and settings, a report, a recommended standard")
    sweep.add_argument("standard")
    sweep.add_argument("--out", help="sweep folder (default: runs/<standard name>-sweep); rerun to continue")
    sweep.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")

    trial = commands.add_parser("trial", help="run one trial of a sweep (what a cluster's trial task runs)")
    trial.add_argument("standard")
    trial.add_argument("--point", required=True, help='the trial\'s axis values as JSON, e.g. \'{"variant": "tiny", "finetune.lr": 3e-4}\'')
    trial.add_argument("--out", required=True, help="the trial's output folder")
    trial.add_argument("--work", help="prepared data and pretrained encoders, shared between trials (default: inside --out)")
    trial.add_argument("--mlflow-run-id", default="", help="log a nested run under this parent run")


def _model_commands(commands: argparse._SubParsersAction) -> None:
    """predict, champion, runs, pipeline: what uses, tracks and ships a model."""
    predict = commands.add_parser("predict", help="entities or labels for texts, from an exported folder or ONNX file",
                                  intermixed=True)
    predict.add_argument("model", help="an exported model folder, or a .onnx file beside its tokenizer and config")
    predict.add_argument("texts", nargs="*", help="texts to label (or --file)")
    predict.add_argument("--file", help='texts to label: JSON Lines of {"text": ...} (.jsonl), else one text per line')
    predict.add_argument("--output", help="write JSON Lines here (replaced only when complete) instead of printing")
    predict.add_argument("--json", action="store_true", help="print one JSON object per text")
    predict.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    predict.add_argument("--threads", type=int, help="CPU threads of the ONNX Runtime session")
    predict.add_argument("--split", choices=("tokenizer", "whitespace"), default="tokenizer",
                         help="NER: where words end: as the tokenizer splits (default), or at spaces only, for text "
                              "already split into words (CoNLL-style)")
    predict.add_argument("--explain", action="store_true",
                         help="add each word's share in the prediction (integrated gradients; for NER, per entity, at its "
                              "first word): `attributions` in JSON, a line of signed scores in text; torch models only")
    predict.add_argument("--explain-steps", type=int, default=32, help="integrated-gradients steps of --explain (default 32)")

    champion = commands.add_parser("champion", help="a registered model's champion: the history of its decisions, rollback")
    champion_commands = champion.add_subparsers(dest="action", required=True)
    history = champion_commands.add_parser("history", help="every promote, keep and rollback of the champion alias, oldest first")
    history.add_argument("name", help="the registered model (the standard's export.register_as, else its name)")
    history.add_argument("--json", action="store_true", help="print the entries as one JSON list")
    rollback = champion_commands.add_parser("rollback", help="move the champion alias back to the previous champion, and record it")
    rollback.add_argument("name", help="the registered model (the standard's export.register_as, else its name)")
    rollback.add_argument("--reason", help="why, recorded with the rollback")

    runs = commands.add_parser("runs", help="the MLflow runs of this tracking store: mark the runs of killed processes")
    runs_commands = runs.add_subparsers(dest="action", required=True)
    gc = runs_commands.add_parser("gc", help="mark KILLED every RUNNING run whose process on this host is gone (kill -9, a crash)")
    gc.add_argument("--experiment", action="append", metavar="NAME",
                    help="only this experiment (a standard's name); repeat for several (default: all)")

    commands.add_parser("pipeline", add_help=False,
                        help="the Kubeflow pipeline, from a checkout: run, compile, sweep, submit, schedule, images (python -m pipelines)")


def _validate(args: argparse.Namespace) -> int:
    """What `run` checks before training, in its order: the standard, its files, then every row and
    corpus file as data-prep reads them (`check_data`), with no tokenizer, weights or torch."""
    from nlpstd.data.checks import limit_warnings
    from nlpstd.data.prepare import check_data
    from nlpstd.preflight import preflight

    std, _ = preflight(args.standard, check_corpus=False)  # check_data reads the corpus next, keeping nothing
    checked = check_data(std)
    print(f"ok: {std.name} ({std.task}), {checked.summary()}, spec hash {std.spec_hash()[:12]}")
    about_limits = set(limit_warnings(checked.prepared.limits))  # always warnings, whatever on_violation says
    for message in checked.warnings:
        print(f"warning: {message}" + ("" if message in about_limits else " (data.checks.on_violation: warn)"))
    return 0


def _run(args: argparse.Namespace) -> int:
    from nlpstd.runner import parse_stages, run_standard

    if args.nproc < 1:
        raise NlpstdError("--nproc: at least 1 process")
    summary = run_standard(args.standard, args.out, parse_stages(args.stages), tracking=not args.no_tracking, nproc=args.nproc,
                           allow_other_inputs=args.allow_other_inputs)
    print(f"\n{summary['standard']}: done in {sum(s['seconds'] for s in summary['stages'].values()):.0f} s")
    for stage, info in summary["stages"].items():
        print(f"  {stage:<10} {info['seconds']:>7.1f} s")
    scores = summary["stages"].get("evaluate", {}).get("metrics", {})
    if scores:
        print("  " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if isinstance(v, float)))
    print(f"  outputs in {summary['out']}" + (f"; MLflow run {summary['mlflow_run_id']}" if summary.get("mlflow_run_id") else ""))
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from nlpstd.reproduce import format_table, headline, reproduce

    result = reproduce(args.run_id, args.out, force=args.force)
    print(f"\nrun {result.run_id} reproduced as run {result.new_run_id} (outputs in {result.out}; "
          "export not rerun: a reproduction registers and uploads nothing)\n")
    print(format_table(result.metrics))
    print(f"\n{headline(result.metrics)}")
    for difference in result.differences:
        print(f"  compared although {difference} (--force)")
    return 0


def _stage(args: argparse.Namespace) -> int:
    from nlpstd import runtime
    from nlpstd.stages.contract import Layout, run_stage
    from nlpstd.stages.task import stage_task

    given = {name: getattr(args, contract.FLAGS[name]) for name in contract.stage(args.name).inputs}
    for name in given:
        if name != "pretrain" and not given.get(name):  # pretrain's folder is needed only when the standard pretrains
            raise NlpstdError(f"stage {args.name}: --{contract.FLAGS[name]} is required")
    folders = {name: Path(folder) for name, folder in given.items() if folder}
    layout = Layout({**folders, args.name: Path(args.out)}, work=Path(args.work) if args.work else None)
    text = Path(args.standard).read_text(encoding="utf-8")
    try:
        with stage_task(text, args.name, args.mlflow_run_id, source=args.standard) as (std, tracker):
            run_stage(args.name, std, layout, tracker, allow_other_inputs=args.allow_other_inputs, standard_file=args.standard)
    finally:
        runtime.teardown()  # under torchrun: leave the process group
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from nlpstd.sweep.study import run_sweep

    summary = run_sweep(args.standard, args.out, tracking=not args.no_tracking)
    chosen = summary["recommended"]
    print(f"\nsweep {summary['standard']}: {summary['trials']} trials, {summary['pruned']} pruned, "
          f"{summary['trial_seconds']:.0f} trial-seconds")
    if chosen is None:
        print(f"  no recommendation: {summary['reason']}")
    else:
        print(f"  recommended: {chosen['label']} (validation {summary['metric']} {chosen['value']:.4f}, "
              f"{chosen['parameters']:,} parameters), {summary['reason']}")
        print(f"  standard: {summary['recommended_standard']}")
    print(f"  report: {summary['report']}")
    return 0


def _trial(args: argparse.Namespace) -> int:
    from nlpstd.spec import load_standard
    from nlpstd.sweep.trial import objective_metric, run_trial
    from nlpstd.tracking import RunTracking

    std = load_standard(args.standard)
    if std.sweep is None:
        raise NlpstdError(f"{args.standard}: no sweep section")
    try:
        point = json.loads(args.point)
    except json.JSONDecodeError as exc:
        raise NlpstdError(f"--point: not JSON ({exc})") from None
    unknown = set(point) - set(axes_of(std)) if isinstance(point, dict) else set()
    if not isinstance(point, dict) or unknown:
        raise NlpstdError(f"--point: axes of this sweep are {', '.join(axes_of(std))}; got {', '.join(sorted(unknown)) or args.point}")
    out, metric = Path(args.out), objective_metric(std)

    def progress(evaluation: int, scores: dict[str, float]) -> None:  # what Katib's early stopping compares
        print(f"validation-{metric}={scores[metric]:.6f}", flush=True)

    with RunTracking.attach(std, args.mlflow_run_id).stage("trial", {"nlpstd.trial_point": args.point}) as tracker:
        result = run_trial(std, point, out, Path(args.work) if args.work else out / "shared", tracker, on_evaluation=progress)
    for name in ("value", "train_metric"):  # name=value lines: what Katib's stdout collector reads
        print(f"{'validation' if name == 'value' else 'train'}-{result['metric']}={result[name]:.6f}")
    print(f"parameters={result['parameters']}")
    print(f"train-seconds={result['train_seconds']:.2f}")
    return 0


def axes_of(std) -> list[str]:
    from nlpstd.sweep.space import axes

    return list(axes(std.sweep))


def _champion(args: argparse.Namespace) -> int:
    from nlpstd.registry import MlflowRegistry, history_table
    from nlpstd.tracking import check_reachable, tracking_uri

    check_reachable(tracking_uri())
    registry = MlflowRegistry()
    if args.action == "history":
        entries = registry.history(args.name)
        if args.json:
            print(jsonio.dumps(entries, indent=2))
        else:
            print(history_table(entries) if entries else f"{args.name}: no champion decisions recorded yet")
        return 0
    entry = registry.rollback(args.name, args.reason)
    print(f"{args.name}: the champion is v{entry['candidate_version']} again ({entry['reason']})")
    return 0


def _runs(args: argparse.Namespace) -> int:
    from nlpstd.tracking import check_reachable, sweep_stale_runs, tracking_uri

    check_reachable(tracking_uri())
    swept = sweep_stale_runs(args.experiment)
    for line in swept.killed_lines():
        print(line)
    left = swept.left_line()
    if left:
        print(left)
    print(f"mlflow: {len(swept.killed)} stale run(s) marked KILLED in {tracking_uri()}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from nlpstd.predict import (
        Predictor,
        check_output,
        check_texts,
        discard_stdout,
        explain_needs_torch,
        locate,
        predict_records,
        read_texts,
        write_jsonl,
    )

    # -- inputs: flags, texts and --output are checked before the model loads, so a typo costs nothing
    for flag, value in (("--batch-size", args.batch_size), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise NlpstdError(f"{flag}: must be at least 1, got {value}")
    if not 2 <= args.explain_steps <= 512:  # the range evaluate.explain.steps allows
        raise NlpstdError(f"--explain-steps: must be from 2 to 512, got {args.explain_steps}")
    if args.explain and locate(Path(args.model))[1] is not None:
        raise explain_needs_torch(args.model)
    if args.output:
        check_output(Path(args.output))
    records = [{"text": text} for text in check_texts(args.texts)]
    if args.file:
        records += read_texts(Path(args.file))
    if not records:
        raise NlpstdError(f"--file: {args.file} holds no texts" if args.file else "predict: give texts as arguments or --file")

    # -- model and predictions, streamed in input order
    predictor = Predictor(args.model, batch_size=args.batch_size, threads=args.threads)
    results = predict_records(predictor, records, progress=bool(args.file), split=args.split,
                              explain_steps=args.explain_steps if args.explain else None)
    if args.output:
        count = write_jsonl(results, Path(args.output))
        print(f"predict: {count} predictions ({predictor.backend}) in {args.output}", file=sys.stderr)
        return 0
    try:
        for result in results:
            if args.json:
                print(jsonio.dumps(result))
            elif "entities" in result:
                print(result["text"])
                for e in result["entities"]:
                    print(f"  {e['label']:<6} {e['text']!r} [{e['start']}:{e['end']}] {e['score']:.3f}")
                    if "attributions" in e:
                        print(f"         {_attribution_line(e['attributions'])}")
            else:
                print(f"{result['label']}\t{result['score']:.3f}\t{result['text']}")
                if "attributions" in result:
                    print(f"  {_attribution_line(result['attributions'])}")
        sys.stdout.flush()
    except BrokenPipeError:  # `nlpstd predict ... | head`: the reader has what it wanted
        discard_stdout()
    return 0


def _attribution_line(attributions: dict) -> str:
    """`why B-PER: Peter(+1.00)* Smith(+0.31) flew(-0.05)`: each word's signed share, the explained word starred."""
    words = [f"{word}({score:+.2f}){'*' if i == attributions['word'] else ''}"
             for i, (word, score) in enumerate(zip(attributions["words"], attributions["scores"]))]
    return f"why {attributions['target']}: {' '.join(words)}"


_COMMANDS = {"validate": _validate, "run": _run, "reproduce": _reproduce, "stage": _stage, "sweep": _sweep, "trial": _trial,
             "predict": _predict, "champion": _champion, "runs": _runs}

if __name__ == "__main__":
    sys.exit(main())
