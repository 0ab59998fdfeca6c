"""model.base's config.json, read when a standard loads (the last check across fields): a base that
cannot be loaded, or a max_length beyond its positions, is an error at the line that names it rather
than a crash hours later. Plain file reads: no torch, no transformers."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nlpstd.errors import NlpstdError
from nlpstd.models.bases import PACKAGED_BASES
from nlpstd.spec.messages import _clip, _file_kind
from nlpstd.spec.schema import Standard

MAX_CONFIG_BYTES = 1 << 20  # a model's config.json is a few KiB
_TRUE = ("1", "on", "yes", "true")  # how huggingface_hub reads HF_HUB_OFFLINE


class _BaseUnusable(Exception):
    """model.base names nothing that can be loaded; the message says why."""


def _check_base_positions(std: Standard, fail: Callable[[tuple, str], None]) -> None:
    """A max_length beyond the base's positions passes validation and data-prep, then crashes fine-tuning
    with an index error; the base's config.json says how many positions it has, so compare here."""
    try:
        config = _base_config(std.model.base)
    except _BaseUnusable as exc:
        fail(("model", "base"), str(exc))
        return
    _check_kept_layers(std, config, fail)
    positions = _usable_positions(config) if config is not None else None
    if positions is None:
        return
    lengths = [(("data", "max_length"), std.data.max_length)]
    if std.pretrain.enabled:
        lengths.append((("pretrain", "max_length"), std.pretrain.max_length))
    for loc, length in lengths:
        if length > positions:
            fail(loc, f"{length} exceeds the {positions} positions of model.base {_clip(std.model.base)}")


def _check_kept_layers(std: Standard, config: dict[str, Any] | None, fail: Callable[[tuple, str], None]) -> None:
    """model.keep_layers names layers the base has."""
    keep, count = std.model.keep_layers, (config or {}).get("num_hidden_layers", (config or {}).get("n_layers"))
    if not isinstance(keep, list) or not isinstance(count, int):
        return
    outside = [layer for layer in keep if layer >= count]
    if outside:
        fail(("model", "keep_layers"), f"layer {outside[0]} is not one of the {count} layers of model.base "
                                       f"{_clip(std.model.base)} (0..{count - 1})")
    elif len(keep) == count:
        fail(("model", "keep_layers"), f"keeps all {count} layers of model.base: leave keep_layers unset")


def _base_config(base: str) -> dict[str, Any] | None:
    """The base's config.json, read without torch or transformers (loading a standard stays fast). None
    for a hub id that is not cached while the hub can be reached: it is fetched when the model loads."""
    if base in PACKAGED_BASES:
        package = PACKAGED_BASES[base]
        if importlib.util.find_spec(package) is None:
            raise _BaseUnusable(f"{base} ships with the Python package {package}, which is not installed")
        return _read_config(Path(importlib.import_module(package).get_model_path()) / "config.json")
    if os.path.isabs(base):  # a `./` or `../` folder, resolved against the standard's folder
        config = _read_config(Path(base) / "config.json")
        from nlpstd.models.folder import check_model_folder  # reads files only: no torch

        try:
            check_model_folder(base)  # a supported family, safetensors weights, no remote code, a tokenizer
        except NlpstdError as exc:
            raise _BaseUnusable(str(exc)) from None
        return config
    from huggingface_hub import try_to_load_from_cache  # ~0.1 s, and only for a hub id

    try:
        cached = try_to_load_from_cache(base, "config.json")
    except ValueError:  # huggingface_hub's HFValidationError: not an `org/name` id
        raise _BaseUnusable(f"{_clip(base)!r} is not a named base ({', '.join(PACKAGED_BASES)}), a folder "
                            "(./path) or a hub id (org/name)") from None
    if isinstance(cached, str):
        config = _read_config(Path(cached))
        from nlpstd.models.folder import read_config  # reads the file only: no torch

        try:
            read_config(Path(cached).parent)  # a supported family, no remote code (the weights may not be cached yet)
        except NlpstdError as exc:
            raise _BaseUnusable(str(exc)) from None
        return config
    offline = [name for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if os.environ.get(name, "").lower() in _TRUE]
    if offline:
        raise _BaseUnusable(f"{base} is not in the local cache and {offline[0]} is set")
    return None


def _read_config(path: Path) -> dict[str, Any]:
    """A model folder's config.json as a mapping; anything else there is a base that cannot load."""
    try:
        info = os.stat(path)
    except OSError:
        raise _BaseUnusable(f"no Hugging Face model (config.json) in {path.parent}") from None
    if not stat.S_ISREG(info.st_mode):
        raise _BaseUnusable(f"{path} is {_file_kind(info.st_mode)}, not a file")
    if info.st_size > MAX_CONFIG_BYTES:
        raise _BaseUnusable(f"{path} is {info.st_size:,} bytes, too large for a model's config")
    try:
        config = json.loads(path.read_bytes())
    except OSError as exc:
        raise _BaseUnusable(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:  # invalid JSON, or not UTF-8
        raise _BaseUnusable(f"{path} is not valid JSON ({_clip(exc, 80)})") from None
    if not isinstance(config, dict):
        raise _BaseUnusable(f"{path} is not a JSON object of settings")
    return config


def _usable_positions(config: dict[str, Any]) -> int | None:
    """The longest input the base accepts, specials included; None when its config does not say.
    (The supported families number positions from 0; RoBERTa's offset ones are refused as a family.)"""
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int) or isinstance(positions, bool) or positions <= 0:
        return None
    return positions
