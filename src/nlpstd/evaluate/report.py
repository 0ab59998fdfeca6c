"""The evaluation report: PNG plots and one markdown file a reviewer reads top to bottom.

Plots draw on a bare `Figure` with the Agg canvas, so pyplot's global state (and whatever
backend the caller chose) is never touched.
"""

from __future__ import annotations

import base64
import contextlib
import html
import logging
import os
import re
import warnings
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findSystemFonts, fontManager
from matplotlib.text import Text

from nlpstd.evaluate.gate import GateResult
from nlpstd.evaluate.metrics import headline

log = logging.getLogger(__name__)

# Fonts with Chinese, Japanese and Korean glyphs, as Linux, macOS and Windows name them; matplotlib's
# own DejaVu Sans has none. The first installed one draws the characters DejaVu Sans lacks.
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK TC", "Noto Sans CJK KR", "Source Han Sans SC",
                "Source Han Sans", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Droid Sans Fallback", "AR PL UMing CN",
                "PingFang SC", "Hiragino Sans GB", "Microsoft YaHei", "SimHei", "Yu Gothic", "Malgun Gothic")

# ---------------------------------------------------------------------------------------
# Plots


def plot_confusion_matrix(matrix: list[list[int]], labels: list[str], path: Path) -> Path:
    """Counts per (gold, predicted) cell; rows are gold labels, as in `classification_metrics`."""
    side = max(4.0, 0.6 * len(labels) + 2.0)  # inches: cells stay legible as labels grow
    fig = Figure(figsize=(side, side))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right")
    ax.set_yticks(ticks, labels)
    brightest = max((max(row) for row in matrix if row), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            dark_cell = count > brightest / 2
            ax.text(j, i, str(count), ha="center", va="center", color="white" if dark_cell else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title("Confusion matrix")
    return save_figure(fig, path)


def plot_per_type_f1(per_type: dict, path: Path) -> Path:
    """One horizontal bar per entity type or label, with its F1 and support written beside it."""
    names = list(per_type)
    fig = Figure(figsize=(7.0, max(3.0, 0.4 * len(names) + 1.5)))
    ax = fig.add_subplot()
    if names:
        scores = [per_type[name]["f1"] for name in names]
        ax.barh(names, scores, color="tab:blue")
        for y, name in enumerate(names):
            ax.text(scores[y] + 0.01, y, f"{scores[y]:.3f} (n={per_type[name]['support']})", va="center")
        ax.invert_yaxis()  # first entry at the top, as in the report's tables
    else:
        _no_data(ax)
    ax.set_xlim(0, 1.3)  # room right of a perfect bar for its caption
    ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_xlabel("F1")
    ax.set_title("F1 per type")
    return save_figure(fig, path)


def plot_loss_curve(history: list[dict], path: Path) -> Path:
    """Training loss (left) and evaluation metrics (right) against the optimizer step."""
    fig = Figure(figsize=(11.0, 4.0))
    loss_ax, eval_ax = fig.subplots(1, 2)
    losses = [(row["step"], row["loss"]) for row in history if "loss" in row]
    if losses:
        loss_ax.plot(*zip(*losses), color="tab:red")
    else:
        _no_data(loss_ax)
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("loss")
    loss_ax.set_title("Training loss")

    eval_keys = sorted({key for row in history for key in row if key.startswith("eval_")})
    for key in eval_keys:
        points = [(row["step"], row[key]) for row in history if key in row]
        eval_ax.plot(*zip(*points), marker="o", label=key.removeprefix("eval_"))
    if eval_keys:
        eval_ax.legend()
    else:
        _no_data(eval_ax)
    eval_ax.set_xlabel("step")
    eval_ax.set_ylabel("score")
    eval_ax.set_title("Evaluation")
    return save_figure(fig, path)


def word_colour(score: float) -> tuple[float, float, float, float]:
    """RGBA of a word's highlight: green for evidence for the explained label, red against, more opaque
    as |score| grows (capped, so a word at ±1 stays legible)."""
    alpha = round(min(abs(score), 1.0) * 0.8, 3)
    return (0.13, 0.63, 0.27, alpha) if score >= 0 else (0.84, 0.15, 0.16, alpha)


def plot_explanation(words: list[str], scores: list[float], path: Path, title: str = "", marked: int | None = None) -> Path:
    """One explanation as a picture: the words in lines, each on a box coloured by `word_colour`, the
    `marked` word (the one a token label is explained at) framed and bold, a key at the foot. Matplotlib's
    default font has no CJK glyphs: words are drawn with an installed CJK font as fallback (`CJK_FAMILIES`);
    without one, Chinese or Japanese words draw as empty boxes, said in one warning (the HTML snippet shows them
    correctly)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _drawing(path):  # the words are measured and placed in the fonts they draw with
        FigureCanvasAgg(_explanation_figure(words, scores, title, marked)).print_png(path)
    return path


@contextlib.contextmanager
def _drawing(path: Path) -> Iterator[list[str]]:
    """While a picture is made and drawn: text created meanwhile takes `text_families()` (yielded), so
    an installed CJK font draws what DejaVu Sans lacks; characters no installed font has are told in
    one warning naming the picture (matplotlib would warn once per character), and matplotlib's note
    that a CJK font without bold draws regular is not shown. Other warnings pass on as they were."""
    families = list(text_families())
    font_log = logging.getLogger("matplotlib.font_manager")
    level = font_log.level
    font_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as caught, rc_context({"font.family": families}):
            warnings.simplefilter("always")
            yield families
    finally:
        font_log.setLevel(level)
    missing = [w for w in caught if "missing from font" in str(w.message)]
    for other in (w for w in caught if w not in missing):
        warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
    if missing:
        log.warning(f"{path.name}: some characters have no glyph in the installed fonts and draw as boxes "
                    f"(a CJK font such as {CJK_FAMILIES[0]} or {CJK_FAMILIES[6]} draws Chinese and Japanese)")


@cache
def text_families() -> tuple[str, ...]:
    """Matplotlib's default sans-serif font, then the installed CJK fonts for the glyphs it lacks.
    Matplotlib lists the system's fonts once and keeps the list, so a CJK font installed since is
    looked for among the system's font files (once per process, and only when none is listed)."""
    if not _cjk_listed():
        listed = {font.fname for font in fontManager.ttflist}
        for path in findSystemFonts():
            if path not in listed:
                with contextlib.suppress(Exception):  # a file FreeType cannot read is no font to fall back on
                    fontManager.addfont(path)
    return ("DejaVu Sans", *_cjk_listed())


def _cjk_listed() -> list[str]:
    installed = {font.name for font in fontManager.ttflist}
    return [family for family in CJK_FAMILIES if family in installed]


def _explanation_figure(words: list[str], scores: list[float], title: str, marked: int | None) -> Figure:
    """Words placed in pixels, measured with the Agg renderer, so lines wrap where they really end (no
    tight_layout afterwards)."""
    dpi, width, size = 100, 900, 12  # pixels, points
    margin, gap, line = 14, 16, 30  # pixels: the page's edge, between words (their boxes take 4 each side), between lines
    renderer = FigureCanvasAgg(Figure(dpi=dpi)).get_renderer()
    titles = _wrapped(title, FontProperties(size=size, weight="bold"), renderer, width - 2 * margin)
    places, x, y = [], margin, margin + line * (len(titles) + 0.6)
    for i, word in enumerate(words):
        font = FontProperties(size=size, weight="bold" if i == marked else "normal")
        w = renderer.get_text_width_height_descent(word, font, ismath=False)[0]
        if x > margin and x + w > width - margin:
            x, y = margin, y + line
        places.append((x, y))
        x += w + gap
    height = y + line + margin
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    for n, text in enumerate(titles):
        fig.text(margin / width, 1 - (margin + line * (n + 0.5)) / height, text, fontsize=size, fontweight="bold", parse_math=False)
    for i, (word, score, (x, y)) in enumerate(zip(words, scores, places)):
        fig.text(x / width, 1 - y / height, word, fontsize=size, parse_math=False, fontweight="bold" if i == marked else "normal",
                 bbox={"boxstyle": "round,pad=0.25", "facecolor": word_colour(score), "edgecolor": "black" if i == marked else "none"})
    if not words:
        fig.text(margin / width, 1 - y / height, "(no words)", fontsize=size, color="gray")
    fig.text(1 - margin / width, margin / height, "green: for the label explained, red: against; deeper: stronger",
             fontsize=size - 3, color="gray", ha="right")
    return fig


def _wrapped(text: str, font: FontProperties, renderer, limit: float) -> list[str]:
    """`text` in lines no wider than `limit` pixels, broken at spaces."""
    lines: list[str] = []
    for word in text.split():
        joined = f"{lines[-1]} {word}" if lines else word
        if lines and renderer.get_text_width_height_descent(joined, font, ismath=False)[0] <= limit:
            lines[-1] = joined
        else:
            lines.append(word)
    return lines


def explanation_html(words: list[str], scores: list[float], caption: str = "", marked: int | None = None) -> str:
    """One explanation as an HTML snippet: the words highlighted as in `plot_explanation`, each score
    shown on hover, the `marked` word underlined."""
    spans = []
    for i, (word, score) in enumerate(zip(words, scores)):
        r, g, b, a = word_colour(score)
        mark = "text-decoration:underline;font-weight:bold;" if i == marked else ""
        spans.append(f'<span title="{score:+.3f}" style="background:rgba({r * 255:.0f},{g * 255:.0f},{b * 255:.0f},{a});'
                     f'{mark}padding:1px 3px;border-radius:3px">{html.escape(word)}</span>')
    head = f"<p><b>{html.escape(caption)}</b></p>" if caption else ""
    return f'<div class="explanation">{head}<p style="line-height:2">{" ".join(spans)}</p></div>'


def _no_data(ax) -> None:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")


def save_figure(fig: Figure, path: Path) -> Path:
    """Lay out and write a bare Figure as PNG (creating its folder); every report's plots go through here.
    Its text (labels such as Chinese entity types too) draws with `text_families()`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _drawing(path) as families:  # covers what drawing creates too (new tick labels)
        for text in fig.findobj(Text):  # made before: their family was fixed when they were
            text.set_fontfamily(families)
        fig.tight_layout()
        FigureCanvasAgg(fig).print_png(path)
    return path


# ---------------------------------------------------------------------------------------
# Markdown


def write_report(
    path: Path,
    *,
    standard_name: str,
    task: str,
    scores: dict[str, dict],
    gate: GateResult,
    plots: list[Path],
    extra: dict | None = None,
    decision: dict | None = None,
    clean: dict[str, dict] | None = None,
    explanations: dict | None = None,
) -> Path:
    """Verdicts first (the gate, the champion), then headline metrics per split, per-type tables,
    confusion matrices, explanations, plots, facts. `clean` adds a `<split>_clean` headline row per split
    scored without the examples train also holds ({split: {examples, excluded, metrics}}). `explanations`
    is the evaluate stage's explanations.json ({split, steps, examples: [{caption, picture, attributions}]},
    pictures relative to the report's folder)."""
    path = Path(path)
    lines = [
        f"# Evaluation of {standard_name}",
        "",
        f"**Gate: {'PASSED' if gate.passed else 'FAILED'}**: {gate.reason}",
        "",
        *(_champion_lines(decision) if decision else []),
        f"Task: {task}",
        "",
        "## Headline metrics",
        "",
        *_headline_table(_with_clean_rows(scores, clean or {})),
    ]
    if clean:
        lines += [""] + [f"`{split}_clean`: the {c['examples']:,} {split} examples that train does not hold "
                         f"({c['excluded']:,} found in train by data-prep are left out; see its data_report.md)."
                         for split, c in clean.items()]
    for split, metrics in scores.items():
        detail_key, title = ("per_type", "Per entity type") if "per_type" in metrics else ("per_label", "Per label")
        if metrics.get(detail_key):
            lines += ["", f"## {title} ({split})", "", *_detail_table(metrics[detail_key])]
        if metrics.get("robustness"):
            lines += ["", f"## Robustness ({split})", "", "The split scored again with its text perturbed; "
                      "drop = the clean score minus the perturbed one, on the gate's metric.", ""]
            lines += _robustness_table(metrics["robustness"], headline(metrics))
        if "confusion_matrix" in metrics:
            lines += ["", f"## Confusion matrix ({split})", "", "Rows are gold labels, columns predicted.", ""]
            lines += _confusion_table(metrics["confusion_matrix"], metrics["labels"])
    if explanations:
        lines += _explanation_lines(explanations)
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{Path(plot).stem}]({_relative(plot, path.parent)})" for plot in plots]
    if extra:
        lines += ["", "## Details", ""]
        lines += [f"- **{key}**: {value}" for key, value in extra.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _explanation_lines(explanations: dict) -> list[str]:
    lines = ["", f"## Explanations ({explanations['split']})", "",
             f"Integrated gradients over the word embeddings ({explanations['steps']} steps from a baseline of [PAD] "
             "tokens): a green word pushed the model towards the label it predicted, a red word away from it; the deeper "
             "the colour, the larger its share (the strongest word of each example reads ±1). change is how far the "
             "label's logit moves from the baseline to the text; delta, the attributions' sum minus that change, is near 0 "
             "when the steps suffice (a large delta asks for more steps). The numbers are in explanations.json, the same "
             "pictures in explanations.html."]
    kinds = [example["kind"] for example in explanations["examples"]]
    lines += ["", f"{kinds.count('error')} error(s) and {kinds.count('success')} success(es) of the split, drawn with the standard's seed "
              "(for NER, one entity each: an error's wrong or missed entity, a success's found one)."]
    for example in explanations["examples"]:
        change, delta = example["attributions"]["change"], example["attributions"]["delta"]
        lines += ["", f"**{example['caption']}** (change {change:+.3g}, delta {delta:+.2g})", "",
                  f"![{Path(example['picture']).stem}]({example['picture']})"]
    return lines


def _champion_lines(decision: dict) -> list[str]:
    """Evaluation's champion decision, worded as what it is when the report is written: a keep is final,
    a promotion happens only if export then succeeds (parity, upload, registry), which this report
    cannot know. The final outcome is in the export stage's metrics.json and the run's summary.json."""
    if not decision["promote"]:
        return [f"**Champion: KEEP**: {decision['reason']}", ""]
    return [f"**Champion decision: PROMOTE, if export succeeds**: {decision['reason']}", "",
            "Export registers the model and moves the champion alias only after every format passes parity and "
            "the upload succeeds; `champion_outcome` in export's metrics.json (and `champion` in the run's "
            "summary.json) says what happened.", ""]


def _with_clean_rows(scores: dict[str, dict], clean: dict[str, dict]) -> dict[str, dict]:
    """Each split's row, followed by its `<split>_clean` row when there is one."""
    rows = {}
    for split, metrics in scores.items():
        rows[split] = metrics
        if split in clean:
            rows[f"{split}_clean"] = clean[split]["metrics"]
    return rows


def _headline_table(scores: dict[str, dict]) -> list[str]:
    """A row per split; a figure with a bootstrap interval reads `0.8835 (0.8741-0.8926)`, with a
    line under the table saying how the intervals were made."""
    rows = {split: headline(metrics) for split, metrics in scores.items()}
    columns = list(dict.fromkeys(key for row in rows.values() for key in row))
    table = table_header(["split", *columns])
    for split, row in rows.items():
        bounds = scores[split].get("intervals", {})
        table.append(table_row([split, *(_with_interval(row[c], bounds.get(c)) if c in row else "" for c in columns)]))
    confidence = next((metrics["intervals"]["confidence"] for metrics in scores.values() if "intervals" in metrics), None)
    if confidence:
        table += ["", f"In brackets: the {confidence:.0%} interval of each figure, from a bootstrap over the split's examples."]
    return table


def _with_interval(value: float, bounds: list[float] | None) -> str:
    return f"{value:.4f}" if bounds is None else f"{value:.4f} ({bounds[0]:.4f}-{bounds[1]:.4f})"


def _robustness_table(rows: dict[str, dict], clean: dict[str, float]) -> list[str]:
    columns = [key for key in clean if key in next(iter(rows.values()))]
    table = table_header(["text", *columns, "drop"])
    table.append(table_row(["as given", *(f"{clean[c]:.4f}" for c in columns), ""]))
    table += [table_row([name, *(f"{row[c]:.4f}" for c in columns), f"{row['drop']:+.4f}"]) for name, row in rows.items()]
    return table


def _detail_table(per_name: dict) -> list[str]:
    table = table_header(["name", "precision", "recall", "f1", "support"])
    for name, s in per_name.items():  # NER types come sorted, labels in the standard's order
        table.append(table_row([name, f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}", str(s["support"])]))
    return table


def _confusion_table(matrix: list[list[int]], labels: list[str]) -> list[str]:
    table = table_header(["gold \\ predicted", *labels])
    table += [table_row([label, *map(str, row)]) for label, row in zip(labels, matrix)]
    return table


# ---------------------------------------------------------------------------------------
# Markdown tables (the one writer behind every report and the model card)


def table_header(cells: list, align: str = "") -> list[str]:
    """A markdown table's header and rule. `align` has a letter per column: `r` right-aligns it (`---:`,
    for numbers); a column with `l` or no letter is left-aligned."""
    return [table_row(cells), table_row(["---:" if align[i:i + 1] == "r" else "---" for i in range(len(cells))])]


def table_row(cells: list) -> str:
    """One markdown table row; a `|` inside a cell is escaped, so it cannot split the cell."""
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def _relative(plot: Path, folder: Path) -> str:
    """Links relative to the report, so the folder can move (or be uploaded) as a whole."""
    return Path(os.path.relpath(Path(plot).resolve(), folder.resolve())).as_posix()


def self_contained(report: Path) -> str:
    """The report's markdown with its plots inlined as data URIs, for viewers that show one file only."""
    report = Path(report)

    def inline(match: re.Match) -> str:
        image = report.parent / match.group(2)
        if not image.is_file():
            return match.group(0)
        encoded = base64.b64encode(image.read_bytes()).decode()
        return f"![{match.group(1)}](data:image/png;base64,{encoded})"

    return re.sub(r"!\[([^\]]*)\]\(([^)]+\.png)\)", inline, report.read_text(encoding="utf-8"))
