"""The standard: strict keys, located errors, environment expansion, path resolution, hashing."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlpstd.errors import StandardError
from nlpstd.spec import check_files, load_standard

GOOD = """\
name: demo
task: token-classification
data:
  format: conll
  train: data/train.txt
  validation: {path: data/dev.txt, encoding: latin-1}
model: {base: minilm-l6}
finetune:
  lr: 5.0e-5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "std.yaml"
    path.write_text(text)
    return path


def test_relative_paths_resolve_against_the_standards_folder(tmp_path: Path):
    std = load_standard(write(tmp_path, GOOD))
    assert std.data.train.path == str(tmp_path / "data" / "train.txt")


def test_per_file_encoding_overrides_the_default(tmp_path: Path):
    std = load_standard(write(tmp_path, GOOD))
    assert std.data.encoding_of("validation") == "latin-1"
    assert std.data.encoding_of("train") == "utf-8"


def test_env_variable_with_default_expands(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("NLPSTD_TEST_ROOT", raising=False)
    std = load_standard(write(tmp_path, GOOD.replace("data/train.txt", "${NLPSTD_TEST_ROOT:-/srv}/train.txt")))
    assert std.data.train.path == "/srv/train.txt"
    monkeypatch.setenv("NLPSTD_TEST_ROOT", "/mnt/x")
    std = load_standard(write(tmp_path, GOOD.replace("data/train.txt", "${NLPSTD_TEST_ROOT:-/srv}/train.txt")))
    assert std.data.train.path == "/mnt/x/train.txt"


def test_unset_env_variable_without_default_names_line_and_key(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("NLPSTD_NOPE", raising=False)
    path = write(tmp_path, GOOD.replace("data/train.txt", "${NLPSTD_NOPE}/train.txt"))
    with pytest.raises(StandardError, match=r"std.yaml:5: data.train: environment variable NLPSTD_NOPE is not set"):
        load_standard(path)


def test_unknown_key_suggests_the_closest(tmp_path: Path):
    with pytest.raises(StandardError, match=r"std.yaml:9: finetune.lrr: unknown key 'lrr' \(did you mean 'lr'\?\)"):
        load_standard(write(tmp_path, GOOD.replace("lr: 5.0e-5", "lrr: 5.0e-5")))


def test_out_of_range_value_reads_like_the_rule(tmp_path: Path):
    with pytest.raises(StandardError, match=r"std.yaml:9: finetune.lr: must be > 0, got -1"):
        load_standard(write(tmp_path, GOOD.replace("lr: 5.0e-5", "lr: -1")))


def test_missing_required_key_is_named(tmp_path: Path):
    with pytest.raises(StandardError, match=r"task: required key is missing"):
        load_standard(write(tmp_path, GOOD.replace("task: token-classification\n", "")))


def test_incompatible_format_and_task_is_rejected(tmp_path: Path):
    with pytest.raises(StandardError, match=r"std.yaml:4: data.format: token-classification reads conll, jsonl"):
        load_standard(write(tmp_path, GOOD.replace("format: conll", "format: tsv")))


def test_gate_metric_must_exist_for_the_task(tmp_path: Path):
    text = GOOD + "evaluate:\n  gate: {metric: bleu, min: 0.5}\n"
    with pytest.raises(StandardError, match=r"std.yaml:11: evaluate.gate.metric: unknown metric 'bleu'"):
        load_standard(write(tmp_path, text))


def test_invalid_yaml_names_the_line(tmp_path: Path):
    with pytest.raises(StandardError, match=r"std.yaml:9: invalid YAML"):
        load_standard(write(tmp_path, GOOD.replace("lr: 5.0e-5", "lr: a: b")))


def test_check_files_reports_a_missing_file_at_its_key(tmp_path: Path):
    path = write(tmp_path, GOOD)
    with pytest.raises(StandardError, match=r"std.yaml:5: data.train: cannot read .*train.txt"):
        check_files(load_standard(path), path)


def test_spec_hash_leaves_out_settings_of_speed_placement_and_schedule(tmp_path: Path):
    first = load_standard(write(tmp_path, GOOD)).spec_hash()
    faster = GOOD + ("runtime: {threads: 2, loader_workers: 3, compile: 'off', cuda_graphs: true, retries: 5,\n"
                     "          gpu: {count: 2}, shm_size: 4Gi}\nschedule: {cron: '0 3 * * 1'}\n")
    assert load_standard(write(tmp_path, faster)).spec_hash() == first
    assert load_standard(write(tmp_path, GOOD + "runtime: {precision: bf16}\n")).spec_hash() != first


def test_every_runtime_setting_left_out_of_the_spec_hash_exists():
    from nlpstd.spec import NOT_RECIPE, RuntimeSpec

    assert set(NOT_RECIPE) <= set(RuntimeSpec.model_fields)


def test_spec_hash_is_stable_and_changes_with_the_recipe(tmp_path: Path):
    first = load_standard(write(tmp_path, GOOD)).spec_hash()
    assert load_standard(write(tmp_path, GOOD)).spec_hash() == first
    assert load_standard(write(tmp_path, GOOD.replace("5.0e-5", "6.0e-5"))).spec_hash() != first


def test_flat_params_use_dotted_keys(tmp_path: Path):
    params = load_standard(write(tmp_path, GOOD)).flat_params()
    assert params["finetune.lr"] == "5e-05"
    assert params["data.validation.encoding"] == "latin-1"


def test_shipped_standards_load(monkeypatch):
    monkeypatch.setenv("NLPSTD_DATA", "/data")
    folder = Path(__file__).resolve().parents[1] / "standards"
    loaded = [load_standard(path) for path in sorted(folder.glob("*.yaml"))]
    assert len(loaded) >= 4
    assert all(std.data.train.path.startswith("/data/") for std in loaded)


PRETRAIN = GOOD.replace("model: {base: minilm-l6}\n", """\
tokenizer: {train: wordpiece, vocab_size: 8000}
model: {size: mini, hidden: 384}
pretrain:
  enabled: true
  corpus:
    files: [corpus/*.txt]
    held_out: [held.txt]
""")


def test_size_builds_the_miniature_shape_with_overrides(tmp_path: Path):
    std = load_standard(write(tmp_path, PRETRAIN))
    assert std.model.architecture() == {"layers": 4, "hidden": 384, "heads": 6, "ffn": 1536}
    assert std.pretrain.corpus.files[0].path == str(tmp_path / "corpus" / "*.txt")


@pytest.mark.parametrize(("old", "new", "line", "field", "message"), [
    ("  enabled: true\n", "  enabled: false\n", 8, "model.size", "set pretrain.enabled: true"),
    ("model: {size: mini, hidden: 384}", "model: {size: mini, base: minilm-l6}", 8, "model", "exactly one of"),
    ("tokenizer: {train: wordpiece, vocab_size: 8000}\n", "", 7, "model.size", "tokenizer: {train: wordpiece}"),
    ("    held_out: [held.txt]\n", "    held_out_fraction: 0.01\n    held_out: [held.txt]\n", 11, "pretrain.corpus", "exactly one of"),
    ("    held_out: [held.txt]\n", "", 11, "pretrain.corpus", "exactly one of"),
    ("  enabled: true\n", "  enabled: true\n  batch_size: 30\n  grad_accumulation: 4\n", 12, "pretrain.grad_accumulation", "not a multiple"),
    ("    files: [corpus/*.txt]\n", "    files: [corpus/*.txt]\n    encoding: klingon\n", 13, "pretrain.corpus.encoding", "unknown text encoding"),
    ("model: {size: mini, hidden: 384}", "model: {size: mini, hidden: 384, heads: 5}", 8, "model.heads", "not divisible"),
])
def test_pretraining_settings_that_cannot_work_are_located_errors(tmp_path: Path, old, new, line, field, message):
    assert old in PRETRAIN
    with pytest.raises(StandardError) as caught:
        load_standard(write(tmp_path, PRETRAIN.replace(old, new)))
    assert (caught.value.line, caught.value.field) == (line, field)
    assert message in caught.value.message


def test_a_new_vocabulary_does_not_fit_a_base_model(tmp_path: Path):
    text = PRETRAIN.replace("model: {size: mini, hidden: 384}", "model: {base: minilm-l6}")
    with pytest.raises(StandardError, match="does not fit the base model"):
        load_standard(write(tmp_path, text))


def test_five_field_cron_gains_a_seconds_field_for_kubeflow(tmp_path: Path):
    std = load_standard(write(tmp_path, GOOD + 'schedule: {cron: "0 3 * * 1-5"}\n'))
    assert std.schedule.kfp_cron() == "0 0 3 * * 1-5"


def test_malformed_cron_names_line_and_key(tmp_path: Path):
    with pytest.raises(StandardError) as err:
        load_standard(write(tmp_path, GOOD + 'schedule:\n  cron: "every night"\n'))
    assert "std.yaml:11: schedule.cron: expected 5 fields" in str(err.value)


def test_toleration_operator_is_checked(tmp_path: Path):
    text = GOOD + "runtime:\n  gpu:\n    tolerations: [{key: nvidia.com/gpu, operator: Maybe}]\n"
    with pytest.raises(StandardError, match=r"std.yaml:12: runtime\.gpu\.tolerations\[0\]\.operator: input should be 'Equal' or 'Exists'"):
        load_standard(write(tmp_path, text))


def test_memory_request_must_be_a_kubernetes_quantity(tmp_path: Path):
    with pytest.raises(StandardError, match=r"std.yaml:12: runtime\.training\.memory"):
        load_standard(write(tmp_path, GOOD + "runtime:\n  training:\n    memory: 16 gigs\n"))


# -- finetune.token_budget


def with_budget(standard: Path, budget: str) -> Path:
    standard.write_text(standard.read_text().replace("finetune: {", f"finetune: {{token_budget: {budget}, "))
    return standard


def test_token_budget_buckets_default_to_powers_of_two_then_max_length(ner_standard: Path):
    from nlpstd.spec import budget_widths

    std = load_standard(with_budget(ner_standard, "{max_tokens: 256}"))
    assert budget_widths(std) == [16, 32], "max_length 32"


@pytest.mark.parametrize("budget, message", [
    ("{max_tokens: 16}", "does not hold one example of the widest bucket"),
    ("{max_tokens: 256, buckets: [32, 16]}", "positive and ascending"),
    ("{max_tokens: 256, buckets: [8, 16]}", "narrower than data.max_length 32"),
])
def test_impossible_token_budgets_are_located_errors(ner_standard: Path, budget: str, message: str):
    with pytest.raises(StandardError, match=message) as error:
        load_standard(with_budget(ner_standard, budget))
    assert "finetune.token_budget" in error.value.field
