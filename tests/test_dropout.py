"""Dropout from random bits on the CPU: the drop rate and expected value of torch's dropout, masks
reproducible from the seed, attention that matches SDPA, and a model left as it was."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForTokenClassification

import nlpstd.train.dropout as dropout_module
from nlpstd.train.dropout import ATTENTION, UNITS, BitDropout, bit_dropout, bit_dropout_attention, using_bit_dropout


def tiny_bert(dropout: float = 0.1) -> BertForTokenClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=32, num_labels=3, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout, attn_implementation="sdpa")
    return BertForTokenClassification(config)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_the_drop_rate_is_p(p: float):
    torch.manual_seed(0)
    out = bit_dropout(torch.ones(1_000_000), p)

    dropped = (out == 0).float().mean().item()
    assert dropped == pytest.approx(p, abs=0.002)  # 1,000,000 draws: the standard error is at most 0.0005


def test_kept_values_are_scaled_so_the_expected_value_is_kept():
    torch.manual_seed(0)
    out = bit_dropout(torch.ones(1_000_000), 0.1)

    kept = out[out != 0]
    assert torch.all(kept == UNITS / (UNITS - round(0.1 * UNITS)))
    assert out.mean().item() == pytest.approx(1.0, abs=0.005)


def test_the_masks_follow_the_seed():
    x = torch.ones(4096)
    torch.manual_seed(7)
    first = bit_dropout(x, 0.3)
    torch.manual_seed(7)
    again = bit_dropout(x, 0.3)
    torch.manual_seed(8)
    other = bit_dropout(x, 0.3)

    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_consecutive_masks_differ():
    torch.manual_seed(0)
    x = torch.ones(4096)

    assert not torch.equal(bit_dropout(x, 0.3), bit_dropout(x, 0.3))


def test_an_odd_sized_tensor_keeps_its_shape_and_dtype():
    x = torch.ones(3, 5, 7, dtype=torch.bfloat16)

    out = bit_dropout(x, 0.2)

    assert out.shape == x.shape and out.dtype == torch.bfloat16


def test_a_probability_below_the_resolution_drops_nothing_and_one_drops_all():
    x = torch.randn(100)

    assert bit_dropout(x, 1 / (4 * UNITS)) is x
    assert torch.count_nonzero(bit_dropout(x, 1.0)) == 0


def test_the_gradient_passes_only_the_kept_elements_scaled():
    torch.manual_seed(0)
    x = torch.ones(1000, requires_grad=True)

    out = bit_dropout(x, 0.5)
    out.sum().backward()

    assert torch.equal(x.grad, out.detach())  # d(out)/dx is the scaled mask itself, as out = x·mask here


def test_the_layer_is_the_identity_in_eval_mode():
    layer = BitDropout(0.5).eval()
    x = torch.randn(10)

    assert layer(x) is x


def encoder_attention() -> torch.nn.Module:
    """What the attention function reads of the calling layer: its mode, and that it is not causal."""
    module = torch.nn.Module().train()
    module.is_causal = False
    return module


def test_attention_without_drops_matches_sdpa_with_a_padding_mask():
    torch.manual_seed(0)
    query, key, value = (torch.randn(2, 3, 5, 4) for _ in range(3))
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[1, ..., 3:] = False  # the second example's last two tokens are padding
    module = encoder_attention()

    out, _ = bit_dropout_attention(module, query, key, value, mask, dropout=1 / (4 * UNITS))  # rounds to no drop

    expected = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask).transpose(1, 2)
    torch.testing.assert_close(out, expected)


def test_attention_drops_probabilities_while_training():
    torch.manual_seed(0)
    query, key, value = (torch.randn(2, 3, 5, 4) for _ in range(3))
    module = encoder_attention()

    dropped, _ = bit_dropout_attention(module, query, key, value, None, dropout=0.5)
    plain, _ = bit_dropout_attention(module.eval(), query, key, value, None, dropout=0.5)  # eval: no dropout

    assert not torch.allclose(dropped, plain)
    torch.testing.assert_close(plain, torch.nn.functional.scaled_dot_product_attention(query, key, value).transpose(1, 2))


def test_training_attention_without_dropout_bypasses_sdpa(monkeypatch):
    """SDPA's fused CPU kernel trains slower than the arithmetic here, so training never calls it,
    not even when there is no attention dropout; evaluation does."""
    calls = []
    monkeypatch.setattr(dropout_module, "sdpa_attention_forward", lambda *args, **kwargs: calls.append(1) or (None, None))
    torch.manual_seed(0)
    query, key, value = (torch.randn(2, 3, 5, 4) for _ in range(3))
    module = encoder_attention()

    out, _ = bit_dropout_attention(module, query, key, value, None, dropout=0.0)
    bit_dropout_attention(module.eval(), query, key, value, None, dropout=0.0)

    assert calls == [1]  # the evaluation call only
    torch.testing.assert_close(out, torch.nn.functional.scaled_dot_product_attention(query, key, value).transpose(1, 2))


def test_a_model_trains_with_bit_masks_inside_and_is_as_it_was_after():
    model = tiny_bert()

    with using_bit_dropout(model):
        layers = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
        attention = model.config._attn_implementation
        model.train()(input_ids=torch.randint(0, 64, (4, 8)), labels=torch.randint(0, 3, (4, 8))).loss.backward()

    assert layers and all(type(m) is BitDropout for m in layers)
    assert attention == ATTENTION
    assert all(type(m) is torch.nn.Dropout for m in model.modules() if isinstance(m, torch.nn.Dropout))
    assert model.config._attn_implementation == "sdpa"
    assert all(param.grad is not None for param in model.classifier.parameters())


def test_eval_outputs_are_unchanged_inside():
    model = tiny_bert().eval()
    ids = torch.randint(0, 64, (3, 8))
    mask = torch.ones(3, 8, dtype=torch.long)
    mask[0, 5:] = 0
    before = model(input_ids=ids, attention_mask=mask).logits

    with using_bit_dropout(model):
        inside = model(input_ids=ids, attention_mask=mask).logits

    torch.testing.assert_close(inside, before)


def test_a_model_with_eager_attention_keeps_it():
    model = tiny_bert()
    model.config._attn_implementation = "eager"

    with using_bit_dropout(model):
        assert model.config._attn_implementation == "eager"
