"""Reproduce a tracked run: fetch the standard it logged, check that the data and the code are
still the ones it ran with, run the standard again the way `nlpstd run` does, and compare
every final metric of the two runs.

Export is not rerun: it would register a model version, maybe move the champion alias, and
overwrite `export.destination`, and a check of the recipe must publish nothing. Every stage
that produces the model and its scores (data-prep, pretrain, finetune, evaluate) runs.

A score that moved means little while the data or the code moved too, so any difference
refuses the rerun, naming what differs (the run's value, and today's), unless forced. A forced
rerun carries the differences as a tag, so nobody reads its comparison without them.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nlpstd.errors import NlpstdError
from nlpstd.preflight import preflight
from nlpstd.runner import run_standard
from nlpstd.spec import Standard
from nlpstd.stages.contract import NAMES as STAGES

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger(__name__)

REPRODUCES_TAG = "nlpstd.reproduces"  # on the new run: the id of the run it reproduces
FORCED_TAG = "nlpstd.reproduce_forced"  # on a forced rerun: what differed
STANDARD_ARTIFACT = "standard.yaml"  # the resolved standard, logged on every parent run
RERUN = tuple(stage for stage in STAGES if stage != "export")  # a reproduction publishes nothing

# Figures that measure the machine rather than the model: expected to differ between two runs.
_TIMING = ("seconds", "per_s", "tflops", "mfu")


class ReproduceRefused(NlpstdError):
    """The data or the code is not what the run used; `--force` reruns anyway."""


@dataclass(frozen=True)
class Difference:
    what: str  # e.g. "data fingerprint", "git commit"
    recorded: str  # on the run
    current: str  # here, now

    def __str__(self) -> str:
        return f"{self.what}: the run has {self.recorded}, now {self.current}"


@dataclass(frozen=True)
class MetricDelta:
    name: str  # "<stage>/<metric>", or the bare name of a parent-run metric
    old: float | None
    new: float | None

    @property
    def delta(self) -> float | None:
        return None if self.old is None or self.new is None else self.new - self.old

    @property
    def same(self) -> bool:
        return self.old == self.new or (self.old is not None and self.new is not None and math.isnan(self.old) and math.isnan(self.new))

    @property
    def timing(self) -> bool:
        return any(word in self.name.rsplit("/", 1)[-1] for word in _TIMING)


@dataclass
class Reproduction:
    run_id: str
    new_run_id: str
    standard_file: Path
    out: Path
    differences: list[Difference] = field(default_factory=list)  # empty unless forced
    metrics: list[MetricDelta] = field(default_factory=list)


def reproduce(run_id: str, out: str | Path | None = None, force: bool = False) -> Reproduction:
    """Check, rerun and compare; raises ReproduceRefused when data or code differ and not `force`."""
    client = _client()
    original = _get_run(client, run_id)

    with tempfile.TemporaryDirectory() as tmp:
        # -- the standard, as the run logged it (resolved: absolute paths, variables expanded)
        try:
            fetched = Path(client.download_artifacts(run_id, STANDARD_ARTIFACT, tmp))
        except Exception as exc:  # MLflow raises several kinds, by store
            raise NlpstdError(f"run {run_id} has no {STANDARD_ARTIFACT} artifact to reproduce from ({type(exc).__name__})") from None
        std, _ = preflight(fetched, check_corpus=False)  # the rerun's data-prep reads the corpus first thing

        # -- same data, same code? (before anything is written)
        differences = compare(recorded_versions(client, original), current_versions(std))
        if differences and not force:
            reasons = "\n".join(f"  {difference}" for difference in differences)
            raise ReproduceRefused(f"run {run_id} cannot be reproduced as it ran:\n{reasons}\n"
                                   "check out the run's code or restore its data, or rerun with --force to compare anyway")
        out = Path(out or Path("runs") / f"{std.name}-reproduce-{run_id[:8]}")
        out.mkdir(parents=True, exist_ok=True)
        standard_file = out / STANDARD_ARTIFACT
        shutil.copyfile(fetched, standard_file)  # its paths are absolute: it reads the same from here

    # -- rerun: the path `nlpstd run` takes, up to evaluate, tagged with the run it reproduces
    tags = {REPRODUCES_TAG: run_id}
    if differences:
        tags[FORCED_TAG] = "; ".join(str(difference) for difference in differences)
        for difference in differences:
            log.warning("reproduce: going ahead (--force) although %s", difference)
    summary = run_standard(standard_file, out, stages=list(RERUN), tags=tags)

    # -- compare what both ran
    old = {name: value for name, value in final_metrics(client, original).items() if not _of_stage(name, "export")}
    new = final_metrics(client, _get_run(client, summary["mlflow_run_id"]))
    return Reproduction(run_id, summary["mlflow_run_id"], standard_file, out, differences, compare_metrics(old, new))


# ---------------------------------------------------------------------------------------
# What the run recorded, what is here now


def recorded_versions(client: MlflowClient, run: Run) -> dict[str, str]:
    """Data and code as the run tagged them. The data fingerprints sit on its data-prep run
    (the parent's own tag wins where a runner put one there)."""
    tags = dict(run.data.tags)
    data_prep = _children(client, run).get("data-prep")
    prep_tags = data_prep.data.tags if data_prep else {}
    recorded = {"git commit": tags.get("nlpstd.git_commit", ""), "nlpstd version": tags.get("nlpstd.version", ""),
                "spec hash": tags.get("nlpstd.spec_hash", "")}
    for what, key in (("data fingerprint", "nlpstd.data_fingerprint"), ("corpus fingerprint", "nlpstd.corpus_fingerprint")):
        recorded[what] = tags.get(key) or prep_tags.get(key, "")
    return recorded


def current_versions(std: Standard) -> dict[str, str]:
    """The same figures today: fingerprints recomputed from the files the standard names (as
    data-prep computes them), this checkout's commit, the installed version, the standard's hash
    as this code resolves it."""
    from nlpstd.data import corpus
    from nlpstd.data.prepare import fingerprint, prepare
    from nlpstd.tracking import git_commit, package_version

    current = {"git commit": git_commit(), "nlpstd version": package_version(), "spec hash": std.spec_hash(),
               "data fingerprint": fingerprint(std.data, std.seed)}
    if std.pretrain.enabled:
        training = None
        if std.pretrain.corpus.training_text:  # the examples data-prep trained on, read as it read them
            prepared = prepare(std)
            training = corpus.TrainingText(prepared.sources["train"], prepared.splits["train"])
        current["corpus fingerprint"] = corpus.prepare(std.pretrain.corpus, std.seed, training=training).fingerprint
    return current


def compare(recorded: dict[str, str], current: dict[str, str]) -> list[Difference]:
    """Every figure that differs. A fingerprint the run lacks cannot be checked, which counts as
    a difference; a commit or version it lacks (a run from an image without git, an older
    nlpstd) is not compared."""
    differences = []
    for what, now in current.items():
        then = recorded.get(what, "")
        if what.endswith("fingerprint") and not then:
            differences.append(Difference(what, "none recorded", _short(now)))
        elif then and then != "unknown" and then != now:
            differences.append(Difference(what, _short(then), _short(now)))
    return differences


def _short(value: str) -> str:
    """Hashes to 12 hex digits, as the rest of nlpstd prints them; other values whole."""
    return value[:12] if len(value) >= 40 and all(c in "0123456789abcdef" for c in value) else value


# ---------------------------------------------------------------------------------------
# Metrics


def final_metrics(client: MlflowClient, run: Run) -> dict[str, float]:
    """Each metric's last value: the parent run's by name, each stage run's as `<stage>/<name>`.
    System metrics (CPU, memory, disk) describe the machine, not the run: left out."""
    metrics = dict(run.data.metrics)
    for stage, child in _children(client, run).items():
        metrics.update({f"{stage}/{name}": value for name, value in child.data.metrics.items() if not name.startswith("system/")})
    return metrics


def _of_stage(name: str, stage: str) -> bool:
    """A stage run's metric, or the parent's timing of that stage."""
    return name.startswith(f"{stage}/") or name == f"{stage}_seconds"


def compare_metrics(old: dict[str, float], new: dict[str, float]) -> list[MetricDelta]:
    """One row per metric of either run, stage by stage in pipeline order, the parent's last."""
    order = {stage: index for index, stage in enumerate(STAGES)}

    def key(name: str) -> tuple[int, str]:
        stage = name.split("/", 1)[0] if "/" in name else None
        return order.get(stage, len(STAGES)), name

    return [MetricDelta(name, old.get(name), new.get(name)) for name in sorted(set(old) | set(new), key=key)]


def format_table(rows: list[MetricDelta]) -> str:
    """metric, original, reproduction, delta; `=` where a value is reproduced exactly."""
    def number(value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:.0f}" if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"  # counts whole

    def change(row: MetricDelta) -> str:
        if row.same:
            return "="
        return "-" if row.delta is None else f"{row.delta:+.3g}"

    table = [("metric", "original", "reproduction", "delta")]
    table += [(row.name, number(row.old), number(row.new), change(row)) for row in rows]
    widths = [max(len(line[column]) for line in table) for column in range(4)]
    return "\n".join(f"{name:<{widths[0]}}  {old:>{widths[1]}}  {new:>{widths[2]}}  {delta:>{widths[3]}}".rstrip()
                     for name, old, new, delta in table)


def headline(rows: list[MetricDelta]) -> str:
    """How many metrics came back exactly, and which of the model's (not the machine's) did not.
    A metric only one run logged (another runner logs a few more) is counted apart."""
    both = [row for row in rows if row.delta is not None]
    same = sum(row.same for row in both)
    moved = [row.name for row in both if not row.same and not row.timing]
    text = f"{same} of {len(both)} metrics reproduced exactly"
    if moved:
        text += f"; beyond timings, these differ: {', '.join(moved)}"
    elif same < len(both):
        text += "; the others are timings"
    if len(both) < len(rows):
        text += f"; {len(rows) - len(both)} logged by one run only"
    return text


# ---------------------------------------------------------------------------------------
# MLflow


def _client() -> MlflowClient:
    """nlpstd's one MLflow client, once the tracking server answers (MLflow's own client would retry for minutes)."""
    from nlpstd.tracking import check_reachable, tracking_client, tracking_uri

    check_reachable(tracking_uri())
    return tracking_client()


def _get_run(client: MlflowClient, run_id: str) -> Run:
    from mlflow.exceptions import MlflowException

    from nlpstd.tracking import tracking_uri

    try:
        return client.get_run(run_id)
    except MlflowException:
        raise NlpstdError(f"no MLflow run {run_id} in {tracking_uri()} (set MLFLOW_TRACKING_URI to where it was logged)") from None


def _children(client: MlflowClient, run: Run) -> dict[str, Run]:
    """The run's stage runs by stage name."""
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    return {child.data.tags.get("nlpstd.stage", child.info.run_name): child for child in children}
