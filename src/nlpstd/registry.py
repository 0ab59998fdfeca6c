"""The model registry and the champion rule: a new model takes the `champion` alias only by beating it.

Export registers every model that passed the gate as a new version of the standard's
`export.register_as`. Evaluation scores the current champion on the same test data as the
candidate; `decide` turns both scores into promote or keep. The alias moves last, after the
version exists, and only if it still points where it pointed when the champion was scored:
a failed run never touches it, and of two runs finishing at once only one can win against a
given champion. Stages see the `Registry` protocol; `MlflowRegistry` is the MLflow one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

ALIAS = "champion"


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

    def to_dict(self) -> dict:
        return asdict(self)


def decide(metric: str, split: str, candidate: float, minimum: float, min_delta: float,
           champion: float | None = None, champion_version: str | None = None) -> Decision:
    """Promote when the candidate meets `minimum` and beats the champion (if any) by at least `min_delta`."""
    def made(promote: bool, reason: str) -> Decision:
        return Decision(promote, metric, split, candidate, champion, champion_version, min_delta, reason)

    if candidate < minimum:
        return made(False, f"{metric} {candidate:.4f} on {split} is below min {minimum:.4f}")
    if champion is None:
        return made(True, f"no champion yet; {metric} {candidate:.4f} on {split} meets min {minimum:.4f}")
    margin = candidate - champion
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


class Registry(Protocol):
    def champion(self, name: str, downloads: Path) -> Champion | None: ...
    def register(self, name: str, run_id: str, artifact_path: str, tags: dict[str, str]) -> str: ...
    def promote(self, name: str, version: str, expected: str | None) -> tuple[bool, str]: ...


class NullRegistry:
    """No registry (tracking off): no champion, nothing registered."""

    def champion(self, name: str, downloads: Path) -> Champion | None:
        return None

    def register(self, name: str, run_id: str, artifact_path: str, tags: dict[str, str]) -> str:
        return ""

    def promote(self, name: str, version: str, expected: str | None) -> tuple[bool, str]:
        return False, "no model registry (tracking is off)"


def registry_for(tracker) -> Registry:
    """The registry of the tracking server a stage logs to; none when the stage is not tracked."""
    return MlflowRegistry() if getattr(tracker, "run_id", None) else NullRegistry()


class MlflowRegistry:
    """The registry of the tracking server (`MLFLOW_TRACKING_URI`, else the local SQLite store)."""

    def __init__(self) -> None:
        import mlflow

        from nlpstd.tracking import tracking_uri

        mlflow.set_tracking_uri(tracking_uri())
        self._client = mlflow.MlflowClient()

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

    def register(self, name: str, run_id: str, artifact_path: str, tags: dict[str, str]) -> str:
        from mlflow.exceptions import MlflowException

        try:
            self._client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
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
