"""The model card: README.md in the exported folder, so the model explains where it came from."""

from __future__ import annotations

from nlpstd.evaluate.report import table_header, table_row
from nlpstd.export.serving import FOLDERS
from nlpstd.spec import Standard


def model_card(std: Standard, *, fingerprint: str, evaluation: dict, parameters: int, standard_file: str,
               parity: dict, sizes: dict[str, int], manifest: str | None) -> str:
    """Provenance, scores per split and per format, how to load and serve it, its limits, how to rebuild it."""
    scores = evaluation.get("scores", {})
    gate = evaluation.get("gate", {})
    metric_rows = [table_row([split, *(f"{m.get(k, float('nan')):.4f}" for k in std.evaluate.metrics)])
                   for split, m in scores.items()]
    recipe = std.finetune
    auto_class = "AutoModelForTokenClassification" if std.task == "token-classification" else "AutoModelForSequenceClassification"
    lines = [
        f"# {std.name}",
        "",
        std.description or f"A {std.task} model trained by nlpstd from the standard `{std.name}`.",
        "",
        "## Provenance",
        "",
        f"- Standard: `{std.name}` (spec hash `{std.spec_hash()}`)",
        f"- Base model: {_base(std)}",
        f"- Pretraining: {_pretraining(std)}",
        f"- Data fingerprint: `{fingerprint}` (format `{std.data.format}`)",
        f"- Task: {std.task}; labels: {', '.join(evaluation.get('labels', [])) or 'see config.json'}",
        f"- Parameters: {parameters:,}",
        f"- Recipe: {recipe.method}, {recipe.epochs} epoch(s)" + (f", at most {recipe.max_steps} steps" if recipe.max_steps else "")
        + f", lr {recipe.lr:g}, batch {recipe.batch_size}, warm-up {recipe.warmup_ratio:g}, weight decay {recipe.weight_decay:g}, "
        + (f"seeds {', '.join(map(str, recipe.seeds))} (one member each)" if recipe.seeds else f"seed {std.seed}"),
        *_compression(std),
        "",
        "## Evaluation",
        "",
        *table_header(["split", *std.evaluate.metrics], "l" + "r" * len(std.evaluate.metrics)),
        *metric_rows,
        "",
        f"Gate: **{'passed' if gate.get('passed') else 'failed'}** ({gate.get('reason', 'not evaluated')}).",
        "",
        "## Formats",
        "",
        f"Each format scored on {parity['examples']:,} {parity['split']} examples, against the torch model "
        f"(tolerances: max |Δlogit| {parity['tolerances']['max_abs_diff']:g} and agreement ≥ {parity['tolerances']['min_agreement']:.2%} "
        f"for ONNX fp32; {parity['metric']} at most {parity['tolerances']['max_metric_drop']:g} below torch for every format).",
        "",
        *table_header(["format", "file", "size", parity["metric"], "max abs logit diff", "agreement with torch"], "llrrrr"),
        *_format_rows(parity, sizes),
        "",
        "Agreement counts identical predictions: per word for token classification, per text for classification.",
        "",
        "## Use",
        "",
        *_ensemble(std),
        "```python",
        f"from transformers import {auto_class}, AutoTokenizer",
        "",
        f'model = {auto_class}.from_pretrained("path/to/this/folder")',
        'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
        "```",
        "",
        "or, batched, from a JSON Lines file of `{\"text\": ...}` objects, with any format:",
        "",
        "```sh",
        "nlpstd predict path/to/this/folder --file texts.jsonl --output predictions.jsonl",
        *(f"nlpstd predict path/to/this/folder/{FOLDERS[fmt]}/model.onnx --file texts.jsonl --output predictions.jsonl"
          for fmt in std.export.formats if fmt != "safetensors"),
        "```",
        "",
        *([f"On Kubernetes with KServe: `kubectl apply -f {manifest}` serves the `{std.export.serving.format}` format from "
           "the export destination.", ""] if manifest else []),
        "## Intended use and limits",
        "",
        "- Trained and scored on the data named above only; scores on other domains will differ.",
        _long_inputs(std),
        *(["- Text is tagged one character at a time (data.word_unit: character): an entity starts and ends at any "
           "character, and a Latin word is read letter by letter."] if std.data.word_unit == "character" else []),
        "- The test score is an estimate on one fixed split; it carries sampling error.",
        *(["- `onnx-int8` is quantized dynamically: its logits differ from fp32 by design; the table shows what that costs."]
          if "onnx-int8" in std.export.formats else []),
        "",
        "## Reproduce",
        "",
        "```sh",
        f"nlpstd run {standard_file}",
        "```",
        "",
    ]
    return "\n".join(lines)


