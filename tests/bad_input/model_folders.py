"""Bad model folders given to `predict`: config, weights, tokenizer, nlpstd.json, ONNX, remote code.

Each case copies a well-formed fine-tuned folder (a tiny random BERT, saved as export saves one)
into `inputs/model` and breaks one thing in it. A folder that asks for its own code carries a
Python file that would leave a file behind if it ran; the runner's "nothing new beside the inputs"
check proves it never does.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.bad_input.case import Case

TOKEN, CLASS = "token-classification", "sequence-classification"
LABELS = {TOKEN: ["O", "B-PER", "I-PER"], CLASS: ["neg", "pos"]}
TEXT = "Peter Smith flew to Paris ."
DELETE = object()  # a config value that `config` removes
# Run on import, the module writes `<its name>.ran` beside itself: what a remote-code case must never leave.
PAYLOAD = "import pathlib\npathlib.Path(__file__).with_suffix('.ran').write_text('ran')\n"

Edit = Callable[[Path], None]


# ---------------------------------------------------------------------------------------
# The well-formed folders, built once per process


@functools.cache
def exported(task: str) -> Path:
    """A fine-tuned folder as export writes it: config.json with the label map, model.safetensors,
    the MiniLM tokenizer, nlpstd.json. One layer, 32 wide: built in a second or two."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertForTokenClassification
    from transformers.utils import logging as hf_logging

    from nlpstd.models.build import resolve_base

    root = Path(tempfile.mkdtemp(prefix="nlpstd-bad-models-"))
    atexit.register(shutil.rmtree, root, True)
    folder = root / task
    tokenizer = AutoTokenizer.from_pretrained(resolve_base("minilm-l6"))
    labels = LABELS[task]
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, id2label=dict(enumerate(labels)),
                        label2id={label: i for i, label in enumerate(labels)})
    torch.manual_seed(0)
    head = BertForTokenClassification if task == TOKEN else BertForSequenceClassification
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # stderr is the cases' to check
    try:
        head(config).save_pretrained(folder)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(folder)
    info = {"task": task, "max_length": 64, "stride": None, "truncation_side": "right", "iob_repair": "start"}
    (folder / "nlpstd.json").write_text(json.dumps(info))
    return folder


@functools.cache
def onnx_graph(inputs: tuple[tuple[str, str], ...] = (("input_ids", "INT64"),), labels: int = 3,
               shape: tuple[int, ...] | None = None) -> bytes:
    """A small ONNX graph standing in for an export: the first input, cast to float, broadcast to
    logits (batch, sequence, `labels`); with `shape`, reshaped to it instead, which fails at run time
    unless the batch happens to have that many tokens."""
    from onnx import TensorProto, helper

    first = inputs[0][0]
    nodes = [helper.make_node("Cast", [first], ["ids"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["ids", "axis"], ["column"])]
    constants = [helper.make_tensor("axis", TensorProto.INT64, [1], [2])]
    if shape is None:
        nodes.append(helper.make_node("Expand", ["column", "width"], ["logits"]))
        constants.append(helper.make_tensor("width", TensorProto.INT64, [3], [1, 1, labels]))
    else:
        nodes.append(helper.make_node("Reshape", ["column", "shape"], ["logits"]))
        constants.append(helper.make_tensor("shape", TensorProto.INT64, [len(shape)], list(shape)))
    graph = helper.make_graph(
        nodes, "stand-in",
        [helper.make_tensor_value_info(name, getattr(TensorProto, kind), ["batch", "sequence"]) for name, kind in inputs],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence", labels])],
        initializer=constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8  # what every ONNX Runtime release reads
    return model.SerializeToString()


# ---------------------------------------------------------------------------------------
# Edits: each breaks one thing in a copy of the folder


def edited_json(name: str, **changes) -> Edit:
    """The JSON object in `name` with keys set (or removed, with DELETE)."""

    def edit(folder: Path) -> None:
        data = json.loads((folder / name).read_text(encoding="utf-8"))
        for key, value in changes.items():
            if value is DELETE:
                data.pop(key, None)
            else:
                data[key] = value
        (folder / name).write_text(json.dumps(data), encoding="utf-8")

    return edit


def config(**changes) -> Edit:
    return edited_json("config.json", **changes)


def info(**changes) -> Edit:
    return edited_json("nlpstd.json", **changes)


def tokenizer(**changes) -> Edit:
    return edited_json("tokenizer.json", **changes)


def write(name: str, content: str | bytes) -> Edit:
    def edit(folder: Path) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(path):
            path.unlink()
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))

    return edit


