"""The checks every entry point makes before it writes anything: the standard, then each file it names.

`nlpstd run`, `validate`, `sweep`, `reproduce` and the pipeline runners all start here, so a bad
path, an unreadable file or a corpus file that does not decode fails the same way, with the same
located message, however the standard is run.
"""

from __future__ import annotations

from pathlib import Path

from nlpstd.data import corpus
from nlpstd.spec import Standard, check_files, load_standard


def preflight(standard_file: str | Path, check_corpus: bool = True) -> tuple[Standard, list[str]]:
    """The standard, and the files it names (data splits, and the pretraining corpus, read and decoded
    once, when pretraining is on and `check_corpus`: a run that skips data-prep need not read it)."""
    std = load_standard(standard_file)
    files = check_files(std, standard_file)
    if check_corpus and std.pretrain.enabled:
        files += corpus.check(std.pretrain.corpus)
    return std, files
