"""The parameter–capability report of a sweep, and the configuration it recommends.

Trials that differ only in `seed` are one configuration: its score is their mean, its spread
their standard deviation. The recommendation is the cheapest configuration (by the objective's
cost) within `tolerance` of the best, or the cheapest that passes the gate; it is written out
as a standard that runs as it is. Each configuration's deployment footprint (FLOPs, CPU latency,
bytes on disk) sits beside its score, fp32 and int8; when the recommended configuration's int8
graph passes the gate too, within export.parity.max_metric_drop of fp32, the recommended standard
exports and serves it (`onnx-int8`)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter
from matplotlib.transforms import offset_copy

from nlpstd import jsonio
from nlpstd.evaluate.report import save_figure, table_header, table_row
from nlpstd.spec import MAX_NAME, Standard, with_changes
from nlpstd.sweep import space

COST_KEYS = {"parameters": "parameters", "flops": "flops", "seconds": "train_seconds", "inference_flops": "inference_flops",
             "latency": "cpu_ms"}
COST_UNITS = {"parameters": "parameters", "flops": "training FLOPs", "seconds": "training seconds",
              "inference_flops": "inference FLOPs", "latency": "CPU ms per example at batch 1"}
INT8 = "onnx-int8"  # the export format of the dynamic-int8 graph the footprint scores


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
        int8_measured = all(m.get("int8_value") is not None for m in members)
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
            # the footprint: one model's size and work, the seeds' mean latency; None where a trial did not measure it
            "inference_flops": first.get("inference_flops"),
            "cpu_ms": _mean([m.get("cpu_ms") for m in members]),
            "disk_bytes": first.get("disk_bytes"),
            "int8_value": _mean([m.get("int8_value") for m in members]),
            "int8_metric_drop": _mean([m.get("int8_metric_drop") for m in members]),
            "int8_passes_gate": int8_measured and all(m.get("int8_passes_gate") for m in members),
            "int8_cpu_ms": _mean([m.get("int8_cpu_ms") for m in members]),
            "int8_disk_bytes": first.get("int8_disk_bytes"),
        })
    return out


def _mean(values: list[float | None]) -> float | None:
    """The mean, or None when any member lacks the figure (int8 skipped, or a trial from before footprints)."""
    return statistics.fmean(values) if values and all(v is not None for v in values) else None


def recommend(std: Standard, configs: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    """The cheapest configuration that is good enough, and why it was chosen. Its int8 graph decides how it
    is served, never whether it is chosen: `serving` is onnx-int8 when that graph passes the gate as well."""
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
    # a trial recorded before footprints were measured has no inference cost: it is chosen last
    chosen = min(pool, key=lambda c: (math.inf if c[cost] is None else c[cost], -c["value"], c["train_seconds"]))
    if chosen["passes_gate"] and chosen.get("int8_passes_gate"):  # int8 changes what is served, not what is chosen
        chosen = {**chosen, "serving": INT8}
        why += (f"; its int8 graph passes the gate as well ({gate.metric} {-chosen['int8_metric_drop']:+.4f} against fp32, within "
                f"export.parity.max_metric_drop {std.export.parity.max_metric_drop:g}), so it serves {INT8}")
    elif chosen.get("int8_value") is not None and not chosen.get("int8_passes_gate"):
        why += (f"; its int8 graph does not pass the gate within export.parity.max_metric_drop "
                f"{std.export.parity.max_metric_drop:g} of fp32, so the standard's export settings stay as they are")
    return chosen, why


def recommended_changes(std: Standard, chosen: dict[str, Any]) -> dict[str, Any]:
    """The chosen configuration's changes to the standard; to serve int8, also its export format and
    serving format (export builds the fp32 graph int8 is quantized from by itself: `onnx` need not ship)."""
    changes = dict(chosen["changes"])
    if chosen.get("serving") == INT8:
        formats = with_changes(std, changes).export.formats  # a variant may have set them
        changes["export.formats"] = formats if INT8 in formats else [*formats, INT8]
        changes["export.serving.format"] = INT8
    return changes


def write_recommended(std: Standard, chosen: dict[str, Any], reason: str, path: Path) -> None:
    """The sweep's standard with the chosen changes and no sweep: `nlpstd run` takes it as it is."""
    suffix = "-recommended"
    name = std.name[: MAX_NAME - len(suffix)].rstrip("-._") + suffix  # still a valid name when std.name is long
    recommended = with_changes(std, recommended_changes(std, chosen), name=name)
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
                  f"{chosen['train_seconds']:.0f} training seconds{_served(chosen, metric)}; chosen as {summary['reason']}.", "",
                  "Changes to the standard:", ""]
        lines += [f"- `{key}`: `{jsonio.dumps(value)}`" for key, value in recommended_changes(std, chosen).items()] or ["- none"]
        lines += ["", "Run it: `nlpstd run recommended.yaml`", ""]
    lines += ["## Capability by configuration", "",
              *table_header(["configuration", "parameters", "inference FLOPs", "CPU ms/example (batch 1)", "disk MB", "trials",
                             f"validation {metric} (mean ± sd over seeds)", f"train {metric}", f"int8 {metric}", "int8 CPU ms/example",
                             "int8 disk MB", "training seconds", "gate", "int8 gate"], "lrrrrrrrrrrrll")]
    for c in sorted(configs, key=lambda c: (c["parameters"], c["label"])):
        spread = f" ± {c['spread']:.4f}" if len(c["trials"]) > 1 else ""
        int8_gate = "-" if c["int8_value"] is None else "pass" if c["int8_passes_gate"] else "fail"
        lines.append(table_row([c["label"], f"{c['parameters']:,}", _figure(c["inference_flops"], ".3g"), _figure(c["cpu_ms"], ".2f"),
                                _megabytes(c["disk_bytes"]), len(c["trials"]), f"{c['value']:.4f}{spread}", f"{c['train_metric']:.4f}",
                                _figure(c["int8_value"], ".4f"), _figure(c["int8_cpu_ms"], ".2f"), _megabytes(c["int8_disk_bytes"]),
                                f"{c['train_seconds']:.0f}", "pass" if c["passes_gate"] else "fail", int8_gate]))
    if any(c["cpu_ms"] is not None for c in configs):
        lines += ["", _footprint_note(std, complete)]
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


