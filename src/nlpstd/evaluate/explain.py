"""Which words made the model say what it said: integrated gradients over the word embeddings.

Captum's `LayerIntegratedGradients` walks from a baseline, the same sub-words with every one but
[CLS]/[SEP] replaced by [PAD] (the text with its words taken out, its length and structure kept), to
the text itself, and adds up the gradient of one logit along the way. A sub-word's attribution is
its share of that logit's change, summed over the hidden dimension; a word's is the sum of its
sub-words', divided by the largest |word score| of the example so examples read on one scale.
Captum's convergence delta (the attributions' sum minus the logit's actual change) says how well
`steps` approximated the integral: near 0, beside the change, is good. A model whose logit jumps
somewhere along the path (small, saturated models do) needs more steps than a smooth one; the delta
is what tells.

A sequence classifier is explained for the class it predicts; a token classifier for the label it
predicts at one word's first sub-word, since captum needs one number per example.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from nlpstd.data.encode import encode_tokens
from nlpstd.inference import first_subwords
from nlpstd.spans import entity_spans

INTERNAL_BATCH = 32  # interpolation steps per forward pass: memory stays (32, T, hidden) however many steps


@dataclass
class Explanation:
    words: list[str]  # the words the model saw (one window, for a long NER text), in order
    scores: list[float]  # per word, in [-1, 1]: > 0 pushed towards `target`, < 0 away from it
    target: str  # the label explained: the one the model predicted
    probability: float  # the model's probability of `target` (at `word`, for token tasks)
    change: float  # how far the target's logit moves from the baseline to the text: what the attributions share
    delta: float  # captum's convergence delta, in logits: the attributions' sum minus `change`
    word: int | None = None  # token tasks: the index in `words` of the word whose label is explained

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------
# Attributions


def explain_text(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, text: str, *, id2label: dict[int, str],
                 steps: int, max_length: int, device: torch.device, text_pair: str | None = None) -> Explanation:
    """A sequence classifier's predicted class, explained by the words of `text` (and `text_pair`, after
    a [SEP] word scored 0). The text is cut as evaluation cuts it (the tokenizer's truncation side)."""
    encoding = tokenizer(text, text_pair, truncation=True, max_length=max_length, return_offsets_mapping=True)
    feature = {k: encoding[k] for k in ("input_ids", "token_type_ids") if k in encoding}
    # Words as the tokenizer splits them, numbered across both texts; a sub-word of no word (specials) is -1.
    sources, word_of, words, index_of, in_pair = (text, text_pair), [], [], {}, False
    for sequence, word, (start, end) in zip(encoding.sequence_ids(), encoding.word_ids(), encoding["offset_mapping"]):
        if word is None:
            word_of.append(-1)
            continue
        if (sequence, word) not in index_of:
            if sequence == 1 and not in_pair:
                words.append(tokenizer.sep_token or "|")  # where the pair's second text begins
                in_pair = True
            index_of[(sequence, word)] = len(words)
            words.append("")
            begins = start
        words[index_of[(sequence, word)]] = sources[sequence][begins:end]  # from its first sub-word to this one
        word_of.append(index_of[(sequence, word)])
    subword, label, probability, change, delta = _attribute(model, tokenizer, feature, None, steps, device)
    return Explanation(words, word_scores(subword, word_of, len(words)), id2label[label], probability, change, delta)


def explain_word(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, words: list[str], word: int, *,
                 id2label: dict[int, str], steps: int, max_length: int, device: torch.device,
                 stride: int | None = None) -> Explanation:
    """A token classifier's label at `words[word]` (at its first sub-word), explained by the words around
    it. Words are encoded as evaluation encodes them; a text longer than `max_length` is explained in
    the window where the word sits most centrally (as its prediction is taken), and only that window's
    words are returned."""
    encoded = encode_tokens(tokenizer, [{"tokens": words, "tags": ["O"] * len(words)}], ["O"], max_length, stride=stride)
    best = None  # (distance from the nearer edge, window, position) of the word's first sub-word
    for window, feature in enumerate(encoded.features):
        for position, w, centrality in first_subwords(feature["word_ids"]):
            if w == word and (best is None or centrality > best[0]):
                best = (centrality, window, position)
    if best is None:
        raise ValueError(f"word {word} ({words[word]!r}) is cut away by max_length {max_length}: nothing to explain")
    _, window, position = best
    feature = encoded.features[window]
    seen = [w for w in feature["word_ids"] if w >= 0]
    first, last = min(seen), max(seen)  # the window's words
    word_of = [w - first if w >= 0 else -1 for w in feature["word_ids"]]
    subword, label, probability, change, delta = _attribute(model, tokenizer, feature, position, steps, device)
    scores = word_scores(subword, word_of, last - first + 1)
    return Explanation(words[first:last + 1], scores, id2label[label], probability, change, delta, word - first)


def word_scores(subword: list[float], word_of: list[int], n_words: int) -> list[float]:
    """Sub-word attributions summed per word (`word_of[i]`: the word of sub-word i, -1 for none), then
    divided by the largest |word score|, so the strongest word reads ±1."""
    totals = [0.0] * n_words
    for score, word in zip(subword, word_of):
        if word >= 0:
            totals[word] += score
    largest = max((abs(total) for total in totals), default=0.0)
    return [round(total / largest, 4) if largest > 0 else 0.0 for total in totals]


def _attribute(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, feature: dict, position: int | None,
               steps: int, device: torch.device) -> tuple[list[float], int, float, float, float]:
    """(attribution per sub-word, predicted label id, its probability, the logit's change from the baseline,
    convergence delta) of one encoded example; `position` picks one token's logits (token tasks), None the
    sequence's. In fp32, eval mode: the gradients of a half-precision pass would be too coarse for the
    delta to mean anything."""
    from captum.attr import LayerIntegratedGradients  # a second to import: paid only when explaining

    model.eval()
    ids = torch.tensor([feature["input_ids"]], device=device)  # (1, T)
    keep = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id} - {None}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    baseline = torch.where(torch.isin(ids, torch.tensor(sorted(keep), device=device, dtype=ids.dtype)), ids, pad)
    extra = (torch.ones_like(ids),)  # attention mask: the baseline keeps the text's length
    if "token_type_ids" in feature:
        extra += (torch.tensor([feature["token_type_ids"]], device=device),)

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None):
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        logits = model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits.float()
        return logits if position is None else logits[:, position]  # (B, labels)

    with torch.autocast(device.type, enabled=False):
        with torch.no_grad():
            probs = forward(ids, *extra).softmax(-1)[0]  # (labels,)
        label = int(probs.argmax())
        with torch.enable_grad():  # a caller's no_grad would leave captum nothing to integrate
            integrated = LayerIntegratedGradients(forward, model.get_input_embeddings())
            attributions, delta = integrated.attribute(ids, baselines=baseline, target=label, additional_forward_args=extra,
                                                       n_steps=steps, internal_batch_size=INTERNAL_BATCH,
                                                       return_convergence_delta=True)  # (1, T, hidden), (1,)
    subword = attributions.sum(-1)[0].detach().float().cpu().tolist()  # (T,)
    delta = float(delta[0])
    return subword, label, round(float(probs[label]), 4), round(sum(subword) - delta, 6), delta


