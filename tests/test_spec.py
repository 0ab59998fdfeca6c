"""The standard: strict keys, located errors, environment expansion, path resolution, hashing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nlpstd.errors import StandardError
from nlpstd.spec import check_files, load_standard, with_changes

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


def test_every_runtime_setting_states_its_role_and_where_it_applies():
    """The spec hash and the local run's warning are built from what each runtime field says."""
    from nlpstd.spec import CLUSTER, LOCAL, NOT_RECIPE, RuntimeSpec, runtime_fields

    assert sorted(runtime_fields(LOCAL) + runtime_fields(CLUSTER)) == sorted(RuntimeSpec.model_fields)
    assert set(runtime_fields(CLUSTER)) <= set(NOT_RECIPE)
    assert {"device", "precision"}.isdisjoint(NOT_RECIPE)


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


# -- hostile or unusual YAML that is still a standard


def test_env_default_stands_in_for_an_empty_variable_as_in_a_shell(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("NLPSTD_TEST_ROOT", "")
    std = load_standard(write(tmp_path, GOOD.replace("data/train.txt", "${NLPSTD_TEST_ROOT:-/srv}/train.txt")))
    assert std.data.train.path == "/srv/train.txt"


def test_env_variable_without_default_may_be_set_empty(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("NLPSTD_TEST_PREFIX", "")
    std = load_standard(write(tmp_path, GOOD + "description: ${NLPSTD_TEST_PREFIX}tagger\n"))
    assert std.description == "tagger"


def test_a_few_aliases_and_a_merge_key_still_load(tmp_path: Path):
    text = GOOD.replace("finetune:\n  lr: 5.0e-5\n", """\
pretrain: &loop
  lr: &lr 5.0e-5
  batch_size: 16
finetune:
  <<: *loop
  epochs: 2
export: {parity: {max_metric_drop: *lr}}
""")
    std = load_standard(write(tmp_path, text))
    assert (std.finetune.lr, std.finetune.batch_size, std.finetune.epochs) == (5.0e-5, 16, 2)
    assert std.export.parity.max_metric_drop == 5.0e-5


def test_an_alias_bomb_is_refused_before_anything_expands(tmp_path: Path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcdefghi", "bcdefghij"))
    started = time.perf_counter()
    with pytest.raises(StandardError, match=r"std.yaml:3: invalid YAML: more than 16 aliases"):
        load_standard(write(tmp_path, bomb))
    assert time.perf_counter() - started < 1


def test_a_key_written_twice_names_both_lines(tmp_path: Path):
    with pytest.raises(StandardError, match=r"std.yaml:10: finetune.lr: duplicate key \(first at line 9\)"):
        load_standard(write(tmp_path, GOOD + "  lr: 1.0e-4\n"))


def test_a_name_of_63_characters_is_the_longest_accepted(tmp_path: Path):
    assert load_standard(write(tmp_path, GOOD.replace("name: demo", "name: " + "n" * 63))).name == "n" * 63
    with pytest.raises(StandardError, match="at most 63 characters"):
        load_standard(write(tmp_path, GOOD.replace("name: demo", "name: " + "n" * 64)))


def test_cron_names_ranges_and_steps_within_bounds_load(tmp_path: Path):
    std = load_standard(write(tmp_path, GOOD + 'schedule: {cron: "*/15 0-6 1,15 JAN-MAR MON-FRI"}\n'))
    assert std.schedule.kfp_cron() == "0 */15 0-6 1,15 JAN-MAR MON-FRI"


def test_a_relative_path_in_a_sweep_change_resolves_beside_the_standard(tmp_path: Path, tiny_base: Path):
    folder = tmp_path / "other-model"
    shutil.copytree(tiny_base, folder)
    std = load_standard(write(tmp_path, GOOD))
    assert with_changes(std, {"model.base": "./other-model"}).model.base == str(folder)


# -- the base model's positions, read from its config.json


def with_local_base(tmp_path: Path, tiny_base: Path, config: dict, max_length: int) -> Path:
    """A standard on a copy of the tiny base whose config.json is updated with `config` (None removes a key)."""
    shutil.copytree(tiny_base, tmp_path / "base")
    settings = json.loads((tmp_path / "base" / "config.json").read_text())
    settings.update(config)
    settings = {key: value for key, value in settings.items() if value is not None}
    (tmp_path / "base" / "config.json").write_text(json.dumps(settings))
    text = GOOD.replace("model: {base: minilm-l6}", "model: {base: ./base}")
    return write(tmp_path, text.replace("  format: conll\n", f"  format: conll\n  max_length: {max_length}\n"))


def test_max_length_may_use_every_position_of_the_base(tmp_path: Path, tiny_base: Path):
    std = load_standard(with_local_base(tmp_path, tiny_base, {"max_position_embeddings": 64}, 64))
    assert std.data.max_length == 64


def test_max_length_beyond_the_bases_positions_names_its_line(tmp_path: Path, tiny_base: Path):
    with pytest.raises(StandardError, match=r"std.yaml:5: data.max_length: 65 exceeds the 64 positions"):
        load_standard(with_local_base(tmp_path, tiny_base, {"max_position_embeddings": 64}, 65))


def test_a_base_of_a_family_nlpstd_does_not_support_is_refused_at_load(tmp_path: Path, tiny_base: Path):
    with pytest.raises(StandardError, match=r"std.yaml:\d+: model.base: .*config.json: model_type: .*roberta"):
        load_standard(with_local_base(tmp_path, tiny_base, {"model_type": "roberta"}, 32))


def test_pretrain_max_length_is_not_compared_while_pretraining_is_off(tmp_path: Path, tiny_base: Path):
    std = load_standard(with_local_base(tmp_path, tiny_base, {"max_position_embeddings": 64}, 32))
    assert std.pretrain.max_length > 64 and not std.pretrain.enabled


def test_a_base_config_without_positions_is_not_compared(tmp_path: Path, tiny_base: Path):
    std = load_standard(with_local_base(tmp_path, tiny_base, {"max_position_embeddings": None}, 4096))
    assert std.data.max_length == 4096


def test_an_uncached_hub_base_is_left_to_the_model_loader_while_online(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    text = GOOD.replace("model: {base: minilm-l6}", "model: {base: nlpstd-tests/never-cached}")
    assert load_standard(write(tmp_path, text)).model.base == "nlpstd-tests/never-cached"



def test_loading_a_standard_imports_neither_torch_nor_transformers(tmp_path: Path):
    path = write(tmp_path, GOOD)
    code = ("import sys; from nlpstd.spec import load_standard; load_standard(sys.argv[1]); "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


# -- data paths


def test_check_files_refuses_a_named_pipe_without_opening_it(tmp_path: Path):
    path = write(tmp_path, GOOD)
    (tmp_path / "data").mkdir()
    os.mkfifo(tmp_path / "data" / "train.txt")
    with pytest.raises(StandardError, match=r"std.yaml:5: data.train: .*train.txt is a named pipe, not a file"):
        check_files(load_standard(path), path)
