"""The model registry and the champion rule: a new model takes the `champion` alias only by beating it.

Export registers every model that passed the gate as a new version of the standard's
`export.register_as`. Evaluation scores the current champion on the same test data as the
candidate; `decide` turns both scores into promote or keep. The alias moves last, after the
version exists, and only if it still points where it pointed when the champion was scored:
a failed run never touches it, and of two runs finishing at once only one can win against a
given champion. Stages see the `Registry` protocol; `MlflowRegistry` is the MLflow one.

Every final decision about the alias (promote, keep, rollback) is appended to the registered
model's champion history: one registered-model tag per entry, `nlpstd.champion_history.<UTC
time>-<random>`, whose value is the entry as JSON. A tag per entry rather than one list in one
tag: MLflow sets a tag by key, so two runs recording at once write two keys and neither
overwrites the other, where a shared list would need a read-modify-write that loses one. The
keys sort by time, so the history reads back in order; the value limit (100,000 characters)
never binds an entry of a few hundred.
"""

from __future__ import annotations

import getpass
import json
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from nlpstd import jsonio
from nlpstd.errors import NlpstdError

ALIAS = "champion"
HISTORY_TAG = "nlpstd.champion_history."  # + "<UTC time>-<random>": one registered-model tag per entry


@dataclass(frozen=True)
class Champion:
    version: str
    run_id: str | None
    model_dir: Path  # the champion's model folder, downloaded


@dataclass(frozen=True)
class Decision:
    """Whether the candidate takes the alias, with both scores and the reason (recorded as tags and in the report)."""

    promote: bool
    metric: str
    split: str
    candidate: float
    champion: float | None
    champion_version: str | None
    min_delta: float
    reason: str
    interval: list[float] | None = None  # the difference to the champion, at `confidence` (gate.promote)
    confidence: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def decide(metric: str, split: str, candidate: float, minimum: float, min_delta: float,
           champion: float | None = None, champion_version: str | None = None, promote_ties: bool = False,
           interval: tuple[float, float] | None = None, confidence: float | None = None, refused: str | None = None) -> Decision:
    """Promote when the candidate meets `minimum` and beats the champion (if any) by at least `min_delta`.
    A candidate that only ties the champion (the same score: an identical rerun) is not better, so it
    keeps the champion unless `promote_ties`. With `interval` (the difference to the champion at
    `confidence`, from a paired bootstrap), beating it means the whole interval lies above `min_delta`:
    a lead the noise could explain keeps the champion. `refused` is another check the model failed
    (robustness), which keeps the champion whatever the scores."""
    def made(promote: bool, reason: str) -> Decision:
        return Decision(promote, metric, split, candidate, champion, champion_version, min_delta, reason,
                        list(interval) if interval and champion is not None else None, confidence if interval else None)

    if candidate < minimum:
        return made(False, f"{metric} {candidate:.4f} on {split} is below min {minimum:.4f}")
    if refused:
        return made(False, refused)
    if champion is None:
        return made(True, f"no champion yet; {metric} {candidate:.4f} on {split} meets min {minimum:.4f}")
    margin = candidate - champion
    if margin == 0 and not promote_ties:
        return made(False, f"{metric} {candidate:.4f} only ties champion v{champion_version} on {split}; "
                           "a tie keeps the champion (evaluate.gate.promote_ties: false)")
    if interval is not None:
        low, high = interval
        sure = low > min_delta or (margin == 0 and promote_ties)
        return made(sure, f"{metric} {candidate:.4f} against champion v{champion_version} ({champion:.4f}) on {split}: "
                          f"difference {margin:+.4f}, {confidence:.0%} interval [{low:+.4f}, {high:+.4f}] "
                          f"{'lies above' if low > min_delta else 'does not lie above'} min_delta {min_delta:.4f}")
    if margin >= min_delta:
        return made(True, f"{metric} {candidate:.4f} beats champion v{champion_version} ({champion:.4f}) "
                          f"by {margin:+.4f} >= min_delta {min_delta:.4f} on {split}")
    return made(False, f"{metric} {candidate:.4f} does not beat champion v{champion_version} ({champion:.4f}) "
                       f"by min_delta {min_delta:.4f} on {split} (margin {margin:+.4f})")


