"""The key reference: every key of a standard, its type, default, role and description, rendered
from the schema so that README cannot disagree with it.

    python -m nlpstd.spec.reference                    # print the reference (Markdown)
    python -m nlpstd.spec.reference --write README.md  # replace the block between the markers
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from nlpstd.spec.schema import SPEED, Standard, _model_in, field_role

BEGIN, END = "<!-- keys:begin -->", "<!-- keys:end -->"


def render() -> str:
    """The reference as Markdown: one table row per key, sections before their keys."""
    rows = ["### Every key", "",
            "Generated from the schema (`python -m nlpstd.spec.reference --write README.md`); a test keeps it current.",
            "*speed* keys change how fast, where or when a run goes, not what it computes: they stay out of the spec",
            "hash. Of the runtime keys, *local* ones apply on any runner, *cluster* ones only to a cluster's pipeline tasks.",
            "",
            "| Key | Type | Default | Role | Description |",
            "| --- | --- | --- | --- | --- |"]
    rows += _rows(Standard, "")
    return "\n".join(rows) + "\n"


def _rows(model: type[BaseModel], prefix: str, given: BaseModel | None = None) -> list[str]:
    """Rows of `model`'s keys; `given` is the section its parent's default builds (runtime.training's
    cpu is "4", not the null of Resources), whose values are then the defaults."""
    rows = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        role = field_role(model, name)
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        shown_role = role + (f", {extra['applied']}" if "applied" in extra else "")
        section = _model_in(field.annotation)
        default = _default(field) if given is None else _shown(getattr(given, name))
        rows.append(f"| `{key}` | {_cell(_type(field.annotation))} | {_cell(default)} | "
                    f"{shown_role if role == SPEED or 'applied' in extra else ''} | {_cell(field.description or '')} |")
        if section is not None:
            inside = "[]." if typing.get_origin(_unoptional(field.annotation)) is list else "."
            built = _built(field) if given is None else getattr(given, name)
            rows += _rows(section, key + inside, built if isinstance(built, BaseModel) else None)
    return rows


def _unoptional(annotation: Any) -> Any:
    """`X | None` -> X (Annotated layers dropped)."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return _unoptional(args[0])
    return annotation


def _type(annotation: Any) -> str:
    annotation = _unoptional(annotation)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " | ".join(str(value) for value in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    if origin is list:
        return f"list of {_type(typing.get_args(annotation)[0])}"
    if origin is dict:
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _built(field: FieldInfo) -> Any:
    """The field's default value (None when it is required)."""
    if field.is_required():
        return None
    return field.default_factory() if field.default_factory is not None else field.default


def _default(field: FieldInfo) -> str:
    return "required" if field.is_required() else _shown(_built(field))


def _shown(value: Any) -> str:
    """A default as YAML writes it, on one line."""
    if value is PydanticUndefined or isinstance(value, BaseModel):
        return ""  # a section: its keys' defaults are on their own rows
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1000).strip().removesuffix("...").strip()


def _cell(text: str) -> str:
    """Text in a Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def replace_block(text: str, block: str) -> str:
    """`text` with what lies between the markers replaced by `block`."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + block + text[end:]


def block_in(text: str) -> str:
    """What lies between the markers of `text` (without the newline after the first marker)."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].removeprefix("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nlpstd.spec.reference", description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, metavar="FILE", help=f"replace the block between {BEGIN} and {END} in FILE")
    args = parser.parse_args(argv)
    if args.write is None:
        sys.stdout.write(render())
        return 0
    args.write.write_text(replace_block(args.write.read_text(encoding="utf-8"), render()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