def _figure(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _megabytes(size: int | None) -> str:
    return "-" if size is None else f"{size / 1e6:.1f}"


def _served(chosen: dict[str, Any], metric: str) -> str:
    """`, served as onnx-int8: …`: the footprint of what the recommended standard serves."""
    if chosen.get("cpu_ms") is None:
        return ""
    if chosen.get("serving") == INT8:
        return (f", served as {INT8}: validation {metric} {chosen['int8_value']:.4f}, {chosen['int8_cpu_ms']:.2f} ms per example "
                f"on CPU, {_megabytes(chosen['int8_disk_bytes'])} MB (fp32: {chosen['cpu_ms']:.2f} ms, {_megabytes(chosen['disk_bytes'])} MB)")
    return f", {chosen['cpu_ms']:.2f} ms per example on CPU, {_megabytes(chosen['disk_bytes'])} MB"


def _footprint_note(std: Standard, complete: list[dict[str, Any]]) -> str:
    """How the footprint columns were measured, and why some are empty."""
    threads = sorted({r["cpu_threads"] for r in complete if r.get("cpu_threads")})
    skipped = sorted({r["int8_skipped"] for r in complete if r.get("int8_skipped")})
    note = ("Footprint: inference FLOPs of one forward pass at batch 1 on the validation example of median length; CPU ms is "
            "the median per example at batch 1 over a fixed sample of validation examples on the machine that ran the trial "
            f"({', '.join(map(str, threads)) or '?'} thread(s)), torch fp32; disk is the weights file(s). int8 is the "
            f"dynamic-int8 ONNX graph export builds ({INT8}), scored on the whole validation split and timed with ONNX Runtime; "
            f"its gate: the gate's {std.evaluate.gate.metric} >= {std.evaluate.gate.min:g} and at most "
            f"export.parity.max_metric_drop {std.export.parity.max_metric_drop:g} below fp32.")
    return note + (f" No int8 figures where: {'; '.join(skipped)}." if skipped else "")


# -- the plots


def _plots(std: Standard, complete: list[dict[str, Any]], pruned: list[dict[str, Any]], configs: list[dict[str, Any]],
           chosen: dict[str, Any] | None, folder: Path) -> list[Path]:
    if not complete:
        return []
    assert std.sweep is not None
    metric = complete[0]["metric"]
    # parameters have a plot of their own, and latency the one below; either way the second shows training time
    cost = "seconds" if std.sweep.objective.cost in ("parameters", "latency") else std.sweep.objective.cost
    plots = [
        _capability(std, complete, configs, chosen, "parameters", "parameters", metric, folder / "capability_vs_parameters.png"),
        _capability(std, complete, configs, chosen, COST_KEYS[cost], COST_UNITS[cost], metric,
                    folder / f"capability_vs_{cost}.png"),
    ]
    if any(c["cpu_ms"] is not None for c in configs):
        plots.append(_latency(configs, chosen, metric, folder / "capability_vs_latency.png"))
    return plots + [
        _fit_plot(complete, std.sweep.objective.overfit_gap, metric, folder / "train_vs_validation.png"),
        _history(complete, pruned, metric, folder / "search_history.png"),
    ]


def _good_enough(ax, std: Standard, configs: list[dict[str, Any]]) -> None:
    """What the recommendation asks of a configuration: a band within the tolerance of the best, or the gate's line."""
    assert std.sweep is not None
    objective, gate = std.sweep.objective, std.evaluate.gate
    if objective.recommend == "within-tolerance":
        best = max(c["value"] for c in configs)
        ax.axhspan(best - objective.tolerance, best, color="grey", alpha=0.15, label=f"within {objective.tolerance:g} of the best")
    else:
        ax.axhline(gate.min, color="grey", linestyle="--", linewidth=1, label=f"gate: {gate.metric} >= {gate.min:g}")


def _group(config_or_result: dict[str, Any]) -> str:
    return str(config_or_result["point"].get(space.VARIANT, "trials"))


def _capability(std: Standard, complete: list[dict[str, Any]], configs: list[dict[str, Any]], chosen: dict[str, Any] | None,
                key: str, unit: str, metric: str, path: Path) -> Path:
    """Every trial as a dot, each configuration's mean ± sd as a bar, its int8 graph as a hollow ring of the
    same colour just right of it (same size and cost: only the score moves); the recommendation starred."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    colors = _colors(complete)
    for group, color in colors.items():
        members = [r for r in complete if _group(r) == group]
        ax.scatter([r[key] for r in members], [r["value"] for r in members], color=color, alpha=0.5, s=18, label=group)
    for c in configs:
        ax.errorbar(c[key], c["value"], yerr=c["spread"], fmt="o", color=colors[_group(c)], capsize=3, markersize=5)
    _int8_rings(ax, configs, colors, key, beside=True)
    _good_enough(ax, std, configs)
    if chosen is not None:
        y = chosen["int8_value"] if chosen.get("serving") == INT8 else chosen["value"]
        ax.scatter([chosen[key]], [y], marker="*", s=220, color="gold", edgecolor="black", zorder=5, label="recommended")
    if min(c[key] for c in configs) > 0 and max(c[key] for c in configs) / min(c[key] for c in configs) > 20:
        _log_axis(ax)
    ax.set_xlabel(unit)
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(f"validation {metric} against {unit}")
    return _finish(fig, ax, path)


def _latency(configs: list[dict[str, Any]], chosen: dict[str, Any] | None, metric: str, path: Path) -> Path:
    """Score against CPU ms per example at batch 1: each configuration fp32 (filled) and int8 (hollow), joined,
    so the step int8 takes (faster, and how much lower) shows; the recommendation starred as it is served."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    measured = [c for c in configs if c["cpu_ms"] is not None]
    colors = _colors(measured)
    for c in measured:
        ax.scatter([c["cpu_ms"]], [c["value"]], color=colors[_group(c)], s=30)
        if c["int8_cpu_ms"] is not None:
            ax.plot([c["cpu_ms"], c["int8_cpu_ms"]], [c["value"], c["int8_value"]], color=colors[_group(c)], lw=0.8, ls=":")
    for group, color in colors.items():
        ax.scatter([], [], color=color, s=30, label=f"{group} (fp32)")
    _int8_rings(ax, measured, colors, "int8_cpu_ms")
    if chosen is not None and chosen.get("cpu_ms") is not None:
        int8 = chosen.get("serving") == INT8
        ax.scatter([chosen["int8_cpu_ms" if int8 else "cpu_ms"]], [chosen["int8_value" if int8 else "value"]], marker="*", s=220,
                   color="gold", edgecolor="black", zorder=5, label=f"recommended ({INT8 if int8 else 'fp32'})")
    times = [t for c in measured for t in (c["cpu_ms"], c["int8_cpu_ms"]) if t]
    if min(times) > 0 and max(times) / min(times) > 20:
        _log_axis(ax)
    ax.set_xlabel("CPU ms per example, batch 1")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(f"validation {metric} against CPU latency")
    return _finish(fig, ax, path)


def _colors(results: list[dict[str, Any]]) -> dict[str, Any]:
    """A colour per variant (or one for all), the same in every plot."""
    return {g: colormaps["tab10"](i % 10) for i, g in enumerate(sorted({_group(r) for r in results}))}


def _int8_rings(ax, configs: list[dict[str, Any]], colors: dict[str, Any], int8_key: str, beside: bool = False) -> None:
    """Each configuration's int8 graph as a hollow ring of its colour, at `int8_key` on the x axis; `beside`
    draws it a few points to the right, so a ring at its fp32 point's x and score does not hide behind it."""
    int8 = [c for c in configs if c["int8_value"] is not None and c[int8_key] is not None]
    where = offset_copy(ax.transData, fig=ax.figure, x=9, units="points") if beside else ax.transData
    for c in int8:
        ax.scatter([c[int8_key]], [c["int8_value"]], facecolors="none", edgecolors=[colors[_group(c)]], s=50, linewidths=1.5, zorder=4,
                   transform=where)
    if int8:
        ax.scatter([], [], facecolors="none", edgecolors="grey", s=50, linewidths=1.5, label=f"int8 ({INT8})")


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


def _log_axis(ax) -> None:
    """A log x axis labelled at 1, 2 and 5 of each decade in plain numbers; the other ticks unlabelled,
    as matplotlib's own labels of them run into each other across a decade or two."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _finish(fig: Figure, ax, path: Path) -> Path:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
