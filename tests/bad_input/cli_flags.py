"""Bad command-line flags and arguments: one line naming the flag, never a usage dump or a traceback.

Usage mistakes of every subcommand (argparse's own errors), then values nlpstd checks itself, then
`predict`'s inputs: its texts file, its output path, the texts on the command line. `predict`
cases run against a well-formed model folder, so the flag under test is the only thing wrong.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.bad_input.case import CONLL, CONLL_FILES, DIRECTORY, FIFO, Case
from tests.bad_input.model_folders import TEXT, TOKEN, exported

SWEEP = CONLL + "sweep:\n  params:\n    finetune.lr: [1.0e-4, 3.0e-4]\n"


def case(id: str, *argv: str, field: str | None, message: str, file: str | None = None, line: int | None = None,
         standard: str | None = CONLL, files: dict | None = None) -> Case:
    """`nlpstd ARGV` beside a well-formed standard and its data (unless `standard` is None)."""
    data = CONLL_FILES if standard is not None else {}
    return Case(id, argv, file, line, field, message, standard=standard, files={**data, **(files or {})})


def model(inputs: Path) -> None:
    shutil.copytree(exported(TOKEN), inputs / "model")


def predict(id: str, *argv: str, field: str | None, message: str, file: str | None = None, line: int | None = None,
            files: dict | None = None) -> Case:
    """`nlpstd predict {inputs}/model ARGV` with a well-formed fine-tuned folder there."""
    return Case(id, ("predict", "{inputs}/model", *argv), file, line, field, message, files=files or {}, setup=model)


CASES = [
    # -- argparse: one line, the argument first
    case("cli-no-command", field="command", message="required", standard=None),
    case("cli-unknown-command", "train", "{standard}", field="command", message="invalid choice: 'train'"),
    case("cli-unknown-flag", "run", "{standard}", "--out", "{out}", "--dry-run", field="--dry-run",
         message="unrecognized argument"),
    case("cli-ambiguous-flag", "run", "{standard}", "--n", "2", field="--n",
         message="ambiguous option, could match --no-tracking, --nproc"),
    case("run-standard-missing", "run", "--out", "{out}", field="standard", message="required"),
    case("run-nproc-not-a-number", "run", "{standard}", "--out", "{out}", "--nproc", "x", field="--nproc",
         message="invalid int value: 'x'"),
    case("run-out-without-a-value", "run", "{standard}", "--out", field="--out", message="expected one argument"),
    case("validate-two-standards", "validate", "{standard}", "{standard}", field=None, message="unrecognized argument"),
    case("stage-unknown-name", "stage", "train", "{standard}", "--out", "{out}", field="name",
         message="invalid choice: 'train' (choose from 'data-prep', 'pretrain', 'finetune', 'evaluate', 'export')"),
    case("stage-without-out", "stage", "data-prep", "{standard}", field="--out", message="required"),
    case("sweep-unknown-flag", "sweep", "{standard}", "--trials", "3", field="--trials", message="unrecognized argument"),
    case("trial-without-point", "trial", "{standard}", "--out", "{out}", field="--point", message="required"),
    case("trial-without-point-or-out", "trial", "{standard}", field="--point", message="required (so are --out)"),
    case("champion-without-action", "champion", field="action", message="required", standard=None),
    case("champion-unknown-action", "champion", "promote", "ner", field="action", message="invalid choice: 'promote'",
         standard=None),
    case("champion-rollback-without-name", "champion", "rollback", field="name", message="required", standard=None),
    case("reproduce-without-run-id", "reproduce", "--force", field="RUN_ID", message="required", standard=None),
    case("predict-batch-size-not-a-number", "predict", "{inputs}/model", "a text", "--batch-size", "many",
         field="--batch-size", message="invalid int value: 'many'", standard=None),
    case("predict-split-unknown", "predict", "{inputs}/model", "a text", "--split", "words", field="--split",
         message="invalid choice: 'words'", standard=None),
    # -- values nlpstd checks
    case("run-nproc-zero", "run", "{standard}", "--out", "{out}", "--nproc", "0", field="--nproc", message="at least 1"),
    case("run-stages-unknown", "run", "{standard}", "--out", "{out}", "--stages", "train", field="--stages",
         message="unknown stage 'train'"),
    case("trial-point-not-json", "trial", "{standard}", "--point", "{{bad", "--out", "{out}", field="--point",
         message="not JSON", standard=SWEEP),
    case("trial-point-not-an-object", "trial", "{standard}", "--point", "3", "--out", "{out}",
         field="--point", message="axes of this sweep are finetune.lr; got 3", standard=SWEEP),
    case("trial-point-null", "trial", "{standard}", "--point", "null", "--out", "{out}",
         field="--point", message="got null", standard=SWEEP),
    case("run-allow-other-inputs-takes-no-value", "run", "{standard}", "--out", "{out}", "--allow-other-inputs=yes",
         field="--allow-other-inputs", message="ignored explicit argument 'yes'"),
    case("trial-point-names-no-axis", "trial", "{standard}", "--point", '{{"finetune.epochs": 2}}', "--out", "{out}",
         field="--point", message="axes of this sweep are finetune.lr", standard=SWEEP),
    predict("predict-batch-size-zero", TEXT, "--batch-size", "0", field="--batch-size", message="must be at least 1, got 0"),
    predict("predict-batch-size-negative", "--batch-size", "-3", TEXT, field="--batch-size",
            message="must be at least 1, got -3"),
    predict("predict-threads-zero", TEXT, "--threads", "0", field="--threads", message="must be at least 1, got 0"),
    predict("predict-no-texts", "--json", field="predict", message="give texts as arguments or --file"),
    # -- predict: --output
    predict("predict-output-in-a-missing-folder", TEXT, "--output", "{out}/predictions.jsonl", field="--output",
            message="no folder"),
    predict("predict-output-onto-a-folder", TEXT, "--output", "{inputs}", field="--output", message="is a folder"),
    # -- predict: --file
    predict("predict-file-missing", "--file", "{inputs}/texts.jsonl", field="--file", message="missing"),
    predict("predict-file-a-folder", "--file", "{inputs}/texts", field="--file", message="a folder",
            files={"texts": DIRECTORY}),
    predict("predict-file-a-named-pipe", "--file", "{inputs}/texts.jsonl", field="--file", message="not a regular file",
            files={"texts.jsonl": FIFO}),
    predict("predict-file-empty", "--file", "{inputs}/texts.txt", field="--file", message="holds no texts",
            files={"texts.txt": "\n  \n"}),
    predict("predict-file-not-utf8", "--file", "{inputs}/texts.txt", file="texts.txt", line=2, field="text",
            message="not UTF-8 (byte 0xfc)", files={"texts.txt": b"Peter flew to Paris .\nZ\xfcrich waits .\n"}),
    predict("predict-jsonl-line-not-json", "--file", "{inputs}/texts.jsonl", file="texts.jsonl", line=2, field="text",
            message="not a JSON object", files={"texts.jsonl": '{"text": "Anna"}\n{"text": "Peter\n'}),
    predict("predict-jsonl-line-without-text", "--file", "{inputs}/texts.jsonl", file="texts.jsonl", line=1, field="text",
            message='a string "text" field', files={"texts.jsonl": '{"id": 1, "sentence": "Anna"}\n'}),
    predict("predict-jsonl-lone-surrogate", "--file", "{inputs}/texts.jsonl", file="texts.jsonl", line=3, field="text",
            message="half of a UTF-16 pair", files={"texts.jsonl": '{"text": "Anna"}\n\n{"text": "Peter \\ud800"}\n'}),
    predict("predict-text-argument-not-utf8", "Z\udcfcrich", field="texts",
            message="text 1: byte 0xfc at character 2 is not UTF-8"),
]
