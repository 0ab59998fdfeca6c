"""What a model folder must hold before anything loads it, checked by reading its files as data.

A model folder comes from anywhere: an export, a colleague, a download. Loading it with
transformers trusts it: `auto_map` in config.json names Python files of the folder that transformers
offers to run, pickled weights (`pytorch_model.bin`) run code when unpickled, and a malformed file
ends in a traceback from deep inside a library, or worse, in a model that loads with random weights
and predicts nonsense. So every path that loads a folder (`predict`, evaluate and export,
`model.base`, `stage finetune --base`) first runs `check_model_folder`, which reads config.json,
the tokenizer files and the safetensors header as JSON and bytes, imports no torch, and refuses a
bad folder in one line naming the file and the field: `<folder>/config.json: model_type: ...`.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from nlpstd.errors import LocatedError
from nlpstd.spans import REPAIRS, WORD_UNITS

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
TOKENIZER = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
INFO = "nlpstd.json"  # what `predict` needs beyond config.json (written by finetune and export)

# The encoders nlpstd trains and serves, by config.json's `model_type`, with the prefix of their
# transformers classes. All three come with WordPiece tokenizers, which split words at spaces and
# punctuation and keep the space out of a word: entity offsets and label alignment rely on that.
# RoBERTa-style byte-level BPE and SentencePiece tokenizers put the space into the word ("ĠSmith"
# at 5..11), so entity offsets would be off by one; those families are refused, not half-supported.
FAMILIES = {"bert": "Bert", "distilbert": "DistilBert", "electra": "Electra"}
# The head a fine-tuned folder carries per task; a base may carry any of BASE_CLASSES (the head is
# replaced when fine-tuning starts).
HEADS = {"token-classification": "ForTokenClassification", "sequence-classification": "ForSequenceClassification"}
BASE_CLASSES = ("Model", "ForMaskedLM", "ForPreTraining", *HEADS.values())
TASKS = tuple(HEADS)

PICKLES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
MAX_JSON_BYTES = 512 * 2**20  # a tokenizer.json of a large vocabulary is tens of MB; nothing real nears this
MAX_HEADER_BYTES = 100 * 2**20  # the safetensors format's own limit on its JSON header
# Bytes per element of each safetensors dtype: a tensor's byte range must hold exactly its shape.
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def check_model_folder(folder: str | Path, task: str | None = None, *, weights: bool = True) -> dict[str, Any]:
    """config.json, the weights (unless `weights=False`: an ONNX folder) and the tokenizer files of
    `folder`; returns config.json. `task` None checks a base (any class of a supported family),
    else the folder must carry that task's head and a label map."""
    folder = Path(folder)
    config = read_config(folder, task)
    if weights:
        check_weights(folder)
    check_tokenizer_files(folder)
    return config


def read_config(folder: str | Path, task: str | None = None) -> dict[str, Any]:
    """config.json as a dict, refused when it asks for code, names a family or class nlpstd does not
    support, or carries a malformed label map."""
    path = Path(folder) / CONFIG
    config = read_json_object(path)
    if "auto_map" in config:
        raise LocatedError(path, None, "auto_map", "the folder ships its own Python code for transformers to run; "
                           "nlpstd never runs a model folder's code (remove auto_map, or use a supported model_type)")
    prefix = _family(path, config)
    _check_architectures(path, config, prefix, task)
    _check_labels(path, config, required=task is not None)
    return config


def task_of(config: dict[str, Any], path: str | Path) -> str:
    """The task a fine-tuned folder's config names through its head's class (the folder describes itself)."""
    task = _named_task(config)
    if task is None:
        raise LocatedError(path, None, "architectures", "names no token or sequence classification head, and no "
                           f"{INFO} says the task: this is a base model, not a fine-tuned one")
    return task


def _named_task(config: dict[str, Any]) -> str | None:
    for architecture in config.get("architectures") or []:
        for task, head in HEADS.items():
            if isinstance(architecture, str) and architecture.endswith(head):
                return task
    return None


