"""The parameter–capability report of a sweep, and the configuration it recommends.

Trials that differ only in `seed` are one configuration: its score is their mean, its spread
their standard deviation. The recommendation is the cheapest configuration (by the objective's
cost) within `tolerance` of the best, or the cheapest that passes the gate; it is written out
as a standard that runs as it is."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.figure import Figure

from nlpstd import jsonio
from nlpstd.evaluate.report import save_figure, table_header, table_row
from nlpstd.spec import MAX_NAME, Standard, with_changes
from nlpstd.sweep import space

COST_KEYS = {"parameters": "parameters", "flops": "flops", "seconds": "train_seconds"}
COST_UNITS = {"parameters": "parameters", "flops": "training FLOPs", "seconds": "training seconds"}


def write_report(std: Standard, results: list[dict[str, Any]], out_dir: Path, trial_seconds: float = 0.0) -> dict[str, Any]:
    """`report.md`, `trials.json`, `plots/*.png` and, when one is chosen, `recommended.yaml` in `out_dir`;
    returns the summary (best and recommended configurations, counts)."""
    assert std.sweep is not None
    out_dir = Path(out_dir)
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    complete = [r for r in results if r.get("state", "complete") == "complete"]
    pruned = [r for r in results if r.get("state") == "pruned"]
    configs = configurations(complete)
    chosen, reason = recommend(std, configs)
    best = max(configs, key=lambda c: c["value"], default=None)
    summary = {
        "standard": std.name, "metric": complete[0]["metric"] if complete else None, "cost": std.sweep.objective.cost,
        "trials": len(complete), "pruned": len(pruned), "trial_seconds": round(trial_seconds, 1),
        "best": best, "recommended": chosen, "reason": reason, "recommended_standard": None,
        "report": str(out_dir / "report.md"),
    }
    if chosen is not None:
        path = out_dir / "recommended.yaml"
        write_recommended(std, chosen, reason, path)
        summary["recommended_standard"] = str(path)
    plots = _plots(std, complete, pruned, configs, chosen, out_dir / "plots")
    jsonio.write_json(out_dir / "trials.json", {"summary": summary, "trials": results}, default=str)
    (out_dir / "report.md").write_text(_markdown(std, summary, complete, pruned, configs, plots), encoding="utf-8")
    return summary


def configurations(complete: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials grouped by their point without `seed`: mean and spread of the metric and the cost."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for result in complete:
        config = {k: v for k, v in result["point"].items() if k != "seed"}
        groups.setdefault(space.point_key(config), []).append(result)
    out = []
    for members in groups.values():
        first = members[0]
        config = {k: v for k, v in first["point"].items() if k != "seed"}
        values = [m["value"] for m in members]
        out.append({
            "label": space.label(config) or "the standard as it is",
            "point": config,
            "changes": {k: v for k, v in first["changes"].items() if k != "seed"},
            "variant": config.get(space.VARIANT),
            "trials": [m["number"] for m in members],
            "value": statistics.fmean(values),
            "spread": statistics.stdev(values) if len(values) > 1 else 0.0,
            "train_metric": statistics.fmean(m["train_metric"] for m in members),
            "passes_gate": all(m["passes_gate"] for m in members),
            "parameters": first["parameters"],
            "flops": statistics.fmean(m["flops"] for m in members),
            "train_seconds": statistics.fmean(m["train_seconds"] for m in members),
            "spec_hash": first["spec_hash"],
        })
    return out


def recommend(std: Standard, configs: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    """The cheapest configuration that is good enough, and why it was chosen."""
    assert std.sweep is not None
    objective, gate = std.sweep.objective, std.evaluate.gate
    if not configs:
        return None, "no trial completed"
    cost = COST_KEYS[objective.cost]
    best = max(configs, key=lambda c: c["value"])
    if objective.recommend == "within-tolerance":
        pool = [c for c in configs if c["value"] >= best["value"] - objective.tolerance]
        why = (f"the fewest {COST_UNITS[objective.cost]} within {objective.tolerance:g} of the best validation "
               f"score {best['value']:.4f} ({best['label']})")
    else:
        pool = [c for c in configs if c["passes_gate"]]
        if not pool:
            return None, f"no configuration passes the gate ({gate.metric} >= {gate.min:g} on validation)"
        why = f"the fewest {COST_UNITS[objective.cost]} that passes the gate ({gate.metric} >= {gate.min:g})"
    chosen = min(pool, key=lambda c: (c[cost], -c["value"], c["train_seconds"]))
    return chosen, why


def write_recommended(std: Standard, chosen: dict[str, Any], reason: str, path: Path) -> None:
    """The sweep's standard with the chosen changes and no sweep: `nlpstd run` takes it as it is."""
    suffix = "-recommended"
    name = std.name[: MAX_NAME - len(suffix)].rstrip("-._") + suffix  # still a valid name when std.name is long
    recommended = with_changes(std, chosen["changes"], name=name)
    header = (f"# Recommended by the sweep of {std.name}: {chosen['label']}\n"
              f"# Chosen as {reason}.\n"
              f"# Validation score {chosen['value']:.4f} over {len(chosen['trials'])} trial(s); "
              f"{chosen['parameters']:,} parameters.\n")
    path.write_text(header + recommended.to_yaml(), encoding="utf-8")


