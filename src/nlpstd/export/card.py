"""The model card: README.md in the exported folder, so the model explains where it came from."""

from __future__ import annotations

from nlpstd.spec import Standard


def model_card(std: Standard, *, fingerprint: str, evaluation: dict, parameters: int, standard_file: str) -> str:
    scores = evaluation.get("scores", {})
    gate = evaluation.get("gate", {})
    metric_rows = [
        f"| {split} | " + " | ".join(f"{m.get(k, float('nan')):.4f}" for k in std.evaluate.metrics) + " |"
        for split, m in scores.items()
    ]
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
        + f", lr {recipe.lr:g}, batch {recipe.batch_size}, warm-up {recipe.warmup_ratio:g}, weight decay {recipe.weight_decay:g}, seed {std.seed}",
        "",
        "## Evaluation",
        "",
        "| split | " + " | ".join(std.evaluate.metrics) + " |",
        "| --- | " + " | ".join("---:" for _ in std.evaluate.metrics) + " |",
        *metric_rows,
        "",
        f"Gate: **{'passed' if gate.get('passed') else 'failed'}** ({gate.get('reason', 'not evaluated')}).",
        "",
        "## Use",
        "",
        "```python",
        f"from transformers import {auto_class}, AutoTokenizer",
        "",
        f'model = {auto_class}.from_pretrained("path/to/this/folder")',
        'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
        "```",
        "",
        'or `nlpstd predict path/to/this/folder "some text"`.',
        "",
        "## Intended use and limits",
        "",
        "- Trained and scored on the data named above only; scores on other domains will differ.",
        f"- Inputs longer than {std.data.max_length} sub-word tokens are truncated"
        + (" (words beyond the limit are predicted `O`)." if std.task == "token-classification" else "."),
        "- The test score is an estimate on one fixed split; it carries sampling error.",
        "",
        "## Reproduce",
        "",
        "```sh",
        f"nlpstd run {standard_file}",
        "```",
        "",
    ]
    return "\n".join(lines)


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
    return f"masked LM on {len(spec.corpus.files)} corpus entries, {length}, blocks of {spec.max_length} tokens"