def decision_tags(decision: dict) -> dict[str, str]:
    """A decision (as `Decision.to_dict()`, or read back from champion.json) as MLflow tags."""
    return {"nlpstd.champion_decision": "promote" if decision.get("promote") else "keep",
            "nlpstd.champion_reason": decision.get("reason", ""),
            "nlpstd.candidate_score": "" if decision.get("candidate") is None else f"{decision['candidate']:.6f}",
            "nlpstd.champion_score": "" if decision.get("champion") is None else f"{decision['champion']:.6f}",
            "nlpstd.champion_version": decision.get("champion_version") or ""}


def history_entry(action: str, decision: dict, *, run_id: str | None, candidate_version: str | None,
                  data_fingerprint: str | None, reason: str | None = None) -> dict:
    """One entry of the champion history, from a decision (as `Decision.to_dict()`; `{}` for a rollback).

    `candidate_version` is the version the entry is about (registered candidate, or the version a
    rollback restores; none when the gate failed before registering), `champion_version` the one
    holding the alias when it was decided. The registry adds the time and `champion_after` when it
    writes the entry, so both say what was true at that moment.
    """
    return {"action": action, "run_id": run_id or None, "candidate_version": candidate_version or None,
            "champion_version": decision.get("champion_version"), "candidate_score": decision.get("candidate"),
            "champion_score": decision.get("champion"), "metric": decision.get("metric"), "split": decision.get("split"),
            "data_fingerprint": data_fingerprint or None, "reason": reason or decision.get("reason", ""), "by": _who()}