def fit(result: dict[str, Any], std: Standard) -> str:
    """Over-fits: train well above validation; under-fits: even the training data misses the gate."""
    assert std.sweep is not None
    if result["train_metric"] - result["value"] > std.sweep.objective.overfit_gap:
        return "over-fits"
    if result["train_metric"] < std.evaluate.gate.min:
        return "under-fits"
    return "ok"


def progress_table(std: Standard, results: list[dict[str, Any]]) -> str:
    """One line per ended trial and the best so far: printed after each trial."""
    rows = [f"{'#':>3}  {'trial':<34} {'state':<8} {'valid':>7} {'train':>7} {'params':>11} {'seconds':>8}"]
    for r in sorted(results, key=lambda r: r["number"]):
        if r["state"] == "complete":
            rows.append(f"{r['number']:>3}  {r['label'][:34]:<34} {'done':<8} {r['value']:>7.4f} {r['train_metric']:>7.4f} "
                        f"{r['parameters']:>11,} {r['trial_seconds']:>8.0f}")
        else:
            last = f"{r['curve'][-1]:.4f}" if r.get("curve") else "-"
            rows.append(f"{r['number']:>3}  {r.get('label', '')[:34]:<34} {r['state']:<8} {last:>7} {'-':>7} {'-':>11} "
                        f"{r['trial_seconds']:>8.0f}")
    complete = [r for r in results if r["state"] == "complete"]
    if complete:
        top = max(complete, key=lambda r: r["value"])
        rows.append(f"best so far: trial {top['number']} ({top['label']}), validation {top['value']:.4f}")
    return "\n".join(rows)


# -- the markdown


def _markdown(std: Standard, summary: dict[str, Any], complete: list[dict[str, Any]], pruned: list[dict[str, Any]],
              configs: list[dict[str, Any]], plots: list[Path]) -> str:
    assert std.sweep is not None
    metric, chosen = summary["metric"] or "metric", summary["recommended"]
    lines = [f"# Sweep: {std.name}", "",
             f"Strategy {std.sweep.strategy}; {summary['trials']} trials completed, {summary['pruned']} pruned, "
             f"{summary['trial_seconds']:.0f} trial-seconds in all. Scores are validation {metric}; train is the same "
             "metric on as many training examples.", ""]
    lines += ["## Recommendation", ""]
    if chosen is None:
        lines += [f"None: {summary['reason']}.", ""]
    else:
        lines += [f"**{chosen['label']}**: validation {metric} {chosen['value']:.4f}, {chosen['parameters']:,} parameters, "
                  f"{chosen['train_seconds']:.0f} training seconds; chosen as {summary['reason']}.", "",
                  "Changes to the standard:", ""]
        lines += [f"- `{key}`: `{jsonio.dumps(value)}`" for key, value in chosen["changes"].items()] or ["- none"]
        lines += ["", "Run it: `nlpstd run recommended.yaml`", ""]
    lines += ["## Capability by configuration", "",
              *table_header(["configuration", "parameters", "trials", f"validation {metric} (mean ± sd over seeds)",
                             f"train {metric}", "training seconds", "gate"], "lrrrrrl")]
    for c in sorted(configs, key=lambda c: (c["parameters"], c["label"])):
        spread = f" ± {c['spread']:.4f}" if len(c["trials"]) > 1 else ""
        lines.append(table_row([c["label"], f"{c['parameters']:,}", len(c["trials"]), f"{c['value']:.4f}{spread}",
                                f"{c['train_metric']:.4f}", f"{c['train_seconds']:.0f}", "pass" if c["passes_gate"] else "fail"]))
    lines += ["", "## Trials", "",
              *table_header(["#", "trial", "parameters", f"validation {metric}", f"train {metric}", "fit", "training FLOPs",
                             "training s", "trial s"], "rlrrrlrrr")]
    for r in sorted(complete, key=lambda r: r["number"]):
        lines.append(table_row([r["number"], r["label"], f"{r['parameters']:,}", f"{r['value']:.4f}", f"{r['train_metric']:.4f}",
                                fit(r, std), f"{r['flops']:.3g}", f"{r['train_seconds']:.0f}", f"{r['trial_seconds']:.0f}"]))
    if pruned:
        lines += ["", "Pruned (stopped at an evaluation where they trailed the others):", ""]
        for r in sorted(pruned, key=lambda r: r["number"]):
            curve = ", ".join(f"{v:.4f}" for v in r.get("curve", []))
            lines.append(f"- trial {r['number']} ({r.get('label', '')}): validation {curve}; {r['trial_seconds']:.0f} s")
    lines += ["", f"Fit: over-fits when train exceeds validation by more than {std.sweep.objective.overfit_gap:g}; "
              f"under-fits when train stays below the gate's {std.evaluate.gate.min:g}.", ""]
    lines += [f"![{p.stem}](plots/{p.name})" for p in plots]
    return "\n".join(lines) + "\n"


