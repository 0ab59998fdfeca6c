"""Smaller models from the finetune stage: a layer subset of the base (`model.keep_layers`), a student
distilled from a teacher (`finetune.distill`), and a model pruned after fine-tuning, then recovered
(`compress.prune`); each validated, resumable after `kill -9`, and exported like any other."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForTokenClassification, AutoTokenizer, BertForTokenClassification

from conftest import killed_then_rerun, ner_yaml, write_conll_splits, write_standard
from nlpstd.errors import NlpstdError, StandardError
from nlpstd.models.build import load_model
from nlpstd.runner import run_standard
from nlpstd.spec import load_standard
from nlpstd.train.distill import Distilled

TEXTS = ["Maria Smith flew to Tokyo for Siemens .", "nothing here"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_base: Path) -> Path:
    """The tiny NER standard's fine-tuned model: a teacher of the same labels and tokenizer."""
    folder = tmp_path_factory.mktemp("teacher")
    write_conll_splits(folder)
    run_standard(write_standard(folder, ner_yaml(tiny_base)), folder / "out", stages=["data-prep", "finetune"], tracking=False)
    return folder / "out" / "finetune" / "model"


def _standard(folder: Path, base: Path, *, finetune: str = "", model: str = "", extra: str = "") -> Path:
    """The tiny NER standard with settings added to its `finetune` and `model` sections, and sections after."""
    folder.mkdir(parents=True, exist_ok=True)
    write_conll_splits(folder)
    text = ner_yaml(base).replace("finetune: {", f"finetune: {{{finetune}" + (", " if finetune else ""))
    text = text.replace(f"model: {{base: {base}}}", f"model: {{base: {base}{', ' + model if model else ''}}}")
    return write_standard(folder, text + extra)


def _metrics(out: Path) -> dict:
    return json.loads((out / "finetune" / "metrics.json").read_text())


def _losses(out: Path) -> list[tuple[int, float]]:
    history = json.loads((out / "finetune" / "history.json").read_text())
    return [(point["step"], point["loss"]) for point in history if "loss" in point]


def _same_weights(a: Path, b: Path) -> bool:
    left, right = load_file(a / "finetune" / "model" / "model.safetensors"), load_file(b / "finetune" / "model" / "model.safetensors")
    return left.keys() == right.keys() and all(torch.equal(left[key], right[key]) for key in left)


# -- every new key is checked where the standard is loaded, at its own line and key


