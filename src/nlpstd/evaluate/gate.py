"""The quality gate: one metric on one split against a minimum decides whether a model ships."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from nlpstd.spec import GateSpec


@dataclass(frozen=True)
class GateResult:
    passed: bool
    metric: str
    value: float
    threshold: float
    split: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def apply_gate(gate: GateSpec, scores: dict[str, dict], has_test: bool) -> GateResult:
    """Read `gate.metric` on the gate's split; the test split is the default because it was never tuned on."""
    split = gate.split or ("test" if has_test else "validation")
    if split not in scores:
        raise ValueError(f"the gate reads the {split} split, but only {', '.join(sorted(scores)) or 'no splits'} were scored")
    if gate.metric not in scores[split]:
        raise ValueError(f"the gate reads {gate.metric!r}, which the {split} scores do not contain")
    value = float(scores[split][gate.metric])
    passed = value >= gate.min  # the boundary passes: "at least min"
    reason = f"{gate.metric} {value:.4f} on {split} {'>=' if passed else '<'} min {gate.min:.4f}"
    return GateResult(passed, gate.metric, value, float(gate.min), split, reason)
