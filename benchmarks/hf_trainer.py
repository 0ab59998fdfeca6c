"""The Hugging Face `Trainer` side of the benchmarks, written once: the features the stock collators
take, and `TrainingArguments` spelling an nlpstd fine-tuning recipe the way a user would.

Nothing here imports nlpstd, so it also runs where nlpstd's settings (pydantic) are not installed.
"""

from __future__ import annotations

from pathlib import Path

from transformers import TrainingArguments

MODEL_KEYS = ("input_ids", "token_type_ids", "labels")  # what DataCollatorFor{TokenClassification,WithPadding} take


def trainer_features(features: list[dict]) -> list[dict]:
    """nlpstd's encoded features without what the stock collators reject (word_ids)."""
    return [{k: f[k] for k in MODEL_KEYS if k in f} for f in features]


def trainer_arguments(recipe, out_dir: Path, *, seed: int, precision: str, use_cpu: bool,
                      max_steps: int | None = None, **overrides) -> TrainingArguments:
    """`recipe`: anything with the fields of nlpstd's `FinetuneSpec` (lr, batch_size, eval_batch_size,
    epochs, max_steps, weight_decay, warmup_ratio, grad_clip, group_by_length). No saving, no
    evaluation while training, no reporting; `overrides` go to `TrainingArguments` as they are.
    `precision` is what `nlpstd.runtime.resolve_precision` picked, so both sides train alike; `use_cpu` must
    be True on a CPU (resolved, not only an explicit `device: cpu`): transformers refuses bf16 without a GPU
    unless told it runs on the CPU, where it then trains in bf16 autocast as nlpstd does."""
    arguments = dict(
        output_dir=str(out_dir),
        learning_rate=recipe.lr,
        per_device_train_batch_size=recipe.batch_size,
        per_device_eval_batch_size=recipe.eval_batch_size,
        num_train_epochs=recipe.epochs,
        max_steps=max_steps or recipe.max_steps or -1,
        weight_decay=recipe.weight_decay,
        warmup_steps=recipe.warmup_ratio,  # transformers 5: a value below 1 is a share of the steps
        max_grad_norm=recipe.grad_clip or 0.0,  # 0 turns clipping off
        train_sampling_strategy="group_by_length" if recipe.group_by_length else "random",
        seed=seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=use_cpu,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=50,
        report_to=[],
    )
    return TrainingArguments(**{**arguments, **overrides})
