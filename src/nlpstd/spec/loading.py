"""Reading a standard: YAML with the line of every key, `${VAR:-default}` from the environment, and
pydantic's errors turned into `file:line: key.path: message`.

Loading is strict: unknown keys are errors (with the closest valid key suggested), every error
names the file, the line and the key path, and relative paths resolve against the standard's own
folder. Checks across fields run once, here, before any data or weights are read. A standard with
changes (a sweep's trial, its recommendation) is made here too, by loading its text again.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from nlpstd.errors import StandardError
from nlpstd.spec.base_config import _check_base_positions
from nlpstd.spec.messages import _clip, _dotted, _failing_at, _file_kind, _line_of, _shown
from nlpstd.spec.rules import _check_combinations, _is_field
from nlpstd.spec.schema import _PATTERN_WORDS, TASK_METRICS, SearchRange, Standard, _field_names, set_dotted

# A standard is a few dozen keys in a few KiB. These limits sit far above any real standard and far
# below what hurts: read as a tree, a few lines of aliases of aliases ("billion laughs") stand for
# billions of nodes, so aliases and nodes are counted while the YAML is composed, before anything
# walks or expands it.
MAX_STANDARD_BYTES = 1 << 20
MAX_ALIASES = 16  # a standard shares a value or two
MAX_NODES = 10_000  # keys, values and list items, an alias counting as every node it repeats
MAX_DEPTH = 32  # nested mappings and lists; the composer recurses, and deeper input would exhaust the stack


def load_standard(path: str | Path) -> Standard:
    """Read, expand, validate and cross-check a standard; raise StandardError on any fault."""
    path = Path(path)
    return load_standard_text(_read_standard(path), path)


def _read_standard(path: Path) -> str:
    """The standard's text. A named pipe or a device is refused before it is opened (reading would
    block, or never end), and so is a file too large to be a standard."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise StandardError(path, None, None, f"cannot read the standard: it is {_file_kind(info.st_mode)}, not a file")
        if info.st_size > MAX_STANDARD_BYTES:
            raise StandardError(path, None, None, f"{info.st_size:,} bytes is too large for a standard "
                                                  f"(at most {MAX_STANDARD_BYTES:,})")
        raw = path.read_bytes()
    except OSError as exc:
        raise StandardError(path, None, None, f"cannot read the standard: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise StandardError(path, line, "encoding", f"byte 0x{raw[exc.start]:02x} is not UTF-8; save the standard "
                                                    "as UTF-8") from None



def load_standard_text(text: str, path: str | Path = "standard.yaml") -> Standard:
    """A standard given as text (a pipeline parameter); `path` names it in errors and anchors relative paths."""
    path = Path(path)
    if len(text) > MAX_STANDARD_BYTES:
        raise StandardError(path, None, None, f"{len(text):,} characters is too large for a standard "
                                              f"(at most {MAX_STANDARD_BYTES:,})")
    lines, data = _parse_yaml(path, text)
    data = _expand_env(data, (), path, lines)
    base_dir = str(path.parent.resolve())
    try:
        standard = Standard.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise _located(exc, path, lines) from None
    standard._base_dir = base_dir
    _check_combinations(standard, path, lines)
    _check_sweep(standard, _failing_at(path, lines))
    if standard.model.base is not None:  # last: it reads the base's config.json
        _check_base_positions(standard, _failing_at(path, lines))
    return standard


def with_changes(std: Standard, changes: dict[str, Any], name: str | None = None) -> Standard:
    """`std` without its sweep, with `{dotted.key: value}` changes applied (a value replaces what is
    there, a mapping a whole section) and checked like a loaded standard (it is one: loaded from text)."""
    data = std.to_dict()
    data.pop("sweep", None)
    for key, value in changes.items():
        set_dotted(data, key, value)
    if name:
        data["name"] = name
    # every path of the dumped standard is absolute already; a relative one among the changes (a
    # variant's `model.base: ./other`) means the same folder as in the standard it came from
    source = Path(std._base_dir or "/") / "standard.yaml"
    return load_standard_text(yaml.safe_dump(data, sort_keys=False), source)