@pytest.mark.parametrize(("finetune", "model", "extra", "field", "message"), [
    ("", "keep_layers: [1, 0]", "", "model.keep_layers", "not ascending"),
    ("", "keep_layers: [0, 5]", "", "model.keep_layers", "not one of the 2 layers"),
    ("", "keep_layers: [0, 1]", "", "model.keep_layers", "keeps all 2 layers"),
    ("", "keep_layers: every-third", "", "model.keep_layers", "every-other"),
    ("distill: {temperature: 2.0}", "", "", "finetune.distill.teacher", "required"),
    ("distill: {teacher: ./t, temperature: 0}", "", "", "finetune.distill.temperature", "> 0"),
    ("distill: {teacher: ./t, alpha: 1.5}", "", "", "finetune.distill.alpha", "<= 1"),
    ("distill: {teacher: ./t, cache: always}", "", "", "finetune.distill.cache", "'auto', 'on' or 'off'"),
    ("distill: {teacher: ./t, init: student}", "", "", "finetune.distill.init", "'base' or 'teacher'"),
    ('distill: {teacher: ./t, cache: "on"}, augment: {probability: 0.3}', "", "", "finetune.distill.cache", "augmentation"),
    ("", "", "compress: {prune: {heads: 0.5}}\n", "compress.prune.heads", "prune ffn or layers instead"),
    ("", "", "compress: {prune: {importance_batches: 4}}\n", "compress.prune", "prunes nothing"),
    ("", "", "compress: {recovery: {steps: 10}}\n", "compress", "compresses nothing"),
    ("", "", "compress: {prune: {ffn: 1.5}}\n", "compress.prune.ffn", "< 1"),
    ("", "", "compress: {prune: {layers: 0}}\n", "compress.prune.layers", "> 0"),
    ("", "", "compress: {prune: {ffn: 0.5}, recovery: {steps: -1}}\n", "compress.recovery.steps", ">= 0"),
    ("", "", "compress: {factorize: {rank: 8, energy: 0.9}}\nexport: {formats: [safetensors, onnx], serving: {format: onnx}}\n",
     "compress.factorize", "exactly one of rank"),
    ("", "", "compress: {factorize: {energy: 1.5}}\n", "compress.factorize.energy", "<= 1"),
    ("", "", "compress: {factorize: {rank: 8, modules: [heads]}}\n", "compress.factorize.modules[0]", "'ffn' or 'attention'"),
    ("", "", "compress: {factorize: {rank: 8}}\n", "export.serving.format", "served from ONNX"),
    ("", "", "compress: {prune: {ffn: 0.5, importance_batches: 0}}\n", "compress.prune.importance_batches", "> 0"),
    ("method: lora", "", "compress: {prune: {ffn: 0.5}}\n", "compress", "LoRA adapter"),
    ("seeds: [1, 2]", "", "compress: {prune: {ffn: 0.5}}\nexport: {formats: [safetensors, onnx], serving: {format: onnx}}\n",
     "compress", "ensemble"),
])
def test_a_compression_setting_that_cannot_work_is_a_located_error(tmp_path: Path, tiny_base: Path, finetune, model, extra,
                                                                   field, message):
    with pytest.raises(StandardError) as caught:
        load_standard(_standard(tmp_path, tiny_base, finetune=finetune, model=model, extra=extra))
    assert caught.value.field == field and caught.value.line is not None
    assert message in caught.value.message


def test_compression_under_torchrun_is_refused(tmp_path: Path, tiny_base: Path):
    standard = _standard(tmp_path, tiny_base, extra="compress: {prune: {ffn: 0.5}}\n")
    standard.write_text(standard.read_text().replace("runtime: {threads: 1}", "runtime: {threads: 1, gpu: {count: 2}}"))
    with pytest.raises(StandardError) as caught:
        load_standard(standard)
    assert caught.value.field == "compress" and "one process" in caught.value.message


def test_keep_layers_needs_a_base_to_keep_them_of(tmp_path: Path):
    text = """\
        name: scratch
        task: token-classification
        data: {format: conll, train: train.txt, validation: dev.txt}
        tokenizer: {train: wordpiece}
        model: {size: tiny, keep_layers: [0]}
        pretrain: {enabled: true, corpus: {files: [c.txt], held_out_fraction: 0.1}}
    """
    with pytest.raises(StandardError) as caught:
        load_standard(write_standard(tmp_path, text))
    assert caught.value.field == "model.keep_layers" and "model.layers" in caught.value.message


# -- model.keep_layers


def test_keep_layers_builds_the_task_model_from_those_layers_of_the_base(tmp_path: Path, tiny_base: Path):
    out = tmp_path / "out"
    run_standard(_standard(tmp_path, tiny_base, model="keep_layers: every-other"), out, stages=["data-prep", "finetune"],
                 tracking=False)
    config = json.loads((out / "finetune" / "model" / "config.json").read_text())
    assert config["num_hidden_layers"] == 1
    reloaded = AutoModelForTokenClassification.from_pretrained(out / "finetune" / "model")
    assert len(reloaded.bert.encoder.layer) == 1


# -- finetune.distill


