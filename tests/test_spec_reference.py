"""README's key reference is generated from the schema; these tests keep the two in step."""

from __future__ import annotations

from pathlib import Path

from nlpstd.spec import Standard
from nlpstd.spec.reference import block_in, render, replace_block

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_key_reference_matches_the_schema():
    assert block_in(README.read_text(encoding="utf-8")) == render(), (
        "README's key reference is stale: run python -m nlpstd.spec.reference --write README.md")


def test_key_reference_lists_every_top_level_key_with_its_default_and_role():
    text = render()
    for name in Standard.model_fields:
        assert f"| `{name}` |" in text
    assert "| `runtime.training.cpu` | str | '4' |" in text  # a section's own default, not the model's
    assert "| `runtime.retries` | int | 2 | speed, cluster |" in text
    assert "| `schedule` | section | null | speed |" in text


def test_writing_the_reference_replaces_only_the_block_between_the_markers():
    text = "intro\n<!-- keys:begin -->\nold\n<!-- keys:end -->\noutro\n"
    written = replace_block(text, "new\n")
    assert written == "intro\n<!-- keys:begin -->\nnew\n<!-- keys:end -->\noutro\n"
    assert block_in(written) == "new\n"
