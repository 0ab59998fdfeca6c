"""Long documents: windowed prediction against sentence-by-sentence prediction, one run.

Joins whole CoNLL-2003 test documents into single texts (words and sentences joined by single
spaces), far longer than the model's max_length, and labels each three ways with the same
exported model:

- sentence by sentence, each sentence alone (the reference: every sentence fits);
- the whole document in overlapping windows (`--stride`, as `data.stride` does);
- the whole document cut at max_length (what happens without windows).

It prints, per way, the entities found, how many of them the sentence-by-sentence reading also
found (same label, same character span; the share is of the larger of the two sets) and entity
F1 against the gold tags.

    python benchmarks/long_documents.py --model runs/conll2003-ner-quick/export/model --documents 5 --stride 32
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from nlpstd.predict import Predictor, decode_entities

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NLPSTD_DATA", REPO.parent / "shared" / "data"))

Sentence = list[tuple[str, str]]  # (word, gold tag)


def read_documents(path: Path) -> list[list[Sentence]]:
    """CoNLL documents (split at -DOCSTART-), each a list of sentences of (word, tag)."""
    documents: list[list[Sentence]] = []
    sentence: Sentence = []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if sentence:
                documents[-1].append(sentence)
            sentence = []
            if fields:
                documents.append([])
            continue
        sentence.append((fields[0], fields[-1]))
    return [d for d in documents if d]


def join(document: list[Sentence]) -> tuple[str, list[int], list[tuple[int, int]], list[str]]:
    """The document as one text: the start of each sentence, and every word's span and gold tag."""
    text, starts, offsets, tags = "", [], [], []
    for sentence in document:
        if text:
            text += " "
        starts.append(len(text))
        for i, (word, tag) in enumerate(sentence):
            if i:
                text += " "
            offsets.append((len(text), len(text) + len(word)))
            tags.append(tag)
            text += word
    return text, starts, offsets, tags


def spans(entities: list[dict], shift: int = 0) -> set[tuple[str, int, int]]:
    return {(e["label"], e["start"] + shift, e["end"] + shift) for e in entities}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="an exported NER model folder (export/model)")
    parser.add_argument("--test", default=str(DATA / "conll2003" / "test.txt"), help="a CoNLL file with -DOCSTART- lines")
    parser.add_argument("--documents", type=int, default=5, help="documents to join into long texts (default 5)")
    parser.add_argument("--stride", type=int, default=32, help="sub-words shared by neighbouring windows (default 32)")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    sentence_wise, windowed, cut = Predictor(args.model), Predictor(args.model), Predictor(args.model)
    windowed.stride, cut.stride = args.stride, None
    totals = {way: {"entities": 0, "agree": 0, "f1_hits": 0, "f1_total": 0} for way in ("sentences", "windows", "cut")}
    documents = read_documents(Path(args.test))[: args.documents]
    reference_count, gold_count, sub_words = 0, 0, []
    for document in documents:
        text, starts, offsets, tags = join(document)
        gold = spans(decode_entities(text, offsets, tags, [1.0] * len(tags)))
        sentences = [" ".join(word for word, _ in sentence) for sentence in document]
        reference = set().union(*(spans(r["entities"], start) for r, start in zip(sentence_wise(sentences), starts)))
        sub_words.append(len(windowed.tokenizer(text)["input_ids"]))
        reference_count += len(reference)
        gold_count += len(gold)
        for way, predictor in (("sentences", None), ("windows", windowed), ("cut", cut)):
            found = reference if predictor is None else spans(predictor([text])[0]["entities"])
            row = totals[way]
            row["entities"] += len(found)
            row["agree"] += len(found & reference)
            row["f1_hits"] += len(found & gold)
            row["f1_total"] += len(found) + len(gold)

    print(f"{len(documents)} documents of {min(sub_words)}-{max(sub_words)} sub-words (max_length {windowed.max_length}, "
          f"stride {args.stride}); {gold_count} gold entities, {reference_count} found sentence by sentence\n")
    print("| way | entities | same as sentence by sentence | entity F1 vs gold |")
    print("| --- | ---: | ---: | ---: |")
    results = {}
    for way, row in totals.items():
        agreement = row["agree"] / max(reference_count, row["entities"], 1)
        score = 2 * row["f1_hits"] / max(row["f1_total"], 1)
        results[way] = {**row, "agreement": agreement, "f1": score}
        print(f"| {way} | {row['entities']} | {row['agree']} ({agreement:.2%}) | {score:.4f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"documents": len(documents), "sub_words": sub_words, "stride": args.stride,
                                              "gold_entities": gold_count, "results": results}, indent=2))


if __name__ == "__main__":
    main()