def _who() -> str:
    """The account behind a decision; a container without a passwd entry has no name to give."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def champion_line(entries: list[dict]) -> list[str]:
    """The versions that held the alias, oldest first, as the history tells it: a stack that each
    promotion pushes and each rollback pops. Its top is the current champion, the one below it the
    previous champion; keep decisions never touch it."""
    line: list[str] = []
    for entry in entries:
        if entry.get("action") == "promote" and entry.get("candidate_version"):
            line.append(str(entry["candidate_version"]))
        elif entry.get("action") == "rollback" and line:
            line.pop()
    return line


def history_table(entries: list[dict]) -> str:
    """The history as aligned columns, oldest first: what `nlpstd champion history` prints."""
    def v(version) -> str:
        return f"v{version}" if version else "-"

    def score(value) -> str:
        return "-" if value is None else f"{value:.4f}"

    header = ("time (UTC)", "action", "candidate", "champion", "after", "score", "champion score", "on", "run", "reason")
    rows = [header] + [
        (e.get("time", "")[:19].replace("T", " "), e.get("action", ""), v(e.get("candidate_version")),
         v(e.get("champion_version")), v(e.get("champion_after")), score(e.get("candidate_score")),
         score(e.get("champion_score")), f"{e['metric']} on {e['split']}" if e.get("metric") else "-",
         e.get("run_id") or "-", e.get("reason", "") + (f" (by {e['by']})" if e.get("action") == "rollback" else ""))
        for e in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows)


class Registry(Protocol):
    def champion(self, name: str, downloads: Path) -> Champion | None: ...
    def register(self, name: str, run_id: str, artifact_path: str, tags: dict[str, str]) -> str: ...
    def promote(self, name: str, version: str, expected: str | None) -> tuple[bool, str]: ...
    def record(self, name: str, entry: dict) -> None: ...


class NullRegistry:
    """No registry (tracking off): no champion, nothing registered."""

    def champion(self, name: str, downloads: Path) -> Champion | None:
        return None

    def register(self, name: str, run_id: str, artifact_path: str, tags: dict[str, str]) -> str:
        return ""

    def promote(self, name: str, version: str, expected: str | None) -> tuple[bool, str]:
        return False, "no model registry (tracking is off)"

    def record(self, name: str, entry: dict) -> None:
        return None


def registry_for(tracker) -> Registry:
    """The registry of the tracking server a stage logs to; none when the stage is not tracked."""
    return MlflowRegistry() if getattr(tracker, "run_id", None) else NullRegistry()


class MlflowRegistry:
    """The registry of the tracking server (`MLFLOW_TRACKING_URI`, else the local SQLite store)."""

    def __init__(self) -> None:
        from nlpstd.tracking import tracking_client

        self._client = tracking_client()

    def _alias_version(self, name: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self._client.get_model_version_by_alias(name, ALIAS).version)
        except MlflowException:  # no such model, or no alias yet
            return None

    def champion(self, name: str, downloads: Path) -> Champion | None:
        """The current champion, its model downloaded into `downloads` (the caller's to remove)."""
        import mlflow

        version = self._alias_version(name)
        if version is None:
            return None
        found = self._client.get_model_version(name, version)
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(downloads))
        return Champion(version=str(version), run_id=found.run_id, model_dir=Path(local))

    def _ensure_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def register(self, name: str, run_id: str, artifact_path: str, tags: dict[str, str]) -> str:
        self._ensure_model(name)
        source = f"{self._client.get_run(run_id).info.artifact_uri}/{artifact_path}"
        return str(self._client.create_model_version(name, source=source, run_id=run_id, tags=tags).version)

    def promote(self, name: str, version: str, expected: str | None) -> tuple[bool, str]:
        """Move the alias to `version` if it still points at `expected` (the champion the candidate beat)."""
        current = self._alias_version(name)  # re-read right before moving: another run may have won meanwhile
        if current != expected:
            return False, (f"the champion changed during this run (v{expected} when scored, v{current} now); "
                           "run again to compare against the new champion")
        self._client.set_registered_model_alias(name, ALIAS, version)
        return True, f"v{version} is the champion (was {f'v{expected}' if expected else 'none'})"

    def record(self, name: str, entry: dict) -> None:
        """Append a decision to the champion history. The registered model is created if need be: a
        first run that fails the gate has no version yet, and its keep belongs in the history too."""
        self._ensure_model(name)
        self._write(name, entry)

    def _write(self, name: str, entry: dict) -> dict:
        """One tag per entry; its key and the entry's time come from the same clock reading, so the key order is the time order."""
        now = datetime.now(timezone.utc)
        entry = {"time": now.isoformat(timespec="microseconds").replace("+00:00", "Z"), **entry,
                 "champion_after": self._alias_version(name)}
        key = f"{HISTORY_TAG}{now.strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(4)}"
        self._client.set_registered_model_tag(name, key, jsonio.dumps(entry, sort_keys=True))
        return entry

    def history(self, name: str) -> list[dict]:
        """Every recorded decision about `name`'s champion, oldest first."""
        from mlflow.exceptions import MlflowException

        try:
            tags = self._client.get_registered_model(name).tags
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            from nlpstd.tracking import tracking_uri

            raise NlpstdError(f"no registered model {name!r} at {tracking_uri()}: check the name (export.register_as, "
                              "else the standard's name) and MLFLOW_TRACKING_URI") from None
        return [json.loads(tags[key]) for key in sorted(key for key in tags if key.startswith(HISTORY_TAG))]

    def rollback(self, name: str, reason: str | None = None) -> dict:
        """Move the alias back to the previous champion and record the rollback; returns its entry.

        "Previous" follows `champion_line`: promotions push, rollbacks pop, so the previous champion
        is the version the current one replaced when it was promoted. Rolling back twice therefore
        goes two promotions back (v3 -> v2 -> v1) rather than back and forth between the last two;
        after a rollback, a new promotion is what the next rollback undoes. Keep decisions never
        count: a version that never held the alias is never rolled back to.
        """
        from mlflow.exceptions import MlflowException

        line = champion_line(self.history(name))
        current = self._alias_version(name)  # read right before moving, as promote does
        if not line:
            raise NlpstdError(f"{name}: no promotion recorded in its champion history, so no previous champion is known; "
                              "move the alias by hand with MLflow")
        if current != line[-1]:
            raise NlpstdError(f"{name}: the {ALIAS} alias points at {f'v{current}' if current else 'no version'}, but its history "
                              f"says v{line[-1]}: the alias was moved outside nlpstd; set it back to v{line[-1]} with MLflow first")
        if len(line) < 2:
            raise NlpstdError(f"{name}: v{current} is the first champion in its history; there is no previous champion to roll back to")
        target = line[-2]
        try:
            self._client.set_registered_model_alias(name, ALIAS, target)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise NlpstdError(f"{name}: v{target}, the previous champion, no longer exists in the registry; "
                              f"the alias stays on v{current}") from None
        why = f"rollback from v{current} to v{target}" + (f": {reason}" if reason else "")
        return self._write(name, history_entry("rollback", {"champion_version": current}, run_id=None,
                                               candidate_version=target, data_fingerprint=None, reason=why))