def remove(*names: str) -> Edit:
    def edit(folder: Path) -> None:
        for name in names:
            (folder / name).unlink()

    return edit


def fifo(name: str) -> Edit:
    """`name` replaced by a named pipe: a reader that opens it waits for a writer that never comes."""

    def edit(folder: Path) -> None:
        path = folder / name
        if os.path.lexists(path):
            path.unlink()
        os.mkfifo(path)

    return edit


def folder_named(name: str) -> Edit:
    def edit(folder: Path) -> None:
        (folder / name).unlink()
        (folder / name).mkdir()

    return edit


def truncated(name: str, keep: float) -> Edit:
    def edit(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: int(len(data) * keep)])

    return edit


def safetensors(header: dict, data: bytes = b"") -> bytes:
    """A safetensors file from its parts: header length (8 bytes, little-endian), JSON header, data."""
    text = json.dumps(header).encode("utf-8")
    return len(text).to_bytes(8, "little") + text + data


def onnx_file(name: str, **graph) -> Edit:
    """`name` holding `onnx_graph(**graph)` (built when the case runs, so collecting needs no onnx)."""

    def edit(folder: Path) -> None:
        write(name, onnx_graph(**graph))(folder)

    return edit


def onnx_only(**graph) -> Edit:
    """The folder with model.onnx in place of model.safetensors, as export's onnx/ folder holds it."""
    return both(remove("model.safetensors"), onnx_file("model.onnx", **graph))


def onnx_folder() -> Edit:
    """An `onnx/` folder as export writes it: model.onnx with config, tokenizer and nlpstd.json beside it."""

    def edit(folder: Path) -> None:
        (folder / "onnx").mkdir()
        for path in folder.iterdir():
            if path.is_file() and path.name != "model.safetensors":
                shutil.copy2(path, folder / "onnx" / path.name)
        onnx_file("onnx/model.onnx")(folder)

    return edit


def both(*edits: Edit) -> Edit:
    def edit(folder: Path) -> None:
        for each in edits:
            each(folder)

    return edit


def case(id: str, edit: Edit, file: str | None, field: str | None, message: str, *, line: int | None = None,
         task: str = TOKEN, model: str = "model") -> Case:
    """`nlpstd predict {inputs}/<model> TEXT` on the well-formed folder of `task` after `edit`."""

    def setup(inputs: Path) -> None:
        shutil.copytree(exported(task), inputs / "model")
        edit(inputs / "model")

    return Case(id, ("predict", f"{{inputs}}/{model}", TEXT), file, line, field, message, setup=setup)


GOOD_BERT = {"model_type": "bert", "architectures": ["BertForTokenClassification"]}

