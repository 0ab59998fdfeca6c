"""Masked-LM pretraining pieces: blocks, masking, the gathered loss, the held-out measure, the tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

from conftest import corpus_text
from nlpstd.data.encode import IGNORE
from nlpstd.models.build import resolve_base
from nlpstd.models.tokenizer import SPECIAL_TOKENS, train_wordpiece
from nlpstd.spec import TokenizerSpec
from nlpstd.train.mlm import Blocks, HeldOut, MaskedLM, Masker, cached_blocks, make_blocks, masked_lm_loss


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_base("minilm-l6"))


@pytest.fixture(scope="module")
def blocks(tokenizer) -> Blocks:
    return make_blocks(tokenizer, [corpus_text(80, seed=1).split("\n\n")], max_length=32, cross_files=False, desc="test")


def test_blocks_carry_special_tokens_and_fit_max_length(tokenizer, blocks: Blocks):
    assert blocks.ids.shape[1] == 32 and blocks.lengths.max() == 32
    for row, length in zip(blocks.ids, blocks.lengths):
        assert row[0] == tokenizer.cls_token_id and row[length - 1] == tokenizer.sep_token_id
        assert (row[length:] == tokenizer.pad_token_id).all()


def test_blocks_stay_inside_a_file_unless_asked(tokenizer):
    files = [["alpha " * 20], ["omega " * 20]]  # 20 tokens each: one short block per file
    alpha, omega = tokenizer.convert_tokens_to_ids(["alpha", "omega"])
    apart = make_blocks(tokenizer, files, max_length=32, cross_files=False, desc="test")
    assert len(apart) == 2
    assert all(len({int(t) for t in row} & {alpha, omega}) == 1 for row in apart.ids)
    joined = make_blocks(tokenizer, files, max_length=32, cross_files=True, desc="test")
    assert any({alpha, omega} <= {int(t) for t in row} for row in joined.ids)


def test_masking_picks_the_share_asked_for_and_never_specials(tokenizer, blocks: Blocks):
    masker = Masker(tokenizer, probability=0.15, whole_words=False)
    ids = torch.from_numpy(blocks.ids.astype(np.int64))
    masked, positions, labels = masker(ids, torch.Generator().manual_seed(0))
    maskable = ~masker.special[ids]
    assert 0.12 < len(positions) / int(maskable.sum()) < 0.18
    assert maskable.flatten()[positions].all(), "a special or pad token was picked"
    assert torch.equal(labels, ids.flatten()[positions])
    replaced = masked.flatten()[positions]
    share_mask = (replaced == tokenizer.mask_token_id).float().mean()
    share_kept = (replaced == labels).float().mean()
    assert 0.74 < share_mask < 0.86 and 0.05 < share_kept < 0.16
    untouched = torch.ones(ids.numel(), dtype=torch.bool)
    untouched[positions] = False
    assert torch.equal(masked.flatten()[untouched], ids.flatten()[untouched])


def test_whole_word_masking_masks_every_piece_of_a_chosen_word(tokenizer):
    text = " ".join(["unbelievably", "antidisestablishmentarianism", "the"] * 30)
    ids = torch.tensor([tokenizer(text, truncation=True, max_length=128)["input_ids"]])
    masker = Masker(tokenizer, probability=0.3, whole_words=True)
    _, positions, _ = masker(ids, torch.Generator().manual_seed(0))
    picked = torch.zeros(ids.shape[1], dtype=torch.bool)
    picked[positions] = True
    pieces = tokenizer.convert_ids_to_tokens(ids[0])
    for i in range(1, len(pieces) - 1):
        if pieces[i].startswith("##"):
            assert picked[i] == picked[i - 1], f"piece {pieces[i]!r} split from its word"
    assert picked.any()


def test_masks_change_every_epoch_but_repeat_for_the_same_epoch_and_batch(tokenizer, blocks: Blocks):
    objective = MaskedLM(blocks, Masker(tokenizer, 0.15, False), micro_batch=4, seed=3)
    first = objective.collate([0, 1, 2, 3], epoch=0, position=0)
    again = objective.collate([0, 1, 2, 3], epoch=0, position=0)
    later = objective.collate([0, 1, 2, 3], epoch=1, position=0)
    assert torch.equal(first["mlm_positions"], again["mlm_positions"])
    assert not torch.equal(first["input_ids"], later["input_ids"])


def test_gathered_loss_equals_the_full_head_loss(tokenizer, blocks: Blocks):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    model = BertForMaskedLM(config).eval()
    objective = MaskedLM(blocks, Masker(tokenizer, 0.15, False), micro_batch=8, seed=0)
    batch = objective.collate(list(range(8)), epoch=0, position=0)
    labels = torch.full_like(batch["input_ids"], IGNORE).flatten()
    labels[batch["mlm_positions"]] = batch["mlm_labels"]
    with torch.no_grad():
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels.view_as(batch["input_ids"])).loss
        gathered = masked_lm_loss(model, batch)
    assert torch.allclose(full, gathered, atol=1e-5)


def test_the_masked_lm_loss_of_full_blocks_is_the_same_without_their_attention_mask(tokenizer, blocks: Blocks):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    model = BertForMaskedLM(config).eval()
    full = np.flatnonzero(blocks.lengths == blocks.lengths.max())[:8].tolist()
    batch = MaskedLM(blocks, Masker(tokenizer, 0.15, False), micro_batch=8, seed=0).collate(full, epoch=0, position=0)
    unmasked = {key: value for key, value in batch.items() if key != "attention_mask"}
    with torch.no_grad():
        assert torch.allclose(masked_lm_loss(model, batch), masked_lm_loss(model, unmasked), atol=1e-6)


def test_held_out_measure_is_fixed_between_calls(tokenizer, blocks: Blocks):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    model = BertForMaskedLM(config)
    held_out = HeldOut(blocks, Masker(tokenizer, 0.15, False), batch_size=8, seed=0, device=torch.device("cpu"), precision="fp32", max_blocks=10)
    first, second = held_out(model), held_out(model)
    assert held_out.blocks == 10 and first == second
    assert first["perplexity"] == pytest.approx(np.exp(first["loss"]))


def test_blocks_are_cached_by_corpus_and_tokenizer(tokenizer, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("NLPSTD_CACHE", str(tmp_path))
    texts = corpus_text(10).split("\n\n")
    documents = lambda: [("train", 0, text) for text in texts] + [("held_out", 1, texts[0])]  # noqa: E731
    first = cached_blocks(tokenizer, documents, 32, False, "fingerprint-a")
    assert len(list((tmp_path / "blocks").glob("*/blocks.json"))) == 2  # train and held-out
    again = cached_blocks(tokenizer, lambda: iter(()), 32, False, "fingerprint-a")  # the cache answers
    assert np.array_equal(first["train"].take(range(len(first["train"])), 32), again["train"].take(range(len(again["train"])), 32))
    cached_blocks(tokenizer, documents, 32, False, "fingerprint-b")
    assert len(list((tmp_path / "blocks").glob("*/blocks.json"))) == 4
    assert not list((tmp_path / "blocks").glob("*.tmp")), "no partial entry is left"


def test_a_failed_build_leaves_no_cache_entry(tokenizer, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("NLPSTD_CACHE", str(tmp_path))

    def broken():
        yield "train", 0, "some text " * 50
        raise OSError("the disk went away")

    with pytest.raises(OSError, match="went away"):
        cached_blocks(tokenizer, broken, 32, False, "fingerprint-a")
    assert not list((tmp_path / "blocks").iterdir())


def test_a_build_killed_before_it_finished_is_cleared_by_the_next(tokenizer, tmp_path: Path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("NLPSTD_CACHE", str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    cached_blocks(tokenizer, lambda: [("train", 0, "words " * 40)], 32, False, "fingerprint-a")
    done = next((tmp_path / "blocks").glob("*/blocks.json")).parent
    killed = done.with_name(f"{done.name}.{gone}.tmp")  # what a build killed by its process's death leaves
    (killed / "blocks-00000.arrow").parent.mkdir()
    (killed / "blocks-00000.arrow").write_bytes(b"half")
    running = done.with_name(f"{done.name}.{os.getppid()}.tmp")  # a build still under way elsewhere is left alone
    running.mkdir()
    for meta in (tmp_path / "blocks").glob("*/blocks.json"):
        meta.unlink()

    cached_blocks(tokenizer, lambda: [("train", 0, "words " * 40)], 32, False, "fingerprint-a")

    assert not killed.exists() and running.exists()


def test_trained_wordpiece_has_the_bert_specials_and_round_trips(tmp_path: Path):
    spec = TokenizerSpec.model_validate({"train": "wordpiece", "vocab_size": 300, "min_frequency": 1, "lowercase": False})
    trained = train_wordpiece(iter(corpus_text(200).split("\n\n")), spec)
    assert trained.convert_ids_to_tokens(list(range(5))) == SPECIAL_TOKENS
    assert len(trained) <= 300
    encoded = trained("The brave cat sees the river.")["input_ids"]
    assert encoded[0] == trained.cls_token_id and encoded[-1] == trained.sep_token_id
    trained.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path)("The brave cat")["input_ids"] == trained("The brave cat")["input_ids"]
    assert trained.convert_ids_to_tokens(encoded)[1] == "The", "lowercase: false keeps case"