def test_a_distilled_run_learns_from_the_teacher_and_reports_the_teachers_score(tmp_path: Path, tiny_base: Path, teacher: Path,
                                                                              monkeypatch: pytest.MonkeyPatch):
    calls = []
    plain = Distilled.loss
    monkeypatch.setattr(Distilled, "loss", lambda self, model, batch: calls.append(1) or plain(self, model, batch))
    out = tmp_path / "out"
    standard = _standard(tmp_path, tiny_base, finetune=f"distill: {{teacher: {teacher}}}", model="keep_layers: [0]")
    run_standard(standard, out, stages=["data-prep", "finetune"], tracking=False)

    assert calls, "finetune.distill reaches the training loop"
    metrics = _metrics(out)
    assert 0 <= metrics["teacher_validation_f1"] <= 1 and 0 <= metrics["best_validation_f1"] <= 1
    assert metrics["teacher_parameters"] > metrics["parameters"], "a one-layer student of a two-layer teacher"
    assert metrics["teacher_logits_cached"] == 1, "three epochs without augmentation: computed once"


def test_teacher_self_trains_the_standards_own_model_first_and_distils_from_it(tmp_path: Path, tiny_base: Path, teacher: Path):
    out = tmp_path / "out"
    standard = _standard(tmp_path, tiny_base, finetune="distill: {teacher: self}", model="keep_layers: [0]")
    run_standard(standard, out, stages=["data-prep", "finetune"], tracking=False)

    metrics, plain = _metrics(out), json.loads((teacher.parent / "metrics.json").read_text())
    assert metrics["teacher_validation_f1"] == plain["best_validation_f1"], "the teacher is the standard's own model"
    assert metrics["teacher_parameters"] == plain["parameters"] > metrics["parameters"]
    assert not (out / "finetune" / "teacher").exists(), "the teacher is a means, not an output"


def test_init_teacher_starts_the_student_as_the_teachers_own_layers_and_head(tmp_path: Path, tiny_base: Path, teacher: Path):
    out = tmp_path / "out"
    standard = _standard(tmp_path, tiny_base, finetune=f"distill: {{teacher: {teacher}, init: teacher}}", model="keep_layers: [1]")
    standard.write_text(standard.read_text().replace("lr: 3.0e-3", "lr: 1.0e-9").replace("epochs: 3", "epochs: 1"))
    run_standard(standard, out, stages=["data-prep", "finetune"], tracking=False)

    student = load_file(out / "finetune" / "model" / "model.safetensors")
    source = load_file(teacher / "model.safetensors")
    query = "bert.encoder.layer.{}.attention.self.query.weight"
    torch.testing.assert_close(student[query.format(0)], source[query.format(1)], atol=1e-5, rtol=0)
    torch.testing.assert_close(student["classifier.weight"], source["classifier.weight"], atol=1e-5, rtol=0)


def test_the_model_card_says_a_student_was_distilled_from_the_standards_own_model(tmp_path: Path, tiny_base: Path):
    from nlpstd.export.card import _compression

    std = load_standard(_standard(tmp_path, tiny_base, finetune="distill: {teacher: self, init: teacher}", model="keep_layers: [1]"))
    assert _compression(std) == [
        "- Layers: layers 1 of the base kept",
        "- Distilled from this standard's own fine-tuned model (temperature 2, teacher weight 0.5, labels 0.5, starting from "
        "the teacher's own weights)",
    ]


def test_with_cache_off_the_teacher_runs_on_every_micro_batch(tmp_path: Path, tiny_base: Path, teacher: Path):
    out = tmp_path / "out"
    standard = _standard(tmp_path, tiny_base, finetune=f"distill: {{teacher: {teacher}, cache: 'off'}}")
    run_standard(standard, out, stages=["data-prep", "finetune"], tracking=False)
    assert _metrics(out)["teacher_logits_cached"] == 0


def test_a_teacher_of_other_labels_is_refused_before_training(tmp_path: Path, tiny_base: Path):
    other = tmp_path / "other-teacher"
    BertForTokenClassification.from_pretrained(tiny_base, num_labels=3, id2label={0: "O", 1: "B-X", 2: "I-X"},
                                               label2id={"O": 0, "B-X": 1, "I-X": 2}).save_pretrained(other)
    AutoTokenizer.from_pretrained(tiny_base).save_pretrained(other)
    standard = _standard(tmp_path / "run", tiny_base, finetune=f"distill: {{teacher: {other}}}")
    with pytest.raises(NlpstdError, match="finetune.distill.teacher: its labels"):
        run_standard(standard, tmp_path / "out", stages=["data-prep", "finetune"], tracking=False)
    assert not (tmp_path / "out" / "finetune").exists()