CASES = [
    # -- remote code: refused before transformers could offer to run it
    case("model-remote-code-auto-map", both(write("evil.py", PAYLOAD), config(
        model_type="evil", auto_map={"AutoConfig": "evil.EvilConfig", "AutoModelForTokenClassification": "evil.EvilModel"})),
         "config.json", "auto_map", "nlpstd never runs a model folder's code"),
    case("model-remote-code-beside-a-known-type", both(write("evil.py", PAYLOAD), config(
        auto_map={"AutoModelForTokenClassification": "evil.EvilModel"})),
         "config.json", "auto_map", "never runs"),
    case("model-remote-code-in-the-tokenizer-config", both(write("evil.py", PAYLOAD), write(
        "tokenizer_config.json", json.dumps({"tokenizer_class": "EvilTokenizer",
                                             "auto_map": {"AutoTokenizer": ["evil.Tok", None]}}))),
         "tokenizer_config.json", "auto_map", "never runs"),
    # -- config.json as a file
    case("model-config-not-json", write("config.json", '{"model_type": "bert",\n'), "config.json", None, "not JSON", line=2),
    case("model-config-a-list", write("config.json", "[]"), "config.json", None, "expected a JSON object, got list"),
    case("model-config-not-utf8", write("config.json", b'{"model_type": "b\xe9rt"}'), "config.json", None,
         "not UTF-8 (byte 0xe9"),
    case("model-config-a-folder", folder_named("config.json"), "config.json", None, "a folder, where a file belongs"),
    case("model-config-a-named-pipe", fifo("config.json"), "config.json", None, "not a regular file"),
    # -- config.json: family and head
    case("model-type-of-a-decoder", config(model_type="gpt2"), "config.json", "model_type",
         "'gpt2' is not an encoder nlpstd supports (bert, distilbert, electra)"),
    case("model-type-with-a-byte-level-tokenizer-family", config(model_type="roberta"), "config.json", "model_type",
         "'roberta' is not an encoder"),
    case("model-type-missing", config(model_type=DELETE), "config.json", "model_type", "missing"),
    case("model-architectures-missing", config(architectures=DELETE), "config.json", "architectures",
         "missing; a fine-tuned token-classification model names BertForTokenClassification"),
    case("model-architectures-a-string", config(architectures="BertForTokenClassification"), "config.json", "architectures",
         "expected a list of class names"),
    case("model-architectures-a-base-model", config(architectures=["BertForMaskedLM"]), "config.json", "architectures",
         "'BertForMaskedLM' is not BertForTokenClassification"),
    case("model-architectures-of-another-family", config(architectures=["DistilBertForTokenClassification"]),
         "config.json", "architectures", "'DistilBertForTokenClassification' is not one of BertModel"),
    case("model-architectures-of-the-other-task", config(architectures=["BertForSequenceClassification"]), "nlpstd.json",
         "task", "token-classification, but config.json's architectures name a sequence-classification head"),
    # -- config.json: the label map
    case("model-id2label-missing", config(id2label=DELETE, label2id=DELETE), "config.json", "id2label", "missing"),
    case("model-id2label-a-list", config(id2label=["O", "B-PER", "I-PER"]), "config.json", "id2label", "expected an object"),
    case("model-id2label-ids-with-a-gap", config(id2label={"0": "O", "2": "B-PER", "3": "I-PER"}), "config.json", "id2label",
         "ids must be 0..2, got 0, 2, 3"),
    case("model-id2label-keys-not-ids", config(id2label={"zero": "O", "one": "B-PER", "two": "I-PER"}), "config.json",
         "id2label", "key 'zero' is not a label id"),
    case("model-id2label-a-label-twice", config(id2label={"0": "O", "1": "B-PER", "2": "B-PER"}), "config.json", "id2label",
         "'B-PER' names two outputs"),
    case("model-id2label-label-not-a-name", config(id2label={"0": "O", "1": 7, "2": "I-PER"}), "config.json", "id2label",
         "label 1 is 7, not a name"),
    case("model-label2id-not-the-inverse", config(label2id={"O": 0, "B-PER": 2, "I-PER": 1}), "config.json", "label2id",
         "('B-PER' is 1 in id2label, 2 in label2id)"),
    case("model-num-labels-disagrees", config(num_labels=5), "config.json", "num_labels", "5, but id2label names 3 labels"),
    case("model-more-labels-than-the-weights-hold",
         config(id2label={"0": "O", "1": "B-PER", "2": "I-PER", "3": "B-LOC"},
                label2id={"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3}),
         "model.safetensors", None, "does not fit config.json: classifier.bias is [3] in the file, [4] by the config"),
    case("model-sequence-head-without-labels", config(id2label=DELETE, label2id=DELETE), "config.json", "id2label", "missing",
         task=CLASS),
    # -- config.json: values transformers refuses
    case("model-hidden-size-a-string", config(hidden_size="wide"), "config.json", None,
         "Field 'hidden_size' expected int, got str"),
    case("model-hidden-size-not-a-multiple-of-heads", config(hidden_size=33), "config.json", None,
         "The hidden size (33) is not a multiple of the number of attention heads (2)"),
    case("model-vocabulary-smaller-than-the-tokenizer", config(vocab_size=100), "config.json", "vocab_size",
         "100, but the tokenizer has 30522 tokens"),
    case("model-fewer-layers-than-the-weights", config(num_hidden_layers=0), "model.safetensors", None,
         "which the model has no place for"),
    # -- weights
    case("model-pickled-weights-only", both(remove("model.safetensors"), write("pytorch_model.bin", b"\x80\x04K\x01.")),
         "model.safetensors", None, "no model.safetensors; pickled weights are never loaded"),
    case("model-no-weights", remove("model.safetensors"), "model.safetensors", None, "the folder holds no weights"),
    case("model-safetensors-truncated", truncated("model.safetensors", 0.5), "model.safetensors", None, "truncated"),
    case("model-safetensors-not-safetensors", write("model.safetensors", b"PK\x03\x04 a zip file, say"), "model.safetensors",
         None, "not a safetensors file, or truncated"),
    case("model-safetensors-empty", write("model.safetensors", b""), "model.safetensors", None, "truncated: 0 bytes"),
    case("model-safetensors-header-not-json", write("model.safetensors", b"\x04\x00\x00\x00\x00\x00\x00\x00{bad"),
         "model.safetensors", None, "its header is not JSON"),
    case("model-safetensors-tensor-outgrows-its-bytes",
         write("model.safetensors", safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\x00" * 4)),
         "model.safetensors", None, "corrupt: tensor 'w' (F32 [2]) does not fit bytes 0..4"),
    case("model-safetensors-without-tensors", write("model.safetensors", safetensors({"__metadata__": {"format": "pt"}})),
         "model.safetensors", None, "lacks bert.embeddings.LayerNorm.bias"),
    case("model-safetensors-a-named-pipe", fifo("model.safetensors"), "model.safetensors", None, "not a regular file"),
    case("model-safetensors-shard-missing", both(remove("model.safetensors"), write(
        "model.safetensors.index.json", json.dumps({"weight_map": {"classifier.bias": "model-00001-of-00002.safetensors"}}))),
         "model-00001-of-00002.safetensors", None, "missing"),
    # -- tokenizer
    case("model-tokenizer-missing", remove("tokenizer.json"), "tokenizer.json", None, "the folder holds no tokenizer"),
    case("model-tokenizer-not-json", write("tokenizer.json", "{"), "tokenizer.json", None, "not JSON", line=1),
    case("model-tokenizer-without-a-model", tokenizer(model=None), "tokenizer.json", "model", "not a tokenizers file"),
    case("model-tokenizer-a-named-pipe", fifo("tokenizer.json"), "tokenizer.json", None, "not a regular file"),
    case("model-tokenizer-without-a-pre-tokenizer", both(tokenizer(pre_tokenizer=None), edited_json(
        "tokenizer_config.json", tokenizer_class="PreTrainedTokenizerFast")), "tokenizer.json", "pre_tokenizer",
         "missing: entities are found in words"),
    case("model-tokenizer-config-not-json", write("tokenizer_config.json", "{'single': 'quotes'}"), "tokenizer_config.json",
         None, "not JSON", line=1),
    # -- nlpstd.json
    case("model-info-not-json", write("nlpstd.json", "task: ner\n"), "nlpstd.json", None, "not JSON", line=1),
    case("model-info-task-unknown", info(task="translation"), "nlpstd.json", "task",
         "expected token-classification or sequence-classification, got 'translation'"),
    case("model-info-max-length-beyond-positions", info(max_length=4096), "nlpstd.json", "max_length",
         "4096 tokens, but config.json's max_position_embeddings is 64"),
    case("model-info-max-length-not-a-number", info(max_length="long"), "nlpstd.json", "max_length", "got 'long'"),
    case("model-info-stride-as-wide-as-the-window", info(stride=62), "nlpstd.json", "stride", "below 62, got 62"),
    case("model-info-iob-repair-unknown", info(iob_repair="fix"), "nlpstd.json", "iob_repair", "expected start or drop"),
    case("model-info-truncation-side-unknown", info(truncation_side="middle"), "nlpstd.json", "truncation_side",
         "expected right or left"),
    # -- the model path
    case("model-path-missing", lambda folder: None, None, "model", "no such file or folder", model="elsewhere"),
    case("model-path-a-file-of-the-folder", lambda folder: None, "config.json", None, "not a model", model="model/config.json"),
    # -- ONNX
    case("model-onnx-not-onnx", both(remove("model.safetensors"), write("model.onnx", b"not a protobuf")), "model.onnx", None,
         "ONNX Runtime cannot load it"),
    case("model-onnx-file-not-onnx", both(onnx_folder(), write("onnx/model.onnx", b"\x00\x01garbage")), "model.onnx", None,
         "ONNX Runtime cannot load it", model="model/onnx/model.onnx"),
    case("model-onnx-a-named-pipe", fifo("model.onnx"), "model.onnx", None, "not a regular file", model="model/model.onnx"),
    case("model-onnx-without-config-beside-it", onnx_file("onnx/model.onnx"),
         "config.json", None, "missing", model="model/onnx/model.onnx"),
    case("model-onnx-without-tokenizer-beside-it", both(onnx_only(), remove("tokenizer.json")), "tokenizer.json",
         None, "the folder holds no tokenizer"),
    case("model-onnx-inputs-of-another-model", onnx_only(inputs=(("pixel_values", "FLOAT"),)), "model.onnx", "inputs",
         "pixel_values (tensor(float)): nlpstd feeds input_ids"),
    case("model-onnx-logits-of-another-label-count", onnx_only(labels=5), "model.onnx", "outputs",
         "a token-classification model of 3 labels"),
    case("model-onnx-fails-on-a-batch", onnx_only(shape=(7, 7, 3)), "model.onnx", None,
         "ONNX Runtime failed on a batch"),
]
