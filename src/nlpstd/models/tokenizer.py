"""A new WordPiece vocabulary trained on the pretraining corpus (for models built from scratch)."""

from __future__ import annotations

from collections.abc import Iterator

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from tokenizers.trainers import WordPieceTrainer
from transformers import BertTokenizerFast, PreTrainedTokenizerFast

from nlpstd.spec import TokenizerSpec
from nlpstd.train.tokenizing import sequential_tokenizers

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(documents: Iterator[str], spec: TokenizerSpec) -> PreTrainedTokenizerFast:
    """BERT's tokenizer recipe (normalize, split on whitespace and punctuation, WordPiece with `##`)."""
    tokenizer = Tokenizer(WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, lowercase=spec.lowercase, strip_accents=spec.lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    trainer = WordPieceTrainer(vocab_size=spec.vocab_size, min_frequency=spec.min_frequency,
                               special_tokens=SPECIAL_TOKENS, continuing_subword_prefix="##", show_progress=False)
    # Ties between equal counts are broken in hash order, so two trainings can differ in a few
    # pieces; training on one thread and sorting the ids keeps those differences small. The
    # pretrain stage saves the trained tokenizer before training, so a resumed run reuses it.
    with sequential_tokenizers():
        tokenizer.train_from_iterator(documents, trainer=trainer)
    tokenizer.model = WordPiece(_stable_ids(tokenizer.get_vocab()), unk_token="[UNK]")
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return BertTokenizerFast(tokenizer_object=tokenizer, do_lower_case=spec.lowercase, unk_token="[UNK]",
                             sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")


def _stable_ids(vocab: dict[str, int]) -> dict[str, int]:
    """Specials first, then the pieces sorted: the same corpus always gives the same ids."""
    pieces = sorted(set(vocab) - set(SPECIAL_TOKENS))
    return {token: index for index, token in enumerate(SPECIAL_TOKENS + pieces)}
