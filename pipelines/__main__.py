"""`nlpstd pipeline` (also `python -m pipelines`): run a standard's Kubeflow pipeline here, compile it, submit or schedule it, build its images."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from nlpstd.cli import exit_code
from nlpstd.errors import NlpstdError

HELP = """\
The same pipeline (data-prep -> pretrain -> finetune -> evaluate -> export), three ways:

{ways}

and around it:

{around}

Cluster connection: KFP_HOST (e.g. https://kubeflow.example.com/pipeline), KFP_TOKEN or KFP_TOKEN_FILE
(a bearer token), KFP_NAMESPACE (the Kubeflow profile). The compiled pipeline names the images of
this commit: build and push them first.
"""

WAYS = (
    ("run standards/conll2003-ner-quick.yaml", "on this machine (kfp.local, no cluster, no Docker)"),
    ("run --docker STANDARD", "on this machine, every task in its image"),
    ("submit standards/conll2003-ner.yaml", "one run on a Kubeflow cluster ($KFP_HOST)"),
    ("schedule standards/conll2003-ner.yaml", "recurring retraining (the standard's schedule.cron)"),
)
AROUND = (
    ("compile STANDARD", "write the pipeline YAML to build/ (to read, or to upload by hand)"),
    ("sweep STANDARD", "write the standard's sweep to build/: a KFP pipeline of its planned\n"
                       "trials, and the same search as a Katib Experiment (kubectl apply -f)"),
    ("images [--push]", "build the images the tasks run in ($NLPSTD_REGISTRY)"),
)


def _help(prog: str) -> str:
    """HELP with its examples spelt as the command the user typed (`nlpstd pipeline` or `python -m pipelines`)."""
    return HELP.format(ways=_examples(prog, WAYS), around=_examples(prog, AROUND))


def _examples(prog: str, rows: tuple[tuple[str, str], ...]) -> str:
    """Example commands with their comments in one column, whatever the length of `prog`."""
    commands = [f"  {prog} {command}" for command, _ in rows]
    width = max(map(len, commands)) + 5
    lines = []
    for command, (_, comment) in zip(commands, rows):
        first, *more = comment.split("\n")
        lines += [command.ljust(width) + first] + [" " * width + line for line in more]
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = "python -m pipelines") -> int:
    """`prog` is the command the user typed (`nlpstd pipeline` or `python -m pipelines`), so help and usage name it."""
    parser = argparse.ArgumentParser(prog=prog, description=_help(prog), formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{run,compile,sweep,submit,schedule,images}")

    run = commands.add_parser("run", help="run the pipeline on this machine with kfp.local")
    run.add_argument("standard")
    run.add_argument("--out", help="output folder (default: runs/<standard name>)")
    run.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    run.add_argument("--docker", action="store_true", help="every task in this checkout's CPU image (kfp.local's "
                     "DockerRunner), against the MLflow server in $MLFLOW_TRACKING_URI (python -m pipelines.stack up)")
    run.add_argument("--image", help="with --docker: the image to run the tasks in (default: this checkout's, built when missing)")

    compile_ = commands.add_parser("compile", help="write the pipeline YAML for a standard to build/")
    compile_.add_argument("standard")
    compile_.add_argument("--out", default="build", help="folder for the YAML (default: build)")

    sweep = commands.add_parser("sweep", help="write the sweep pipeline and its Katib Experiment for a standard to build/")
    sweep.add_argument("standard")
    sweep.add_argument("--out", default="build", help="folder for the YAML files (default: build)")
    sweep.add_argument("--namespace", help="the Experiment's namespace (default: $KFP_NAMESPACE, else none)")

    for name, text in (("submit", "upload the pipeline to a Kubeflow cluster and start a run"),
                       ("schedule", "upload the pipeline and schedule it by the standard's schedule.cron")):
        cluster = commands.add_parser(name, help=text)
        cluster.add_argument("standard")
        cluster.add_argument("--host", help="KFP API endpoint (default: $KFP_HOST)")
        cluster.add_argument("--namespace", help="Kubeflow profile namespace (default: $KFP_NAMESPACE)")
        cluster.add_argument("--experiment", help="experiment (default: the standard's schedule.experiment, else its name)")
        cluster.add_argument("--out", default="build", help="folder for the compiled YAML (default: build)")

    images = commands.add_parser("images", help="build the CPU and GPU images (and push them with --push)")
    images.add_argument("--push", action="store_true", help="push to $NLPSTD_REGISTRY after building")
    images.add_argument("--registry", help="registry and namespace (default: $NLPSTD_REGISTRY)")
    images.add_argument("--only", choices=["cpu", "gpu"], help="build one image only")

    args = parser.parse_args(argv)
    return exit_code(lambda: COMMANDS[args.command](args))


def _run(args: argparse.Namespace) -> int:
    from pipelines.local import print_summary, run_local

    if args.docker:
        from pipelines.containers import run_docker

        result = run_docker(args.standard, args.out, tracking=not args.no_tracking, image=args.image)
    else:
        result = run_local(args.standard, args.out, tracking=not args.no_tracking)
    print_summary(result)
    if not result.gate["passed"]:
        print(f"export skipped: the gate failed ({result.gate['reason']})", file=sys.stderr)
        return 3
    return 0


def _compile(args: argparse.Namespace) -> int:
    from nlpstd.spec import load_standard
    from pipelines.images import images
    from pipelines.pipeline import compile_pipeline

    refs = images()
    path = compile_pipeline(load_standard(args.standard), refs.cpu, refs.gpu, Path(args.out))
    print(f"{path}\n  images: {refs.cpu} (data-prep, evaluate, export), {refs.gpu} (pretrain, finetune)")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from nlpstd.spec import load_standard
    from pipelines.images import images
    from pipelines.katib import write_katib_experiment
    from pipelines.sweep import compile_sweep

    std = load_standard(args.standard)
    refs = images()
    pipeline = compile_sweep(std, refs.cpu, refs.gpu, Path(args.out))
    experiment = write_katib_experiment(std, refs.gpu, Path(args.out), args.namespace or os.environ.get("KFP_NAMESPACE"))
    print(f"{pipeline}\n  images: {refs.gpu} (trials), {refs.cpu} (report)")
    print(f"{experiment}\n  Katib Experiment: kubectl apply -f {experiment}")
    return 0


def _cluster(args: argparse.Namespace) -> int:
    """submit and schedule: compile for this commit's images, upload as a new version, start or schedule."""
    from nlpstd.spec import load_standard
    from pipelines import cluster
    from pipelines.images import image_tag, images
    from pipelines.pipeline import compile_pipeline, pipeline_name

    std = load_standard(args.standard)
    if args.command == "schedule" and std.schedule is None:
        raise NlpstdError(f"{args.standard}: no schedule section; add e.g. schedule: {{cron: \"0 3 * * *\"}}")
    conn = cluster.connection_from_env(args.host, args.namespace)
    refs = images()
    package = compile_pipeline(std, refs.cpu, refs.gpu, Path(args.out), cache_data_prep=args.command == "submit")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    common = {
        "pipeline_name": pipeline_name(std),
        "version_name": f"{image_tag()}-{std.spec_hash()[:8]}-{stamp}",
        "experiment": args.experiment or (std.schedule.experiment if std.schedule else None) or std.name,
    }
    if args.command == "submit":
        url = cluster.submit(conn, package, **common, run_name=f"{std.name} {stamp}", params=submit_params(std))
        print(f"run started: {url}")
    else:
        url = cluster.schedule(conn, package, **common, job_name=f"{std.name} retraining", cron=std.schedule.kfp_cron(), params={})
        print(f"scheduled ({std.schedule.kfp_cron()}, one run at a time, no catch-up): {url}")
    return 0


def submit_params(std) -> dict[str, str]:
    """A one-off run: a data stamp from the files when they are readable here (so data-prep's cache
    serves unchanged data), else the time (data-prep runs afresh)."""
    from pipelines.local import data_stamp

    files = [f.path for f in std.data.files().values()]
    if all(os.path.isfile(path) for path in files):
        return {"data_stamp": data_stamp(files)}
    return {"data_stamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _images(args: argparse.Namespace) -> int:
    from pipelines.images import build_images

    which = (args.only,) if args.only else ("cpu", "gpu")
    refs = build_images(push=args.push, registry=args.registry, which=which)
    for flavour in which:
        print(f"{flavour}: {getattr(refs, flavour)}{' (pushed)' if args.push else ''}")
    return 0


COMMANDS = {"run": _run, "compile": _compile, "sweep": _sweep, "submit": _cluster, "schedule": _cluster, "images": _images}

if __name__ == "__main__":
    sys.exit(main())
