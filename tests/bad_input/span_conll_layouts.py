"""Bad data in the nested span layouts of JSON Lines (entities keyed by type, and by type then mention)
and in the CoNLL layouts `data.conll` describes (columns, IOB1 and BIOES tags, document separators)."""

from __future__ import annotations

from tests.bad_input.case import CONLL, SPANS, Case, edited, run_standard


def case(id: str, standard: str, files: dict, file: str, line: int | None, field: str | None, message: str) -> Case:
    return Case(id, **run_standard(standard, files, file=file, line=line, field=field, message=message))


def with_data(standard: str, *settings: str) -> str:
    """`standard` with more lines in its data section."""
    return edited(standard, "model:\n", "".join(f"  {setting}\n" for setting in settings) + "model:\n")


def jsonl(*lines: str) -> str:
    return "".join(f"{line}\n" for line in lines)


# JSON Lines, entities keyed by type.
BY_TYPE = SPANS
BY_TYPE_FILES = {
    "train.jsonl": jsonl('{"text": "Peter lives in Paris", "entities": {"PER": [[0, 5]], "LOC": [[15, 20]]}}',
                         '{"text": "Anna left", "entities": {"PER": [[0, 4]]}}'),
    "dev.jsonl": jsonl('{"text": "Paris waits", "entities": {"LOC": [[0, 5]]}}'),
}


def by_type(train_line: str) -> dict:
    """The by-type files with train's second line replaced."""
    return {**BY_TYPE_FILES, "train.jsonl": jsonl('{"text": "Peter lives in Paris", "entities": {"PER": [[0, 5]], "LOC": [[15, 20]]}}', train_line)}


# JSON Lines, entities keyed by type then mention (CLUENER), inclusive ends.
BY_MENTION = with_data(SPANS, "entities_field: label", "span_end: inclusive")
BY_MENTION_FILES = {
    "train.jsonl": jsonl('{"text": "浙商银行企业信贷部叶老桂博士", "label": {"name": {"叶老桂": [[9, 11]]}, "company": {"浙商银行": [[0, 3]]}}}'),
    "dev.jsonl": jsonl('{"text": "叶老桂说", "label": {"name": {"叶老桂": [[0, 2]]}}}'),
}

# CoNLL in the two schemes converted to IOB2.
IOB1 = with_data(CONLL, "conll: {scheme: iob1}")
IOB1_FILES = {"train.txt": "EU I-ORG\nrejects O\nGerman I-MISC\ncall O\n\nPeter I-PER\nBlackburn I-PER\n",
              "dev.txt": "Peter I-PER\nspoke O\n\nEU I-ORG\n"}
BIOES = with_data(CONLL, "conll: {scheme: bioes}")
BIOES_FILES = {"train.txt": "EU S-ORG\nrejects O\nGerman S-MISC\ncall O\n\nPeter B-PER\nBlackburn E-PER\n",
               "dev.txt": "Peter S-PER\nspoke O\n\nEU S-ORG\n"}
CONLL_FILES = {"train.txt": "EU B-ORG\nrejects O\n\nPeter B-PER\n", "dev.txt": "Peter B-PER\n"}