def test_a_missing_teacher_folder_is_named(tmp_path: Path, tiny_base: Path):
    standard = _standard(tmp_path, tiny_base, finetune="distill: {teacher: ./no-such-teacher}")
    with pytest.raises(NlpstdError, match=r"finetune.distill.teacher: .*no-such-teacher: no such folder"):
        run_standard(standard, tmp_path / "out", stages=["data-prep", "finetune"], tracking=False)


def test_sigkill_mid_distillation_then_rerun_resumes_and_matches_an_uninterrupted_run(tmp_path: Path, tiny_base: Path,
                                                                                   teacher: Path):
    settings = f"distill: {{teacher: {teacher}}}"
    standard = _standard(tmp_path, tiny_base, finetune=settings, model="keep_layers: [1]")
    standard.write_text(standard.read_text().replace("epochs: 3", "epochs: 20").replace("checkpoint_every: 10", "checkpoint_every: 25"))
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "nlpstd.cli", "run", str(standard), "--out", str(out), "--no-tracking"]
    killed_then_rerun(command, out / ".finetune.partial" / "checkpoints" / "last" / "state.json")

    reference = tmp_path / "reference"
    run_standard(standard, reference, stages=["data-prep", "finetune"], tracking=False)
    assert _same_weights(out, reference)
    assert _losses(out) == _losses(reference)


# -- compress.prune


def _every_stage(tmp_path_factory, base: Path, name: str, extra: str) -> Path:
    """Every stage of the tiny NER standard with `extra` sections; the run's output folder."""
    folder = tmp_path_factory.mktemp(name)
    run_standard(_standard(folder, base, extra=extra), folder / "out", tracking=False)
    return folder / "out"


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory, tiny_base: Path) -> Path:
    """Half the FFN neurons pruned, exported to ONNX and int8."""
    return _every_stage(tmp_path_factory, tiny_base, "pruned", "compress: {prune: {ffn: 0.5}, recovery: {steps: 12}}\n"
                        "export: {formats: [safetensors, onnx, onnx-int8]}\n")


def test_a_pruned_model_is_saved_smaller_with_its_scores_before_and_after(pruned_run: Path):
    config = json.loads((pruned_run / "finetune" / "model" / "config.json").read_text())
    assert config["intermediate_size"] == 64, "half of 128"
    metrics = _metrics(pruned_run)
    assert metrics["parameters"] < metrics["dense_parameters"]
    assert metrics["ffn_width"] == 64 and metrics["recovery_steps"] == 12
    for key in ("dense_best_validation_f1", "compressed_validation_f1", "best_validation_f1"):
        assert 0 <= metrics[key] <= 1
    assert metrics["steps"] == metrics["total_steps"] > 12, "fine-tuning and recovery, one step count"
    assert not (pruned_run / "finetune" / "dense").exists(), "the model before pruning is not published"


def test_a_pruned_model_reloads_with_plain_transformers_and_predicts_as_nlpstd_loads_it(pruned_run: Path):
    folder = pruned_run / "finetune" / "model"
    tokens = dict(AutoTokenizer.from_pretrained(folder)(TEXTS, padding=True, return_tensors="pt"))
    plain = AutoModelForTokenClassification.from_pretrained(folder).eval()
    ours = load_model(folder, "token-classification").eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(**tokens).logits, ours(**tokens).logits, rtol=0, atol=0)


def test_a_pruned_model_exports_and_its_card_says_how_it_was_made(pruned_run: Path):
    export = pruned_run / "export"
    formats = json.loads((export / "parity.json").read_text())["formats"]
    assert formats["onnx"]["max_abs_diff"] <= 1e-3 and "metric_drop" in formats["onnx-int8"]
    card = (export / "model" / "README.md").read_text()
    assert "Pruned after fine-tuning: 50% of the feed-forward neurons removed" in card


