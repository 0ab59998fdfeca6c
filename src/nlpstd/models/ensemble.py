"""An ensemble of fine-tuned members (`finetune.seeds`) whose logits are averaged.

Its folder is the first member's Hugging Face folder, so plain transformers loads that member and
finds the tokenizer and config, with every other member beside it as config.json and weights under
`members/<seed>/`. nlpstd.json says so:

    "ensemble": {"combine": "mean", "members": ["members/43", "members/44"], "seeds": [42, 43, 44]}

`members` lists the folders of the members after the first; `seeds` names all of them, the first
member's first. `load_model` reads the entry and returns an `Ensemble`, which answers like one
model (`.config`, `forward(**batch).logits`), so scoring, `predict` and the ONNX export take it as
they take a single model, and the ONNX graph holds every member.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput

from nlpstd.errors import LocatedError, NlpstdError
from nlpstd.jsonio import write_json
from nlpstd.models.folder import CONFIG, INFO, WEIGHTS, check_weights, read_config, read_json_object

MEMBERS = "members"  # the folder of the members after the first, one sub-folder per seed
COMBINE = "mean"
MEMBER_FILES = (CONFIG, WEIGHTS)  # what a member folder holds: the tokenizer is the first member's


class Ensemble(torch.nn.Module):
    """Members of one label map and vocabulary, answering as one model with the mean of their logits."""

    def __init__(self, members: list[torch.nn.Module]):
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    @property
    def config(self):
        """The first member's config: the label map and sizes every member shares."""
        return self.members[0].config

    def forward(self, labels: torch.Tensor | None = None, **inputs: torch.Tensor) -> TokenClassifierOutput | SequenceClassifierOutput:
        """The members' mean logits, (B, T, L) or (B, L), in float32 (a mean of bf16 logits would round
        them twice); with `labels`, the cross-entropy of those mean logits (-100 ignored)."""
        logits = torch.stack([member(**inputs).logits.float() for member in self.members]).mean(dim=0)
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1))
        output = TokenClassifierOutput if logits.ndim == 3 else SequenceClassifierOutput
        return output(loss=loss, logits=logits)

    def get_input_embeddings(self) -> torch.nn.Module:
        """Refused: explanations integrate gradients over one embedding layer, and each member has its own."""
        raise NlpstdError("explanations take one model's word embeddings, and this ensemble has one per member: "
                          "explain a single-seed model")


def entry(seeds: list[int]) -> dict[str, Any]:
    """The `ensemble` entry of nlpstd.json for members trained with `seeds` (the first one at the top)."""
    return {"combine": COMBINE, "members": [f"{MEMBERS}/{seed}" for seed in seeds[1:]], "seeds": list(seeds)}


def add_members(folder: Path, members: dict[int, Path], seeds: list[int], info: dict[str, Any]) -> None:
    """Make the first member's Hugging Face `folder` an ensemble: copy each other member's config.json
    and weights from `members[seed]` to `members/<seed>/`, then write nlpstd.json (`info` plus the
    entry) last, so a folder without its members never claims them."""
    for seed in seeds[1:]:
        target = Path(folder) / MEMBERS / str(seed)
        shutil.rmtree(target, ignore_errors=True)
        _copy_member(Path(members[seed]), target)
    write_json(Path(folder) / INFO, {**info, "ensemble": entry(seeds)})


def in_graph(spec: dict[str, Any]) -> dict[str, Any]:
    """The entry of an ONNX folder of the ensemble: its one graph averages every member, so the entry
    names the seeds and no member folders."""
    return {"combine": spec["combine"], "seeds": spec["seeds"]}


def copy_members(source: Path, target: Path, spec: dict[str, Any] | None) -> None:
    """Each member's config.json and weights from the ensemble folder `source` into `target` (an export
    of it); nothing for a single model (`spec` None)."""
    for member in (spec or {}).get("members", []):
        _copy_member(Path(source) / member, Path(target) / member)


def _copy_member(source: Path, target: Path) -> None:
    """A member's config.json and weights, from one folder into another (made if missing)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in MEMBER_FILES:
        shutil.copy2(source / name, target / name)


def ensemble_spec(folder: Path) -> Any | None:
    """The `ensemble` entry of a folder's nlpstd.json (unchecked: see `member_folders`); None for a single model."""
    info = Path(folder) / INFO
    return read_json_object(info).get("ensemble") if os.path.lexists(info) else None


def member_folders(folder: Path, spec: Any, config: dict[str, Any], task: str) -> list[Path]:
    """The folders of the members after the first, each checked as data as the first was (config.json of
    that task's head, whole safetensors weights) and refused, located at nlpstd.json's entry, when it
    is missing, lies outside `folder`, or labels or tokenizes otherwise than the first (`config`)."""
    info = Path(folder) / INFO

    def refuse(field: str, message: str) -> LocatedError:
        return LocatedError(info, None, f"ensemble.{field}" if field else "ensemble", message)

    if not isinstance(spec, dict):
        raise refuse("", f'expected an object {{"combine": "mean", "members": [...], "seeds": [...]}}, got {spec!r}')
    if spec.get("combine") != COMBINE:
        raise refuse("combine", f"expected {COMBINE!r} (the members' logits are averaged), got {spec.get('combine')!r}")
    members = spec.get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
        raise refuse("members", f"expected a list of member folders such as ['{MEMBERS}/43'], got {members!r}")
    seeds = spec.get("seeds")
    if not isinstance(seeds, list) or len(seeds) != len(members) + 1 or not all(_is_int(s) for s in seeds):
        raise refuse("seeds", f"expected the {len(members) + 1} members' seeds (the first member's first), got {seeds!r}")
    folders = []
    for member in members:
        path = PurePosixPath(member)
        if len(path.parts) != 2 or path.parts[0] != MEMBERS or path.parts[1] in ("..", "."):
            raise refuse("members", f"{member!r} is not a folder under {MEMBERS}/ of this folder")
        where = Path(folder) / path
        if not os.path.isdir(where):
            raise refuse("members", f"{member}: missing (no such folder in {folder}); the ensemble is incomplete")
        own = read_config(where, task)
        for key, what in (("id2label", "labels"), ("vocab_size", "vocabulary size")):
            if own.get(key) != config.get(key):
                raise refuse("members", f"{member}: other {what} than the first member ({key} {own.get(key)!r}, not "
                             f"{config.get(key)!r}): members must label and tokenize alike to be averaged")
        check_weights(where)
        folders.append(where)
    return folders


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