CASES = [
    # -- JSON Lines, by type
    case("spans-by-type-pair-of-one-offset", BY_TYPE, by_type('{"text": "Anna left", "entities": {"PER": [[0]]}}'),
         "train.jsonl", 2, "entities.PER[0]", "a span here is a [start, end] pair, got [0]"),
    case("spans-by-type-offset-float", BY_TYPE, by_type('{"text": "Anna left", "entities": {"PER": [[0.5, 4]]}}'),
         "train.jsonl", 2, "entities.PER[0].start", "must be an integer, got 0.5"),
    case("spans-by-type-end-beyond-text", BY_TYPE, by_type('{"text": "Anna left", "entities": {"PER": [[0, 4]], "LOC": [[5, 30]]}}'),
         "train.jsonl", 2, "entities.LOC[0].end", "30 (exclusive) is beyond the end of the text (9 characters)"),
    case("spans-by-type-empty-span", BY_TYPE, by_type('{"text": "Anna left", "entities": {"PER": [[0, 4], [6, 6]]}}'),
         "train.jsonl", 2, "entities.PER[1].end", "empty span: start 6, end 6 (exclusive)"),
    case("spans-by-type-value-a-string", BY_TYPE, by_type('{"text": "Anna left", "entities": {"PER": "Anna"}}'),
         "train.jsonl", 2, "entities.PER", 'must be a list of [start, end] pairs, or a mapping from each mention to its pairs, got "Anna"'),
    case("spans-by-type-empty-type", BY_TYPE, by_type('{"text": "Anna left", "entities": {" ": [[0, 4]]}}'),
         "train.jsonl", 2, 'entities[" "]', 'an entity type must be a non-empty string, got " "'),
    case("spans-by-type-overlap-across-types", BY_TYPE, {**BY_TYPE_FILES, "dev.jsonl": jsonl('{"text": "Paris Peter", "entities": {"LOC": [[0, 7]], "PER": [[6, 11]]}}')},
         "dev.jsonl", 1, "entities.PER[0]", "overlaps entities.LOC[0] (characters 0-7)"),
    # -- JSON Lines, by type then mention
    case("spans-mention-not-in-text", BY_MENTION, {**BY_MENTION_FILES, "train.jsonl": jsonl('{"text": "浙商银行企业信贷部叶老桂博士", "label": {"name": {"叶老桂": [[8, 10]]}}}')},
         "train.jsonl", 1, "label.name.叶老桂[0]", "the text holds '部叶老' at characters 8-10 (inclusive end), not the mention '叶老桂'"),
    case("spans-mention-pair-not-in-a-list", BY_MENTION, {**BY_MENTION_FILES, "dev.jsonl": jsonl('{"text": "叶老桂说", "label": {"name": {"叶老桂": [0, 2]}}}')},
         "dev.jsonl", 1, "label.name.叶老桂[0]", "a span here is a [start, end] pair, got 0"),
    case("spans-mention-pairs-not-a-list", BY_MENTION, {**BY_MENTION_FILES, "dev.jsonl": jsonl('{"text": "叶老桂说", "label": {"name": {"叶老桂": "0-2"}}}')},
         "dev.jsonl", 1, "label.name.叶老桂", 'must be a list of [start, end] pairs, got "0-2"'),
    case("spans-mention-negative-start", BY_MENTION, {**BY_MENTION_FILES, "dev.jsonl": jsonl('{"text": "叶老桂说", "label": {"name": {"叶老桂": [[-1, 2]]}}}')},
         "dev.jsonl", 1, "label.name.叶老桂[0].start", "must be >= 0, got -1"),
    case("spans-mention-with-a-space-in-the-path", BY_MENTION, {**BY_MENTION_FILES, "dev.jsonl": jsonl('{"text": "叶老桂说", "label": {"name": {"叶 老桂": [[0, 2]]}}}')},
         "dev.jsonl", 1, 'label.name["叶 老桂"][0]', "not the mention '叶 老桂'"),
    # -- CoNLL, tag schemes
    case("conll-iob1-bioes-tag", IOB1, {**IOB1_FILES, "train.txt": "EU I-ORG\nrejects O\n\nPeter I-PER\nBlackburn E-PER\n"},
         "train.txt", 5, "tag", "'E-PER' is not an IOB1 tag (O, B-TYPE or I-TYPE)"),
    case("conll-bioes-unknown-tag", BIOES, {**BIOES_FILES, "dev.txt": "Peter S-PER\nspoke O\n\nEU U-ORG\n"},
         "dev.txt", 4, "tag", "'U-ORG' is not a BIOES tag"),
    case("conll-bioes-end-with-no-entity-open", BIOES, {**BIOES_FILES, "train.txt": "EU S-ORG\nrejects O\nGerman E-MISC\n\nPeter S-PER\n"},
         "train.txt", 3, "tag", "'E-MISC' continues a MISC entity, but none is open (it follows 'O')"),
    case("conll-bioes-entity-left-open", BIOES, {**BIOES_FILES, "train.txt": "EU S-ORG\n\nPeter B-PER\nBlackburn I-PER\n\nGerman S-MISC\n"},
         "train.txt", 4, "tag", "'I-PER' ends the sentence inside a PER entity"),
    case("conll-bioes-type-changes-inside-an-entity", BIOES, {**BIOES_FILES, "dev.txt": "Peter B-PER\nEU E-ORG\n"},
         "dev.txt", 2, "tag", "'E-ORG' follows 'B-PER' inside an open PER entity: BIOES closes it with E-PER first"),
    case("conll-iob2-file-read-as-bioes", BIOES, {**BIOES_FILES, "train.txt": "EU B-ORG\nrejects O\n"},
         "train.txt", 2, "tag", "'O' follows 'B-ORG' inside an open ORG entity"),
    # -- CoNLL, columns and documents
    case("conll-tag-column-beyond-the-line", with_data(CONLL, "conll: {tag_column: 3}"), CONLL_FILES,
         "train.txt", 1, "columns", "a token line needs at least 4 fields (the token in column 0, the tag in column 3: data.conll), got 2"),
    case("conll-token-and-tag-in-one-column", with_data(CONLL, "conll: {tag_column: -2}"), CONLL_FILES,
         "train.txt", 1, "columns", "data.conll.token_column (0) and tag_column (-2) are the same field of a 2-field line"),
    case("conll-tag-column-holds-a-pos-tag", with_data(CONLL, "conll: {tag_column: 1}"), {**CONLL_FILES, "train.txt": "EU NNP B-ORG\nrejects VBZ O\n"},
         "train.txt", 1, "tag", "'NNP' is not an IOB2 tag"),
    case("conll-docstart-a-token-line-without-separator", with_data(CONLL, "conll: {document_separator: null}"),
         {**CONLL_FILES, "train.txt": "-DOCSTART- -X- -X- O\n\nEU B-ORG\n"},
         "train.txt", 3, "columns", "wrong column count: expected 4 fields like line 1, got 2"),
    case("conll-only-custom-separators", with_data(CONLL, "conll: {document_separator: '#doc'}"), {**CONLL_FILES, "dev.txt": "#doc O\n\n#doc O\n"},
         "dev.txt", None, None, "no examples found: only blank lines and #doc markers, no token lines"),
]