def test_sigkill_mid_recovery_keeps_the_fine_tuned_model_and_matches_an_uninterrupted_run(tmp_path: Path, tiny_base: Path):
    standard = _standard(tmp_path, tiny_base, extra="compress: {prune: {ffn: 0.5, layers: 0.5}, recovery: {steps: 200}}\n")
    standard.write_text(standard.read_text().replace("checkpoint_every: 10", "checkpoint_every: 25"))
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "nlpstd.cli", "run", str(standard), "--out", str(out), "--no-tracking"]
    _, rerun = killed_then_rerun(command, out / ".finetune.partial" / "checkpoints" / "last" / "state.json")
    assert "the model before compression was finished by an earlier run" in rerun.stdout + rerun.stderr

    reference = tmp_path / "reference"
    run_standard(standard, reference, stages=["data-prep", "finetune"], tracking=False)
    assert _same_weights(out, reference)
    assert _losses(out) == _losses(reference)
    assert _metrics(out)["pruned_layers"] == 1


# -- compress.factorize


@pytest.fixture(scope="module")
def factorized_run(tmp_path_factory, tiny_base: Path) -> Path:
    """The FFN matrices factorized to rank 8, served from ONNX."""
    return _every_stage(tmp_path_factory, tiny_base, "factorized", "compress: {factorize: {rank: 8}, recovery: {steps: 12}}\n"
                        "export: {formats: [safetensors, onnx], serving: {format: onnx}}\n")


def test_a_factorized_model_records_its_plan_and_nlpstd_loads_it_with_thin_matrices(factorized_run: Path):
    folder = factorized_run / "finetune" / "model"
    plan = json.loads((folder / "nlpstd.json").read_text())["factorized"]
    assert len(plan) == 4 and set(plan.values()) == {8}, "the up and down FFN matrices of both layers"
    model = load_model(folder, "token-classification")
    assert model.bert.encoder.layer[0].intermediate.dense.first.weight.shape == (8, 64)
    metrics = _metrics(factorized_run)
    assert metrics["factorized_matrices"] == 4 and metrics["parameters"] < metrics["dense_parameters"]


def test_a_factorized_model_exports_to_onnx_that_predicts_as_torch(factorized_run: Path):
    formats = json.loads((factorized_run / "export" / "parity.json").read_text())["formats"]
    assert formats["onnx"]["max_abs_diff"] <= 1e-3 and formats["onnx"]["agreement"] >= 0.999
    card = (factorized_run / "export" / "model" / "README.md").read_text()
    assert "Factorized after fine-tuning: the ffn matrices as two of rank 8" in card


def test_a_factorization_entry_that_is_not_a_plan_is_a_located_error(factorized_run: Path, tmp_path: Path):
    folder = tmp_path / "model"
    shutil.copytree(factorized_run / "finetune" / "model", folder)
    info = json.loads((folder / "nlpstd.json").read_text())
    (folder / "nlpstd.json").write_text(json.dumps({**info, "factorized": {"bert.encoder.layer.0.intermediate.dense": "8"}}))
    with pytest.raises(NlpstdError, match=r"nlpstd.json.*factorized.*expected \{module path: rank\}"):
        load_model(folder, "token-classification")


def test_without_compression_settings_nothing_is_pruned_or_distilled(tmp_path: Path, tiny_base: Path):
    out = tmp_path / "out"
    run_standard(_standard(tmp_path, tiny_base), out, stages=["data-prep", "finetune"], tracking=False)
    metrics = _metrics(out)
    assert not {"dense_parameters", "teacher_validation_f1", "pruned_layers"} & metrics.keys()
    assert json.loads((out / "finetune" / "model" / "config.json").read_text())["intermediate_size"] == 128
    shutil.rmtree(out)
