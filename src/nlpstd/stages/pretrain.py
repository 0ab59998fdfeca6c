"""Stage 2, pretrain: masked-language-model training on the prepared corpus.

Continues a base checkpoint (`model.base`) or builds a BERT of `model.size` from scratch with
a WordPiece vocabulary trained on the corpus. The output folder is a Hugging Face model with
its MLM head and tokenizer; the fine-tuning stage starts from it. Rerunning after an
interruption resumes from the last checkpoint in the stage's partial folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerFast

from nlpstd import runtime
from nlpstd.cache import cache_dir
from nlpstd.data import corpus as corpus_mod
from nlpstd.data import prepare
from nlpstd.data import report as data_report
from nlpstd.fsutil import replace_dir
from nlpstd.jsonio import read_json, write_json
from nlpstd.models.build import build_mlm_model, count_parameters, load_tokenizer, resolve_base, write_model_info
from nlpstd.models.tokenizer import train_wordpiece
from nlpstd.spec import Standard
from nlpstd.stages import identity
from nlpstd.stages.context import begin
from nlpstd.stages.output import staged
from nlpstd.stages.training import log_training, write_training
from nlpstd.tracking import Tracker
from nlpstd.train.config import LoopConfig, Selection
from nlpstd.train.loop import micro_batch, train
from nlpstd.train.mlm import HeldOut, MaskedLM, Masker, cached_blocks, tokenizer_fingerprint

log = logging.getLogger(__name__)


def run(std: Standard, data_dir: Path, out_dir: Path, tracker: Tracker | None = None, work_dir: Path | None = None,
        allow_other_inputs: bool = False) -> dict:
    """Writes `model/` (Hugging Face folder with MLM head and tokenizer), `history.json`, `loss.png`,
    `stage.json` and `metrics.json` (parameters, held-out loss and perplexity before and after).
    Checkpoints go to `work_dir` when given (see `staged`), else beside `out_dir`."""
    ctx = begin(std, data_dir, tracker, allow_other_inputs=allow_other_inputs)
    tracker, device, precision, spec = ctx.tracker, ctx.device, ctx.precision, std.pretrain
    corpus = corpus_mod.load(Path(data_dir) / "corpus")
    training = _training_text(corpus, data_dir)

    with staged(out_dir, keep_on_error=True, work_dir=work_dir) as tmp:
        # -- tokenizer and blocks (both cached; a checkpoint made with another vocabulary is not resumed);
        #    under torchrun the main process fills the caches on every core, the others then map them
        with runtime.main_first():
            tokenizer = _tokenizer(std, corpus, training)
            blocks = cached_blocks(tokenizer, lambda: corpus.stream(training), spec.max_length, spec.corpus.cross_file_blocks,
                                   corpus.fingerprint, workers=runtime.cores(), total=sum(corpus.documents.values()))
        train_blocks, held_blocks = blocks["train"], blocks["held_out"]
        resume_key = f"{std.spec_hash()}:{corpus.fingerprint}:{tokenizer_fingerprint(tokenizer)[:16]}"
        fit = _vocabulary_fit(std, tokenizer, data_dir) if std.tokenizer.train and runtime.is_main() else {}
        log.info(f"pretrain: {len(train_blocks):,} training blocks, {len(held_blocks):,} held-out blocks of up to {spec.max_length} tokens")

        # -- model
        model = build_mlm_model(std.model, tokenizer)
        total_params, _ = count_parameters(model)
        source = std.model.base or f"BERT-{std.model.size} from scratch {std.model.architecture()}"
        log.info(f"pretrain: {spec.objective} on {source} ({total_params:,} parameters) on {device}, {precision}")
        tracker.log_metrics({"parameters": total_params})

        # -- held-out perplexity before training (kept, so a resumed run reports the true start)
        masker = Masker(tokenizer, spec.mlm_probability, spec.whole_word_masking)
        held_out = HeldOut(held_blocks, masker, spec.eval_batch_size, std.seed, device, precision, spec.max_eval_blocks)
        with runtime.main_first():
            initial = _initial_eval(model.to(device), held_out, tmp / "initial_eval.json", resume_key)
        log.info(f"pretrain: held-out loss {initial['loss']:.4f}, perplexity {initial['perplexity']:.1f} before training")

        # -- train
        loop = LoopConfig.of(spec)
        objective = MaskedLM(train_blocks, masker, micro_batch(loop, "pretrain"), std.seed)
        result = train(model, objective, held_out, loop, ctx.engine, Selection("loss", maximize=False),
                       work_dir=tmp, identity=resume_key, tracker=tracker, desc="pretrain")
        if not runtime.is_main():  # the main process writes the model
            return {}
        final = held_out(model)

        # -- outputs
        model.to("cpu").save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "model")
        write_model_info(tmp / "model", task="masked-lm", max_length=spec.max_length, standard=std.name,
                         spec_hash=std.spec_hash(), fingerprint=corpus.fingerprint)
        identity.write(tmp, "pretrain", std, ctx.data_fingerprint, corpus_fingerprint=corpus.fingerprint)
        metrics = write_training(tmp, result, batch_size=spec.batch_size, started=ctx.started, device=device, precision=precision, extra={
            "initial_heldout_loss": round(initial["loss"], 4),
            "initial_heldout_perplexity": round(initial["perplexity"], 3),
            "heldout_loss": round(final["loss"], 4),
            "heldout_perplexity": round(final["perplexity"], 3),
            "perplexity_ratio": round(initial["perplexity"] / final["perplexity"], 3),
            "train_blocks": len(train_blocks),
            "heldout_blocks": held_out.blocks,
            "parameters": total_params,
            "vocab_size": len(tokenizer),
            **{f"{split}_unknown_share": figures["unknown_share"] for split, figures in fit.items()},
            **{f"{split}_unknown_char_share": figures["unknown_char_share"] for split, figures in fit.items()},
        })

    log_training(tracker, out_dir, metrics)
    log.info(f"pretrain: held-out perplexity {metrics['initial_heldout_perplexity']:.1f} -> {metrics['heldout_perplexity']:.1f} "
             f"({metrics['perplexity_ratio']:.1f}x lower) after {metrics['steps']} steps")
    return metrics


def _vocabulary_fit(std: Standard, tokenizer: PreTrainedTokenizerFast, data_dir: Path) -> dict[str, dict]:
    """How well a vocabulary trained here reads the task's splits, as the data report measures a base's
    (data-prep runs before this vocabulary exists, so its report cannot): per split, the share of
    sub-words that are [UNK] and of characters no piece but [UNK] covers."""
    prepared = prepare.load(Path(data_dir))
    fit = {split: data_report.vocabulary_fit(tokenizer, records, word_unit=std.data.word_unit)
           for split, records in prepared.splits.items()}
    shares = ", ".join(f"{split} {figures['unknown_share']:.2%}" for split, figures in fit.items())
    log.info(f"pretrain: the trained vocabulary ({len(tokenizer):,} pieces) reads as {tokenizer.unk_token}: {shares} of the sub-words")
    return fit


def _training_text(corpus: corpus_mod.Corpus, data_dir: Path) -> corpus_mod.TrainingText | None:
    """The training examples data-prep saved, when the corpus includes their text (`training_text`)."""
    if not any(described["source"] == corpus_mod.TRAINING_TEXT for described in corpus.files):
        return None
    prepared = prepare.load(Path(data_dir))
    return corpus_mod.TrainingText(prepared.sources["train"], prepared.splits["train"])


def _tokenizer(std: Standard, corpus: corpus_mod.Corpus, training: corpus_mod.TrainingText | None) -> PreTrainedTokenizerFast:
    """The base's tokenizer, or one trained on the training documents.

    Training breaks ties in hash order, so two trainings on the same corpus can differ in a few
    pieces; the trained tokenizer is therefore cached by corpus and settings, and a rerun (or a
    resumed run) on this machine uses the very same vocabulary.
    """
    if std.tokenizer.train is None:
        return load_tokenizer(resolve_base(std.model.base))
    settings = json.dumps(std.tokenizer.model_dump(mode="json", by_alias=True), sort_keys=True)
    key = hashlib.sha256(f"{corpus.fingerprint}:{settings}".encode()).hexdigest()[:24]
    folder = cache_dir() / "tokenizers" / key
    if not (folder / "tokenizer.json").is_file():
        _train_tokenizer(std, corpus.stream(training), folder)
    return AutoTokenizer.from_pretrained(folder, trust_remote_code=False)  # loaded the same way on every run: a stable fingerprint


def _train_tokenizer(std: Standard, stream: Iterator[tuple[str, int, str]], folder: Path) -> None:
    """A vocabulary trained on the training documents, read as a stream (held-out ones left out)."""
    tokenizer = train_wordpiece((document for part, _, document in stream if part == "train"), std.tokenizer)
    tokenizer.model_max_length = std.pretrain.max_length
    log.info(f"pretrain: trained a WordPiece vocabulary of {len(tokenizer):,} pieces")
    tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    tokenizer.save_pretrained(tmp)
    replace_dir(tmp, folder)


def _initial_eval(model, held_out: HeldOut, path: Path, resume_key: str) -> dict[str, float]:
    if path.is_file():
        saved = read_json(path)
        if saved.get("identity") == resume_key:
            return saved["scores"]
    scores = held_out(model)
    write_json(path, {"identity": resume_key, "scores": scores})
    return scores