def _check_sweep(std: Standard, fail: Callable[[tuple, str], None]) -> None:
    """Every axis names a real key, and every value it can take makes a valid standard on its own."""
    sweep = std.sweep
    if sweep is None:
        return
    if not sweep.variants and not sweep.params:
        fail(("sweep",), "a sweep needs at least one axis: variants or params")
    metric = sweep.objective.metric
    if metric is not None and metric not in TASK_METRICS[std.task]:
        fail(("sweep", "objective", "metric"), f"unknown metric {metric!r} (known: {', '.join(TASK_METRICS[std.task])})")
    if sweep.strategy != "grid" and sweep.trials is None:
        fail(("sweep", "trials"), f"a {sweep.strategy} search needs a number of trials")

    def check_keys(loc: tuple, keys: Iterable[str]) -> None:
        for key in keys:
            if not _is_field(key):
                known = ", ".join(_field_names(tuple(key.split(".")[:-1]))) or "none at this path"
                fail(loc, f"{key!r} is not a key of the standard (keys there: {known})")

    def try_changes(loc: tuple, changes: dict[str, Any]) -> Standard:
        try:
            return with_changes(std, changes)
        except StandardError as exc:
            fail(loc, f"makes an invalid standard: {exc.field + ': ' if exc.field else ''}{exc.message}")
            raise  # (fail raises)

    first_variant = next(iter(sweep.variants.values()), {})
    variants = {}
    for name, changes in sweep.variants.items():
        for key in changes:
            if key in ("name", "sweep") or key.startswith("sweep."):
                fail(("sweep", "variants", name, key), "a sweep cannot change the standard's name or the sweep itself")
        check_keys(("sweep", "variants", name), changes)
        variants[name] = try_changes(("sweep", "variants", name), changes)
    _check_trial_seeds(std, variants, fail)
    for key, axis in sweep.params.items():
        loc = ("sweep", "params", key)
        if key in ("name", "sweep") or key.startswith("sweep."):
            fail(loc, "a sweep cannot change the standard's name or the sweep itself")
        check_keys(loc, [key])
        if isinstance(axis, SearchRange):
            if sweep.strategy == "grid":
                fail(loc, "a grid takes a list of values, not a range (or use strategy: random or bayes)")
            values = [axis.low, axis.high]
        elif not axis:
            fail(loc, "list at least one value")
        else:
            values = axis
        for index, value in enumerate(values):
            try_changes(loc + ((index,) if isinstance(axis, list) else ()), {**first_variant, key: value})


def _check_trial_seeds(std: Standard, variants: dict[str, Standard], fail: Callable[[tuple, str], None]) -> None:
    """A trial that trains an ensemble (`finetune.seeds`) cannot vary `seed`: every member takes its
    seed from the list, so the trials would train the same members."""
    assert std.sweep is not None
    why = ("finetune.seeds seeds every ensemble member, so a trial's seed would reach none of them and the trials "
           "would train the same members: vary finetune.seeds instead, or train single models")
    for name, trial in variants.items():
        if trial.finetune.seeds and "seed" in std.sweep.variants[name]:
            fail(("sweep", "variants", name, "seed"), why)
    trials = variants.values() if variants else [std]  # without variants every trial is the standard's recipe
    if "seed" in std.sweep.params and any(trial.finetune.seeds for trial in trials):
        fail(("sweep", "params", "seed"), why)


class _Refused(Exception):
    """A limit of the YAML reader, met while composing (the reader knows a mark, not the file name)."""

    def __init__(self, mark: yaml.Mark, message: str):
        super().__init__(message)
        self.mark, self.message = mark, message