def _format_rows(parity: dict, sizes: dict[str, int]) -> list[str]:
    rows = []
    for fmt, size in sizes.items():
        row = parity["formats"]["torch" if fmt == "safetensors" else fmt]
        file = "model.safetensors" if fmt == "safetensors" else f"{FOLDERS[fmt]}/model.onnx"
        diff = f"{row['max_abs_diff']:.1e}" if "max_abs_diff" in row else "(reference)"
        agree = f"{row['agreement']:.2%}" if "agreement" in row else "(reference)"
        rows.append(table_row([fmt, f"`{file}`", f"{size / 1e6:.1f} MB", f"{row[parity['metric']]:.4f}", diff, agree]))
    return rows


def _ensemble(std: Standard) -> list[str]:
    """How an ensemble (finetune.seeds) is served, and what plain transformers gets of it."""
    seeds = std.finetune.seeds
    if not seeds:
        return []
    return [f"This model is an ensemble of {len(seeds)} members, fine-tuned alike from seeds {', '.join(map(str, seeds))}, "
            "whose logits are averaged; its parameters above count every member. `nlpstd predict` on this folder and the "
            "ONNX graph serve all members averaged. Plain `transformers`, as below, loads the first member only (seed "
            f"{seeds[0]}); the others are in `members/<seed>/`.", ""]


def _compression(std: Standard) -> list[str]:
    """How the model was made smaller: a layer subset of the base, distillation, pruning."""
    lines = []
    keep = std.model.keep_layers
    if keep is not None:
        lines.append(f"- Layers: {'every other layer' if keep == 'every-other' else 'layers ' + ', '.join(map(str, keep))} "
                     "of the base kept")
    distill = std.finetune.distill
    if distill is not None:
        teacher = "this standard's own fine-tuned model" if distill.teacher == "self" else f"`{distill.teacher}`"
        start = ", starting from the teacher's own weights" if distill.init == "teacher" else ""
        lines.append(f"- Distilled from {teacher} (temperature {distill.temperature:g}, teacher weight {distill.alpha:g}, "
                     f"labels {1 - distill.alpha:g}{start})")
    compress = std.compress
    if compress is not None and compress.prune is not None:
        prune = compress.prune
        parts = [f"{share:.0%} of the {what}" for what, share in (("layers", prune.layers), ("feed-forward neurons", prune.ffn))
                 if share is not None]
        lines.append(f"- Pruned after fine-tuning: {' and '.join(parts)} removed (least important on validation batches)")
    if compress is not None and compress.factorize is not None:
        factorize = compress.factorize
        budget = f"rank {factorize.rank}" if factorize.rank else f"the rank keeping {factorize.energy:.0%} of the energy"
        lines.append(f"- Factorized after fine-tuning: the {' and '.join(factorize.modules)} matrices as two of {budget} "
                     "each (truncated SVD); plain transformers cannot load this folder, `nlpstd predict` and the ONNX "
                     "formats can")
    if compress is not None:
        lines.append(f"- Then recovered with {compress.recovery.steps} fine-tuning steps")
    return lines


def _base(std: Standard) -> str:
    if std.model.base:
        return f"`{std.model.base}`"
    shape = std.model.architecture()
    return f"BERT-{std.model.size} built from scratch ({shape['layers']} layers, hidden {shape['hidden']}, {shape['heads']} heads)"


def _pretraining(std: Standard) -> str:
    spec = std.pretrain
    if not spec.enabled:
        return "none (fine-tuned from the base)"
    length = f"{spec.max_steps} steps" if spec.max_steps else f"{spec.epochs} epoch(s)"
    sources = [f"{len(spec.corpus.files)} corpus entries"] if spec.corpus.files else []
    sources += ["the training examples' text"] if spec.corpus.training_text else []
    return f"masked LM on {' and '.join(sources)}, {length}, blocks of {spec.max_length} tokens"


def _long_inputs(std: Standard) -> str:
    """What happens to a text longer than the model takes: windows, or a cut and on which side."""
    data = std.data
    if data.stride:
        return (f"- Inputs longer than {data.max_length} sub-word tokens are read in overlapping windows "
                f"(sharing {data.stride} sub-words); each word is labelled from the window where it is most central.")
    if std.task == "token-classification":
        return f"- Inputs longer than {data.max_length} sub-word tokens are truncated (words beyond the limit are predicted `O`)."
    return f"- Inputs longer than {data.max_length} sub-word tokens are truncated at the {'end' if data.truncation_side == 'right' else 'start'}."