# ---------------------------------------------------------------------------------------
# Which examples the evaluate stage explains


@dataclass(frozen=True)
class Case:
    kind: str  # "error" or "success"
    index: int  # the example, in its split
    word: int | None = None  # token tasks: the word explained, the first of `entity`
    entity: tuple[str, int, int] | None = None  # token tasks: (label, first word, end word) of the entity
    found: bool = True  # token tasks: the model predicted `entity` (False: a gold entity it missed)


def pick_cases(gold: list, pred: list, task: str, examples: int, seed: int) -> list[Case]:
    """Up to `examples` errors and as many successes, drawn with `seed` (the same split and seed give the
    same cases), in split order. For NER an error is an example with a wrong entity, explained at it: a
    predicted entity gold does not have, else a gold one the model missed; a success is a correctly
    found entity."""
    errors, successes = [], []
    for i, (g, p) in enumerate(zip(gold, pred)):
        if task != "token-classification":
            (errors if g != p else successes).append(Case("error" if g != p else "success", i))
            continue
        found, truth = entity_spans(p), entity_spans(g)
        wrong = [(e, True) for e in found if e not in truth] + [(e, False) for e in truth if e not in found]
        if wrong:
            entity, predicted = wrong[0]
            errors.append(Case("error", i, entity[1], entity, predicted))
        right = [e for e in found if e in truth]
        if right:
            successes.append(Case("success", i, right[0][1], right[0]))
    rng = random.Random(seed)
    chosen = []
    for cases in (errors, successes):
        chosen += sorted(rng.sample(cases, min(examples, len(cases))), key=lambda case: case.index)
    return chosen