def read_json_object(path: Path) -> dict[str, Any]:
    """A small JSON file that must hold one object; every way it can fail is one located line."""
    data = read_regular_file(path, MAX_JSON_BYTES)
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise LocatedError(path, None, None, f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise LocatedError(path, exc.lineno, None, f"not JSON ({exc.msg}, column {exc.colno})") from None
    if not isinstance(value, dict):
        raise LocatedError(path, None, None, f"expected a JSON object, got {type(value).__name__}")
    return value


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes. A named pipe or a device is refused
    before it is opened, since reading one blocks or never ends."""
    size = regular_file_size(path)
    if size > limit:
        raise LocatedError(path, None, None, f"{size:,} bytes, more than the {limit:,} such a file can hold")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LocatedError(path, None, None, f"cannot be read ({exc.strerror})") from None


def regular_file_size(path: Path) -> int:
    """The size of `path`, refused unless it is a regular file (a link to one is fine)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise LocatedError(path, None, None, "missing") from None
    except OSError as exc:
        raise LocatedError(path, None, None, f"cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise LocatedError(path, None, None, "a folder, where a file belongs")
    if not stat.S_ISREG(info.st_mode):
        raise LocatedError(path, None, None, "not a regular file (a pipe or a device); it is not read")
    return info.st_size


def _family(path: Path, config: dict[str, Any]) -> str:
    model_type = config.get("model_type")
    supported = ", ".join(FAMILIES)
    if model_type is None:
        raise LocatedError(path, None, "model_type", f"missing; nlpstd supports {supported}")
    if model_type not in FAMILIES:
        raise LocatedError(path, None, "model_type", f"{model_type!r} is not an encoder nlpstd supports ({supported})")
    return FAMILIES[model_type]


def _check_architectures(path: Path, config: dict[str, Any], prefix: str, task: str | None) -> None:
    """`architectures` names classes of the folder's family: a base any of BASE_CLASSES, a fine-tuned
    folder the head of its task (which `predict` reads the task from)."""
    names = config.get("architectures")
    if names is None and task is None:
        return  # a base: transformers picks the class from model_type alone
    allowed = [prefix + HEADS[task]] if task else [prefix + suffix for suffix in BASE_CLASSES]
    if names is None:
        raise LocatedError(path, None, "architectures", f"missing; a fine-tuned {task} model names {allowed[0]}")
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise LocatedError(path, None, "architectures", f"expected a list of class names such as [{allowed[0]!r}], got {names!r}")
    for name in names:
        if name not in allowed:
            expected = allowed[0] if len(allowed) == 1 else f"one of {', '.join(allowed)}"
            raise LocatedError(path, None, "architectures", f"{name!r} is not {expected}")


def _check_labels(path: Path, config: dict[str, Any], required: bool) -> None:
    """id2label maps 0..n-1 to distinct names, label2id is its inverse, num_labels (if written) is n:
    the label of each logit column, which predictions are read through."""
    id2label = config.get("id2label")
    if id2label is None:
        if required:
            raise LocatedError(path, None, "id2label", "missing; a fine-tuned model names the label of each output")
        return
    if not isinstance(id2label, dict) or not id2label:
        raise LocatedError(path, None, "id2label", f'expected an object {{"0": label, "1": label, ...}}, got {id2label!r}')
    if not all(isinstance(key, str) and key.isdecimal() for key in id2label):
        bad = next(key for key in id2label if not (isinstance(key, str) and key.isdecimal()))
        raise LocatedError(path, None, "id2label", f"key {bad!r} is not a label id (0, 1, ...)")
    ids = sorted(int(key) for key in id2label)
    if ids != list(range(len(ids))):
        raise LocatedError(path, None, "id2label", f"ids must be 0..{len(ids) - 1}, got {', '.join(map(str, ids))}")
    labels = {int(key): name for key, name in id2label.items()}
    for i in range(len(labels)):
        if not isinstance(labels[i], str) or not labels[i]:
            raise LocatedError(path, None, "id2label", f"label {i} is {labels[i]!r}, not a name")
    if len(set(labels.values())) != len(labels):
        twice = next(name for name in labels.values() if list(labels.values()).count(name) > 1)
        raise LocatedError(path, None, "id2label", f"{twice!r} names two outputs")
    label2id = config.get("label2id")
    if label2id is not None and label2id != {name: i for i, name in labels.items()}:
        raise LocatedError(path, None, "label2id", "does not invert id2label " + _first_difference(labels, label2id))
    num_labels = config.get("num_labels")
    if num_labels is not None and num_labels != len(labels):
        raise LocatedError(path, None, "num_labels", f"{num_labels!r}, but id2label names {len(labels)} labels")


def _first_difference(labels: dict[int, str], label2id: Any) -> str:
    if not isinstance(label2id, dict):
        return f"(expected an object, got {type(label2id).__name__})"
    for i, name in labels.items():
        if label2id.get(name) != i:
            return f"({name!r} is {i} in id2label, {label2id.get(name)!r} in label2id)"
    extra = next(iter(set(label2id) - set(labels.values())))
    return f"({extra!r} is in label2id only)"


def check_weights(folder: str | Path) -> None:
    """model.safetensors (or the shards an index names) present and whole. Pickled weights are never
    loaded: unpickling runs code, so a folder holding only those is refused, not converted."""
    folder = Path(folder)
    single, index = folder / WEIGHTS, folder / WEIGHTS_INDEX
    if os.path.lexists(single):
        check_safetensors(single)
    elif os.path.lexists(index):
        for shard in _shards(index):
            check_safetensors(folder / shard)
    elif any(path.suffix in PICKLES for path in folder.iterdir()):
        raise LocatedError(single, None, None, "missing: no model.safetensors; pickled weights are never loaded "
                           "(convert them with safetensors where you trust the file)")
    else:
        raise LocatedError(single, None, None, "missing: the folder holds no weights")


def _shards(index: Path) -> list[str]:
    weight_map = read_json_object(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise LocatedError(index, None, "weight_map", "expected an object of tensor name to shard file")
    for shard in weight_map.values():
        if not isinstance(shard, str) or Path(shard).name != shard or not shard.endswith(".safetensors"):
            raise LocatedError(index, None, "weight_map", f"{shard!r} is not a .safetensors file of this folder")
    return sorted(set(weight_map.values()))


def check_safetensors(path: Path) -> None:
    """A safetensors file is an 8-byte little-endian header length, a JSON header naming each
    tensor's dtype, shape and byte range, then the bytes. Checking that the ranges fit the shapes and
    end where the file ends catches a truncated copy or another format, before a library reads it."""
    size = regular_file_size(path)
    if size < 8:
        raise LocatedError(path, None, None, f"truncated: {size} bytes, not even a safetensors header length")
    with open(path, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        if length > min(size - 8, MAX_HEADER_BYTES):
            raise LocatedError(path, None, None, f"not a safetensors file, or truncated: its first 8 bytes announce a "
                               f"{length:,}-byte header in a {size:,}-byte file")
        header = handle.read(length)
    try:
        tensors = json.loads(header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise LocatedError(path, None, None, "not a safetensors file: its header is not JSON") from None
    if not isinstance(tensors, dict):
        raise LocatedError(path, None, None, "not a safetensors file: its header is not a JSON object")
    end = 0
    for name, tensor in tensors.items():
        if name != "__metadata__":
            end = max(end, _tensor_end(path, name, tensor))
    if 8 + length + end != size:
        raise LocatedError(path, None, None, f"truncated or padded: the header places tensors up to byte "
                           f"{8 + length + end:,}, the file has {size:,}")


def _tensor_end(path: Path, name: str, tensor: Any) -> int:
    """Where a tensor's bytes end, after checking that its byte range holds its dtype and shape."""
    try:
        dtype, shape, (begin, end) = tensor["dtype"], tensor["shape"], tensor["data_offsets"]
        width = DTYPE_BYTES[dtype]
        valid = all(isinstance(n, int) and n >= 0 for n in (*shape, begin, end)) and begin <= end
    except (TypeError, KeyError, ValueError):
        raise LocatedError(path, None, None, f"not a safetensors file: tensor {name!r} has no dtype, shape and "
                           "data_offsets it can read") from None
    if not valid or end - begin != width * math.prod(shape):
        raise LocatedError(path, None, None, f"corrupt: tensor {name!r} ({dtype} {shape}) does not fit bytes {begin}..{end}")
    return end


def check_tokenizer_files(folder: str | Path) -> None:
    """A fast tokenizer's tokenizer.json (or BERT's vocab.txt, from which transformers builds one),
    readable as JSON; tokenizer_config.json, when present, a JSON object that names no code."""
    folder = Path(folder)
    tokenizer, vocab = folder / TOKENIZER, folder / "vocab.txt"
    if os.path.lexists(tokenizer):
        if not isinstance(read_json_object(tokenizer).get("model"), dict):
            raise LocatedError(tokenizer, None, "model", "missing: not a tokenizers file (no tokenizer model)")
    elif os.path.lexists(vocab):
        regular_file_size(vocab)
    else:
        raise LocatedError(tokenizer, None, None, "missing: the folder holds no tokenizer (tokenizer.json or vocab.txt)")
    for name in (TOKENIZER_CONFIG, "special_tokens_map.json"):
        if os.path.lexists(folder / name):
            settings = read_json_object(folder / name)
            if "auto_map" in settings:
                raise LocatedError(folder / name, None, "auto_map", "names the folder's own tokenizer code; nlpstd never "
                                   "runs a model folder's code")


def read_model_info(folder: str | Path, config: dict[str, Any]) -> dict[str, Any]:
    """nlpstd.json, when the folder has one ({} otherwise): the task, and how texts are cut or
    windowed as training did. Checked against config.json, since `predict` trusts these numbers."""
    path = Path(folder) / INFO
    if not os.path.lexists(path):
        return {}
    info = read_json_object(path)
    task, named = info.get("task"), _named_task(config)
    if task is not None and task not in TASKS:
        raise LocatedError(path, None, "task", f"expected {' or '.join(TASKS)}, got {task!r}")
    if task is not None and named is not None and task != named:
        raise LocatedError(path, None, "task", f"{task}, but config.json's architectures name a {named} head")
    max_length, stride = info.get("max_length"), info.get("stride")
    positions = config.get("max_position_embeddings")
    if max_length is not None:
        if not _positive_int(max_length):
            raise LocatedError(path, None, "max_length", f"expected a positive number of tokens, got {max_length!r}")
        if _positive_int(positions) and max_length > positions:
            raise LocatedError(path, None, "max_length", f"{max_length} tokens, but config.json's max_position_embeddings "
                               f"is {positions}")
    if stride is not None:
        limit = (max_length or 512) - 2  # [CLS] and [SEP] take two of the window's places
        if not _positive_int(stride) or stride >= limit:
            raise LocatedError(path, None, "stride", f"expected a number of shared tokens below {limit}, got {stride!r}")
    choices = {"truncation_side": ("right", "left"), "iob_repair": REPAIRS, "word_unit": WORD_UNITS}
    for key, allowed in choices.items():
        if key in info and info[key] not in allowed:
            raise LocatedError(path, None, key, f"expected {' or '.join(allowed)}, got {info[key]!r}")
    return info


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def first_line(exc: BaseException) -> str:
    """The first line of a library's error (they run to a paragraph, with advice that does not apply here)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    head = lines[0] if not lines[0].endswith(":") or len(lines) == 1 else f"{lines[0]} {lines[1]}"  # "error for x:\n  why"
    return head[:300]