class _StandardLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting while it composes: aliases, nodes (an alias counts as every node
    it repeats, from sizes kept per node, so nothing is walked twice) and depth."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.aliases = 0
        self.nodes = 0
        self.depth = 0
        self.sizes: dict[int, int] = {}  # id(node) -> nodes it stands for, aliases expanded

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _Refused(event.start_mark, f"more than {MAX_ALIASES} aliases (here *{_clip(event.anchor)}); "
                                                 "a standard needs a few at most")
            node = super().compose_node(parent, index)
            size = self.sizes.get(id(node))
            if size is None:  # the anchored node is still open: the alias lies inside it
                raise _Refused(event.start_mark, f"alias *{_clip(event.anchor)} lies inside the node it names, "
                                                 "so it would repeat without end")
            self._count(size, event.start_mark)
            return node
        if self.depth == MAX_DEPTH:
            raise _Refused(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")
        self._count(1, event.start_mark)
        self.depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        children = node.value if isinstance(node, yaml.SequenceNode) else (
            [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else [])
        self.sizes[id(node)] = 1 + sum(self.sizes[id(child)] for child in children)
        return node

    def _count(self, nodes: int, mark: yaml.Mark) -> None:
        self.nodes += nodes
        if self.nodes > MAX_NODES:
            raise _Refused(mark, f"more than {MAX_NODES:,} values once aliases are expanded")

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError):  # an integer of 5,000 digits, a 13th month
            kind = node.tag.rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(None, None, f"{_clip(node.value)} is not a valid {kind}",
                                                    node.start_mark) from None


def _parse_yaml(path: Path, text: str) -> tuple[dict[tuple, int], dict]:
    """The document, plus the 1-based line of every key path (for error messages). The text is read
    once: composed under the loader's limits, checked key by key, then built from those nodes."""
    loader = None
    try:
        loader = _StandardLoader(text)
        root = loader.get_single_node()
        lines = _key_lines(root, path)
        data = loader.construct_document(root) if root is not None else None
    except _Refused as exc:
        raise StandardError(path, exc.mark.line + 1, None, f"invalid YAML: {exc.message}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow: a binary file, most likely
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise StandardError(path, text.count("\n", 0, exc.position) + 1, None,
                            f"invalid YAML: character #x{code:04x} is not allowed in YAML text") from None
    except yaml.YAMLError as exc:
        # an unclosed quote or bracket is marked at the end of the file; where it opened is more useful
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        line = min(mark.line + 1, text.count("\n") + 1) if mark else None
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise StandardError(path, line, None, f"invalid YAML: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, dict):
        words = {type(None): "an empty file", list: "a list", str: "text", bool: "a yes/no value"}
        got = words.get(type(data), "a number" if isinstance(data, int | float) else type(data).__name__)
        raise StandardError(path, 1, None, f"a standard is a YAML mapping of sections (name, task, data, ...), not {got}")
    return lines, data


_STR_TAG, _MERGE_TAG = "tag:yaml.org,2002:str", "tag:yaml.org,2002:merge"
_TAG_WORDS = {"int": "a number", "float": "a number", "bool": "a yes/no value", "null": "null (no value)", "timestamp": "a date"}


def _key_lines(root: yaml.Node | None, path: Path) -> dict[tuple, int]:
    """The 1-based line of every key path. Keys are names: one that YAML reads as a number, a date or
    null is refused, and so is a key given twice in a mapping (YAML would keep the last, silently)."""
    lines: dict[tuple, int] = {}

    def key_of(key_node: yaml.Node, loc: tuple) -> str:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag in (_STR_TAG, _MERGE_TAG):
            return key_node.value
        line = key_node.start_mark.line + 1
        if isinstance(key_node, yaml.ScalarNode):
            kind = _TAG_WORDS.get(key_node.tag.rsplit(":", 1)[-1], key_node.tag)
            raise StandardError(path, line, _dotted(loc + (key_node.value,)),
                                f"a key is a name, but YAML reads {_clip(key_node.value)!r} as {kind}")
        shape = "a list" if isinstance(key_node, yaml.SequenceNode) else "a mapping"
        raise StandardError(path, line, _dotted(loc) or None, f"a key is a name, not {shape}")

    def walk(node: yaml.Node, loc: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                key, line = key_of(key_node, loc), key_node.start_mark.line + 1
                if key in first:
                    raise StandardError(path, line, _dotted(loc + (key,)), f"duplicate key (first at line {first[key]})")
                first[key] = lines[loc + (key,)] = line
                walk(value_node, loc + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[loc + (index,)] = item.start_mark.line + 1
                walk(item, loc + (index,))

    if root is not None:
        walk(root, ())
    return lines


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(value: Any, loc: tuple, path: Path, lines: dict[tuple, int]) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string, as a shell does: the default stands in for
    a VAR that is unset or empty; an unset VAR without a default is an error."""
    if isinstance(value, dict):
        return {k: _expand_env(v, loc + (k,), path, lines) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, loc + (i,), path, lines) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value or (value is not None and default is None):  # set, and either not empty or with no default
            return value
        if default is None:
            raise StandardError(path, _line_of(loc, lines), _dotted(loc), f"environment variable {name} is not set and has no default")
        return default

    return _ENV.sub(substitute, value)



def _located(exc: ValidationError, path: Path, lines: dict[tuple, int]) -> StandardError:
    """Turn pydantic's first error into `file:line: key.path: message`."""
    errors = exc.errors()
    first = errors[0]
    loc = tuple(part for part in first["loc"] if not (isinstance(part, str) and "[" in part))
    kind, value = first["type"], first.get("input")
    if kind == "extra_forbidden":
        message = f"unknown key {loc[-1]!r}"
        known = _field_names(loc[:-1])
        suggestion = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.5)
        message += f" (did you mean {suggestion[0]!r}?)" if suggestion else f" (valid keys: {', '.join(known)})"
    elif kind == "missing":
        message = "required key is missing"
    else:
        bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
        if kind in bounds:
            bound = next(iter(first["ctx"].values()))
            message = f"must be {bounds[kind]} {bound if isinstance(bound, int) else f'{bound:g}'}, got {_shown(value)}"
        elif kind == "finite_number":
            message = f"must be a finite number, got {_shown(value)}"
        elif kind == "string_pattern_mismatch" and first["ctx"]["pattern"] in _PATTERN_WORDS:
            message = f"{_PATTERN_WORDS[first['ctx']['pattern']]}, got {_shown(value)}"
        else:
            message = first["msg"].replace("Value error, ", "")
            message = message if message[:2].isupper() else message[0].lower() + message[1:]  # keep "YAML"
            message += f" ({_shown(value)})" if ", got " in message else f", got {_shown(value)}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return StandardError(path, _line_of(loc, lines), _dotted(loc), message)

