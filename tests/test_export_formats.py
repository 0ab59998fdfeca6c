"""Export for serving: ONNX and int8 beside the Hugging Face folder, each checked against torch before
anything leaves the machine; the model card and the KServe manifest say what was shipped."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from kserve_schema import INFERENCE_SERVICE

from conftest import ner_yaml, sst_text, write_conll_splits
from nlpstd.errors import ParityFailed, StandardError
from nlpstd.evaluate.scoring import Scored
from nlpstd.export import destination as publication
from nlpstd.export import parity
from nlpstd.export.serving import inference_service, service_name, storage_uri
from nlpstd.runner import run_standard
from nlpstd.spec import ParitySpec, load_standard
from nlpstd.stages import export

ALL_FORMATS = "[safetensors, onnx, onnx-int8]"


def ner_body(base: Path, export_section: str) -> str:
    return ner_yaml(base) + f"export: {export_section}\n"


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory, tiny_base: Path) -> Path:
    """The tiny NER standard run once with every format, exported to a local destination."""
    folder = tmp_path_factory.mktemp("export-formats")
    write_conll_splits(folder)
    (folder / "standard.yaml").write_text(ner_body(tiny_base, f"{{formats: {ALL_FORMATS}, destination: shipped}}"))
    run_standard(folder / "standard.yaml", folder / "out", tracking=False)
    return folder


def parity_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "out" / "export" / "parity.json").read_text())


def test_each_onnx_format_ships_in_its_own_folder_with_tokenizer_and_config(ner_run: Path):
    model = ner_run / "out" / "export" / "model"
    for sub in ("onnx", "onnx-int8"):
        assert (model / sub / "model.onnx").is_file()
        assert {"config.json", "tokenizer.json", "nlpstd.json"} <= {p.name for p in (model / sub).iterdir()}
        assert not list((model / sub).glob("*.data")), "weights live inside the graph: one file to ship"
    assert (model / "onnx-int8" / "model.onnx").stat().st_size < (model / "onnx" / "model.onnx").stat().st_size / 2


def test_onnx_fp32_matches_torch_within_the_standards_tolerance(ner_run: Path):
    checks = parity_of(ner_run)
    assert checks["split"] == "test" and checks["examples"] == 24
    onnx = checks["formats"]["onnx"]
    assert onnx["max_abs_diff"] <= 1e-3 and onnx["agreement"] >= 0.999
    assert onnx["f1"] == pytest.approx(checks["formats"]["torch"]["f1"])


def test_int8_is_compared_with_torch_and_with_the_fp32_graph_it_came_from(ner_run: Path):
    int8 = parity_of(ner_run)["formats"]["onnx-int8"]
    assert {"agreement", "agreement_with_onnx", "metric_drop", "max_abs_diff", "f1"} <= set(int8)
    assert int8["max_abs_diff"] > 0, "quantized logits differ from fp32"
    metrics = json.loads((ner_run / "out" / "export" / "metrics.json").read_text())
    assert metrics["onnx_int8_f1"] == int8["f1"] and metrics["onnx_int8_size_bytes"] > 0


def test_the_destination_receives_every_format(ner_run: Path):
    shipped = Path(publication.current(str(ner_run / "shipped"))["uri"])
    assert shipped.parent == ner_run / "shipped"
    assert (shipped / "model.safetensors").is_file()
    assert (shipped / "onnx" / "model.onnx").is_file() and (shipped / "onnx-int8" / "model.onnx").is_file()


def test_model_card_has_a_row_per_format_with_its_parity(ner_run: Path):
    card = (ner_run / "out" / "export" / "model" / "README.md").read_text()
    assert "## Formats" in card
    for fmt, file in (("safetensors", "model.safetensors"), ("onnx", "onnx/model.onnx"), ("onnx-int8", "onnx-int8/model.onnx")):
        assert f"| {fmt} | `{file}` |" in card
    assert "nlpstd predict path/to/this/folder/onnx-int8/model.onnx" in card


def test_parity_failure_stops_export_and_nothing_reaches_the_destination(ner_run: Path, tmp_path: Path, tiny_base: Path):
    body = ner_body(tiny_base, f"{{formats: {ALL_FORMATS}, destination: {tmp_path / 'dest'}, parity: {{max_abs_diff: 1.0e-12}}}}")
    std = load_standard_text(ner_run, body)
    out = ner_run / "out"
    with pytest.raises(ParityFailed, match=r"onnx: max \|Δlogit\| .* > export.parity.max_abs_diff 1e-12"):
        export.run(std, out / "data-prep", out / "finetune" / "model", out / "evaluate", tmp_path / "export")
    assert not (tmp_path / "dest").exists()
    assert not (tmp_path / "export").exists(), "no half-written export folder either"


def test_only_int8_listed_checks_the_fp32_graph_without_shipping_it(ner_run: Path, tmp_path: Path, tiny_base: Path):
    std = load_standard_text(ner_run, ner_body(tiny_base, "{formats: [safetensors, onnx-int8]}"))
    out = ner_run / "out"
    export.run(std, out / "data-prep", out / "finetune" / "model", out / "evaluate", tmp_path / "export")
    model = tmp_path / "export" / "model"
    assert (model / "onnx-int8" / "model.onnx").is_file() and not (model / "onnx").exists()
    assert "onnx" in parity_of_folder(tmp_path / "export")["formats"]


def parity_of_folder(folder: Path) -> dict:
    return json.loads((folder / "parity.json").read_text())


def load_standard_text(run_dir: Path, body: str):
    """A variant of the run's standard, resolved in the run's folder (same data files)."""
    path = run_dir / "variant.yaml"
    path.write_text(body)
    return load_standard(path)


def test_classification_export_keeps_accuracy_in_every_format(tmp_path: Path, tiny_base: Path):
    (tmp_path / "train.tsv").write_text(sst_text(96))
    (tmp_path / "dev.tsv").write_text(sst_text(24, offset=300))
    (tmp_path / "standard.yaml").write_text(textwrap.dedent(f"""
        name: tiny-cls
        task: sequence-classification
        data: {{format: tsv, train: train.tsv, validation: dev.tsv, text_column: sentence, max_length: 32}}
        model: {{base: {tiny_base}}}
        finetune: {{epochs: 3, lr: 3.0e-3, batch_size: 8, checkpoint_every: 10}}
        evaluate: {{metrics: [accuracy, f1], gate: {{metric: accuracy, min: 0.0}}}}
        export: {{formats: {ALL_FORMATS}}}
        runtime: {{threads: 1}}
    """))
    run_standard(tmp_path / "standard.yaml", tmp_path / "out", tracking=False)
    checks = parity_of_folder(tmp_path / "out" / "export")
    assert checks["split"] == "validation", "no test split: parity reads validation"
    assert checks["formats"]["onnx"]["agreement"] == 1.0
    assert checks["formats"]["onnx-int8"]["metric_drop"] <= 0.01


# -- the KServe manifest


def test_kserve_manifest_for_the_hugging_face_runtime_matches_the_crd_shape(ner_standard: Path):
    std = load_standard(ner_standard)
    manifest = inference_service(std, "s3://models/tiny-ner/")
    jsonschema.validate(manifest, INFERENCE_SERVICE)
    model = manifest["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "huggingface"} and model["storageUri"] == "s3://models/tiny-ner"
    assert "--task=token_classification" in model["args"]


def test_kserve_manifest_for_onnx_serves_the_chosen_format_folder(ner_standard: Path):
    text = ner_standard.read_text() + f"export: {{formats: {ALL_FORMATS}, serving: {{format: onnx-int8, cpu: 500m, memory: 1Gi}}}}\n"
    ner_standard.write_text(text)
    manifest = inference_service(load_standard(ner_standard), "s3://models/tiny-ner")
    jsonschema.validate(manifest, INFERENCE_SERVICE)
    model = manifest["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "onnx"} and model["protocolVersion"] == "v2"
    assert model["storageUri"] == "s3://models/tiny-ner/onnx-int8"
    assert model["resources"]["limits"] == {"cpu": "500m", "memory": "1Gi"}


def test_the_schema_rejects_a_misspelled_manifest_key(ner_standard: Path):
    manifest = inference_service(load_standard(ner_standard), "s3://models/tiny-ner")
    manifest["spec"]["predictor"]["model"]["storageURI"] = manifest["spec"]["predictor"]["model"].pop("storageUri")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, INFERENCE_SERVICE)


def test_a_local_destination_gives_no_storage_uri_and_an_s3_one_does(ner_standard: Path):
    base = ner_standard.read_text()
    ner_standard.write_text(base + "export: {destination: shipped}\n")
    assert storage_uri(load_standard(ner_standard)) is None
    ner_standard.write_text(base + "export: {destination: s3://bucket/models/x}\n")
    assert storage_uri(load_standard(ner_standard)) == "s3://bucket/models/x"


def test_service_names_are_dns_labels():
    assert service_name("CoNLL2003_NER.quick") == "conll2003-ner-quick"
    assert len(service_name("x" * 80)) == 63


# -- the standard's export section


@pytest.mark.parametrize("section, message", [
    ("{formats: [onnx]}", "safetensors is always exported"),
    ("{formats: [safetensors, onnx, onnx]}", "listed twice"),
    ("{formats: [safetensors], serving: {format: onnx}}", "which export.formats does not list"),
    ("{formats: [safetensors, tflite]}", "tflite"),
])
def test_impossible_export_sections_are_located_errors(ner_standard: Path, section: str, message: str):
    ner_standard.write_text(ner_standard.read_text() + f"export: {section}\n")
    with pytest.raises(StandardError, match=message) as error:
        load_standard(ner_standard)
    assert error.value.line is not None and "export" in error.value.field


# -- the parity arithmetic


def scored(predictions: list) -> Scored:
    return Scored({"f1": 0.0}, predictions, [])


def test_agreement_counts_words_for_token_tasks():
    a = scored([["B-PER", "O"], ["O", "O", "B-LOC"]])
    b = scored([["B-PER", "O"], ["O", "O", "O"]])
    assert parity.agreement(a, b) == pytest.approx(4 / 5)


def test_max_abs_diff_reads_every_example():
    reference = [np.zeros((3, 2)), np.zeros(2)]
    assert parity.max_abs_diff(reference, [np.zeros((3, 2)), np.array([0.0, -0.25])]) == 0.25


def test_violations_name_each_exceeded_tolerance():
    report = {"torch": {"f1": 0.90},
              "onnx": {"f1": 0.90, "max_abs_diff": 2e-3, "agreement": 0.99, "metric_drop": 0.0},
              "onnx-int8": {"f1": 0.88, "max_abs_diff": 0.5, "agreement": 0.97, "metric_drop": 0.02}}
    found = parity.violations(report, ParitySpec(), "f1")
    assert len(found) == 3
    assert found[0].startswith("onnx: max |Δlogit|") and found[1].startswith("onnx: agreement")
    assert found[2].startswith("onnx-int8: f1 0.8800 is 0.0200 below")
    assert parity.violations(report, ParitySpec(max_abs_diff=1, min_agreement=0.9, max_metric_drop=0.05), "f1") == []


def test_onnx_graphs_carry_no_paths_of_the_machine_that_exported_them(ner_run: Path):
    for sub in ("onnx", "onnx-int8"):
        data = (ner_run / "out" / "export" / "model" / sub / "model.onnx").read_bytes()
        assert b"stack_trace" not in data and sys.prefix.encode() not in data and str(Path.cwd()).encode() not in data
