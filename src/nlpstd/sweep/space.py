"""A sweep's search space: its axes as Optuna distributions, the points of a grid, and what a point
changes in the standard.

A *point* maps each axis to a value: `variant` to a variant's name, a dotted key to a setting.
Its *changes* are what the standard gets: the variant's own changes, then the settings."""

from __future__ import annotations

import itertools
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from nlpstd.hashing import sha256_json
from nlpstd.spec import SearchRange, Standard, SweepSpec, with_changes

VARIANT = "variant"


def axes(sweep: SweepSpec) -> dict[str, BaseDistribution]:
    """Each axis as the distribution Optuna samples it from."""
    out: dict[str, BaseDistribution] = {}
    if sweep.variants:
        out[VARIANT] = CategoricalDistribution(list(sweep.variants))
    for key, axis in sweep.params.items():
        if isinstance(axis, list):
            out[key] = CategoricalDistribution(axis)
        elif axis.is_int():
            out[key] = IntDistribution(int(axis.low), int(axis.high), log=axis.log, step=int(axis.step or 1))
        else:
            out[key] = FloatDistribution(float(axis.low), float(axis.high), log=axis.log, step=axis.step)
    return out


def grid(sweep: SweepSpec) -> list[dict[str, Any]]:
    """Every combination of the axes' values, variants outermost, in the order the standard lists them."""
    names = ([VARIANT] if sweep.variants else []) + list(sweep.params)
    values = ([list(sweep.variants)] if sweep.variants else []) + [_values(axis) for axis in sweep.params.values()]
    return [dict(zip(names, combination)) for combination in itertools.product(*values)]


def _values(axis: list[Any] | SearchRange) -> list[Any]:
    if isinstance(axis, SearchRange):
        raise ValueError("a grid takes lists of values, not ranges")
    return list(axis)


def changes(sweep: SweepSpec, point: dict[str, Any]) -> dict[str, Any]:
    """The dotted-key changes a point makes to the standard."""
    out: dict[str, Any] = {}
    if VARIANT in point:
        out.update(sweep.variants[point[VARIANT]])
    out.update({key: value for key, value in point.items() if key != VARIANT})
    return out


def trial_standard(std: Standard, point: dict[str, Any]) -> Standard:
    """The standard one trial runs: the sweep's standard with the point's changes, without the sweep."""
    assert std.sweep is not None
    return with_changes(std, changes(std.sweep, point))


def point_key(point: dict[str, Any]) -> str:
    """A short, stable name for a point (its trial folder): the same point always finds the same checkpoints."""
    return sha256_json(point)[:10]


def label(point: dict[str, Any]) -> str:
    """`tiny, lr=0.0003`: the variant, then each setting by the last part of its key."""
    parts = [str(point[VARIANT])] if VARIANT in point else []
    parts += [f"{key.rsplit('.', 1)[-1]}={_short(value)}" for key, value in point.items() if key != VARIANT]
    return ", ".join(parts)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def plan(std: Standard) -> list[dict[str, Any]]:
    """The points a cluster runs in parallel: the grid (capped at `trials`), or `trials` points drawn
    at random from the sweep's seed. A bayes search needs each result before its next point, so on
    a cluster it is drawn at random too (Katib's TPE runs it as a search)."""
    sweep = std.sweep
    assert sweep is not None
    if sweep.strategy == "grid":
        return grid(sweep)[: sweep.trials]
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=sampler_seed(std)))
    space = axes(sweep)
    points = []
    for _ in range(sweep.trials or 1):
        trial = study.ask(space)
        points.append(dict(trial.params))
        study.tell(trial, 0.0)
    return points


def sampler_seed(std: Standard) -> int:
    assert std.sweep is not None
    return std.seed if std.sweep.seed is None else std.sweep.seed


def startup_trials(sweep: SweepSpec) -> int:
    """bayes: trials drawn at random before TPE models the results."""
    return sweep.startup_trials or max(2, (sweep.trials or 0) // 3)


def size(sweep: SweepSpec) -> int | None:
    """How many distinct points the space holds; None when a range makes it unbounded."""
    if any(isinstance(axis, SearchRange) for axis in sweep.params.values()):
        return None
    count = len(sweep.variants) or 1
    for axis in sweep.params.values():
        count *= len(axis)
    return count