# -- the plots


def _plots(std: Standard, complete: list[dict[str, Any]], pruned: list[dict[str, Any]], configs: list[dict[str, Any]],
           chosen: dict[str, Any] | None, folder: Path) -> list[Path]:
    if not complete:
        return []
    assert std.sweep is not None
    metric = complete[0]["metric"]
    cost = std.sweep.objective.cost if std.sweep.objective.cost != "parameters" else "seconds"
    return [
        _capability(complete, configs, chosen, "parameters", "parameters", metric, std.sweep.objective.tolerance,
                    folder / "capability_vs_parameters.png"),
        _capability(complete, configs, chosen, COST_KEYS[cost], COST_UNITS[cost], metric, std.sweep.objective.tolerance,
                    folder / f"capability_vs_{cost}.png"),
        _fit_plot(complete, std.sweep.objective.overfit_gap, metric, folder / "train_vs_validation.png"),
        _history(complete, pruned, metric, folder / "search_history.png"),
    ]


def _group(config_or_result: dict[str, Any]) -> str:
    return str(config_or_result["point"].get(space.VARIANT, "trials"))


def _capability(complete: list[dict[str, Any]], configs: list[dict[str, Any]], chosen: dict[str, Any] | None, key: str,
                unit: str, metric: str, tolerance: float, path: Path) -> Path:
    """Every trial as a dot, each configuration's mean ± sd as a bar; the recommendation starred."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    groups = sorted({_group(r) for r in complete})
    colors = {g: colormaps["tab10"](i % 10) for i, g in enumerate(groups)}
    for group in groups:
        members = [r for r in complete if _group(r) == group]
        ax.scatter([r[key] for r in members], [r["value"] for r in members], color=colors[group], alpha=0.5, s=18, label=group)
    for c in configs:
        ax.errorbar(c[key], c["value"], yerr=c["spread"], fmt="o", color=colors[_group(c)], capsize=3, markersize=5)
    best = max(c["value"] for c in configs)
    ax.axhspan(best - tolerance, best, color="grey", alpha=0.15, label=f"within {tolerance:g} of the best")
    if chosen is not None:
        ax.scatter([chosen[key]], [chosen["value"]], marker="*", s=220, color="gold", edgecolor="black", zorder=5, label="recommended")
    if min(c[key] for c in configs) > 0 and max(c[key] for c in configs) / min(c[key] for c in configs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(unit)
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(f"validation {metric} against {unit}")
    return _finish(fig, ax, path)


def _fit_plot(complete: list[dict[str, Any]], gap: float, metric: str, path: Path) -> Path:
    """Train against validation: on the diagonal a trial generalises, far below it it over-fits."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    xs, ys = [r["train_metric"] for r in complete], [r["value"] for r in complete]
    low, high = min(xs + ys) - 0.02, max(xs + ys) + 0.02
    ax.plot([low, high], [low, high], color="grey", lw=1, label="train = validation")
    ax.plot([low, high], [low - gap, high - gap], color="red", lw=1, ls="--", label=f"over-fitting (gap > {gap:g})")
    ax.scatter(xs, ys, s=24)
    for r in complete:
        ax.annotate(str(r["number"]), (r["train_metric"], r["value"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"train {metric}")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title("over- and under-fitting by trial")
    return _finish(fig, ax, path)


def _history(complete: list[dict[str, Any]], pruned: list[dict[str, Any]], metric: str, path: Path) -> Path:
    """Each trial's score in the order run, the best so far, and where pruned trials stopped."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    done = sorted(complete, key=lambda r: r["number"])
    ax.scatter([r["number"] for r in done], [r["value"] for r in done], label="completed", s=24)
    best, running = [], float("-inf")
    for r in done:
        running = max(running, r["value"])
        best.append(running)
    ax.step([r["number"] for r in done], best, where="post", color="green", label="best so far")
    stopped = [r for r in pruned if r.get("curve")]
    if stopped:
        ax.scatter([r["number"] for r in stopped], [r["curve"][-1] for r in stopped], marker="x", color="red",
                   label="pruned (last evaluation)")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title("search history")
    return _finish(fig, ax, path)


def _finish(fig: Figure, ax, path: Path) -> Path:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
