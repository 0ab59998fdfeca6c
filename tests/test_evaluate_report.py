"""The markdown report and its plots."""

import logging

import matplotlib
import pytest

from nlpstd.evaluate import report
from nlpstd.evaluate.gate import apply_gate
from nlpstd.evaluate.metrics import classification_metrics, ner_metrics
from nlpstd.evaluate.report import plot_confusion_matrix, plot_loss_curve, plot_per_type_f1, self_contained, write_report
from nlpstd.spec import GateSpec

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 5_000  # an actual drawing, not an empty canvas


@pytest.fixture
def cls_scores():
    return {"validation": classification_metrics(["pos", "neg", "neg"], ["pos", "pos", "neg"], ["neg", "pos"])}


@pytest.fixture
def ner_scores():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    return {
        "validation": ner_metrics(gold, [["B-PER", "I-PER", "O", "O"]]),
        "test": ner_metrics(gold, [["B-PER", "I-PER", "O", "B-LOC"]]),
    }


def test_confusion_matrix_plot_is_a_png(tmp_path):
    assert_png(plot_confusion_matrix([[5, 1], [2, 7]], ["neg", "pos"], tmp_path / "cm.png"))


def test_per_type_plot_is_a_png(ner_scores, tmp_path):
    assert_png(plot_per_type_f1(ner_scores["validation"]["per_type"], tmp_path / "f1.png"))


def test_loss_curve_plot_is_a_png(tmp_path):
    history = [{"step": s, "loss": 2.0 / s} for s in range(1, 20)] + [{"step": 10, "eval_f1": 0.6}, {"step": 19, "eval_f1": 0.7}]
    assert_png(plot_loss_curve(history, tmp_path / "loss.png"))


def test_plots_accept_empty_input(tmp_path):
    assert plot_loss_curve([], tmp_path / "loss.png").read_bytes().startswith(PNG_MAGIC)
    assert plot_per_type_f1({}, tmp_path / "f1.png").read_bytes().startswith(PNG_MAGIC)


def test_plots_leave_the_pyplot_backend_alone(tmp_path):
    before = matplotlib.get_backend()
    plot_confusion_matrix([[1]], ["a"], tmp_path / "cm.png")
    assert matplotlib.get_backend() == before


CHINESE = ["张", "三", "在", "北京", "工作"]


def test_an_installed_cjk_font_draws_chinese_words_without_a_warning(tmp_path, caplog):
    if len(report.text_families()) == 1:
        pytest.skip("no CJK font is installed here (.ci/run installs WenQuanYi Micro Hei)")
    with caplog.at_level(logging.WARNING, logger="nlpstd.evaluate.report"):
        assert_png(report.plot_explanation(CHINESE, [0.5, -0.2, 0.0, 0.9, -0.4], tmp_path / "zh.png", marked=3))
    assert not caplog.records


def test_without_a_cjk_font_chinese_words_are_one_warning_naming_the_plot(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(report, "text_families", lambda: ("DejaVu Sans",))
    with caplog.at_level(logging.WARNING, logger="nlpstd.evaluate.report"):
        report.plot_explanation(CHINESE, [0.5, -0.2, 0.0, 0.9, -0.4], tmp_path / "zh.png")
    (record,) = caplog.records
    assert record.getMessage().startswith("zh.png: some characters have no glyph")


def test_chinese_label_names_in_a_plot_draw_with_the_installed_cjk_font(tmp_path, caplog):
    if len(report.text_families()) == 1:
        pytest.skip("no CJK font is installed here (.ci/run installs WenQuanYi Micro Hei)")
    with caplog.at_level(logging.WARNING):
        assert_png(plot_confusion_matrix([[3, 1], [0, 2]], ["正面", "负面"], tmp_path / "cm.png"))
    assert not caplog.records


def test_chinese_label_names_without_a_cjk_font_are_one_warning_naming_the_plot(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(report, "text_families", lambda: ("DejaVu Sans",))
    with caplog.at_level(logging.WARNING):
        plot_confusion_matrix([[3, 1], [0, 2]], ["正面", "负面"], tmp_path / "cm.png")
    (record,) = caplog.records
    assert record.getMessage().startswith("cm.png: some characters have no glyph")


def test_latin_words_draw_without_a_warning_whatever_the_fonts(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(report, "text_families", lambda: ("DejaVu Sans",))
    with caplog.at_level(logging.WARNING, logger="nlpstd.evaluate.report"):
        report.plot_explanation(["Ann", "flew", "to", "Paris"], [0.1, 0.0, 0.0, 0.8], tmp_path / "en.png")
    assert not caplog.records


def test_a_cjk_font_installed_after_matplotlib_listed_the_fonts_is_found(monkeypatch):
    report.text_families()  # lists a CJK font installed here, if any
    installed = [font for font in report.fontManager.ttflist if font.name in report.CJK_FAMILIES]
    if not installed:
        pytest.skip("no CJK font is installed here (.ci/run installs WenQuanYi Micro Hei)")
    files = {font.fname for font in installed}  # matplotlib's list as it was before the font was installed
    monkeypatch.setattr(report.fontManager, "ttflist", [f for f in report.fontManager.ttflist if f.fname not in files])
    report.text_families.cache_clear()
    try:
        assert installed[0].name in report.text_families()
    finally:
        report.text_families.cache_clear()


def test_report_opens_with_the_gate_verdict(cls_scores, tmp_path):
    gate = apply_gate(GateSpec(metric="accuracy", min=0.9), cls_scores, has_test=False)
    text = write_report(tmp_path / "report.md", standard_name="sst", task="sequence-classification",
                        scores=cls_scores, gate=gate, plots=[]).read_text()
    assert text.startswith("# Evaluation of sst")
    assert "**Gate: FAILED**: accuracy 0.6667 on validation < min 0.9000" in text.splitlines()[:4]


def test_report_has_a_headline_row_per_split(ner_scores, tmp_path):
    gate = apply_gate(GateSpec(), ner_scores, has_test=True)
    text = write_report(tmp_path / "report.md", standard_name="ner", task="token-classification",
                        scores=ner_scores, gate=gate, plots=[]).read_text()
    assert "**Gate: PASSED**" in text
    assert "| split | f1 | precision | recall | accuracy |" in text
    assert "| validation | 0.6667 | 1.0000 | 0.5000 | 0.7500 |" in text
    assert "| test | 1.0000 | 1.0000 | 1.0000 | 1.0000 |" in text


def test_report_lists_per_type_scores_for_ner(ner_scores, tmp_path):
    gate = apply_gate(GateSpec(), ner_scores, has_test=True)
    text = write_report(tmp_path / "report.md", standard_name="ner", task="token-classification",
                        scores=ner_scores, gate=gate, plots=[]).read_text()
    assert "## Per entity type (validation)" in text
    assert "| LOC | 0.0000 | 0.0000 | 0.0000 | 1 |" in text


def test_report_shows_the_confusion_matrix_for_classification(cls_scores, tmp_path):
    gate = apply_gate(GateSpec(), cls_scores, has_test=False)
    text = write_report(tmp_path / "report.md", standard_name="sst", task="sequence-classification",
                        scores=cls_scores, gate=gate, plots=[]).read_text()
    assert "## Per label (validation)" in text
    assert "| gold \\ predicted | neg | pos |" in text
    assert "| neg | 1 | 1 |" in text  # one gold neg was predicted pos
    assert "| pos | 0 | 1 |" in text


def test_report_links_plots_relative_to_itself(cls_scores, tmp_path):
    gate = apply_gate(GateSpec(), cls_scores, has_test=False)
    plot = plot_confusion_matrix([[1, 1], [0, 1]], ["neg", "pos"], tmp_path / "plots" / "confusion.png")
    text = write_report(tmp_path / "report.md", standard_name="sst", task="sequence-classification",
                        scores=cls_scores, gate=gate, plots=[plot]).read_text()
    assert "![confusion](plots/confusion.png)" in text


def test_report_lists_extra_facts(cls_scores, tmp_path):
    gate = apply_gate(GateSpec(), cls_scores, has_test=False)
    text = write_report(tmp_path / "report.md", standard_name="sst", task="sequence-classification",
                        scores=cls_scores, gate=gate, plots=[], extra={"truncated examples": 3}).read_text()
    assert "- **truncated examples**: 3" in text


def test_self_contained_report_inlines_its_plots(cls_scores, tmp_path):
    import base64

    plot = plot_confusion_matrix(cls_scores["validation"]["confusion_matrix"], cls_scores["validation"]["labels"],
                                 tmp_path / "plots" / "confusion_validation.png")
    gate = apply_gate(GateSpec(metric="accuracy", min=0.5), cls_scores, has_test=False)
    report = write_report(tmp_path / "report.md", standard_name="sst", task="sequence-classification",
                          scores=cls_scores, gate=gate, plots=[plot])
    assert "](plots/confusion_validation.png)" in report.read_text()
    text = self_contained(report)
    encoded = base64.b64encode(plot.read_bytes()).decode()
    assert f"![confusion_validation](data:image/png;base64,{encoded})" in text
    assert "plots/confusion_validation.png" not in text


def test_report_puts_a_clean_row_after_its_split(ner_scores, tmp_path):
    gate = apply_gate(GateSpec(), ner_scores, has_test=True)
    clean = {"test": {"examples": 3, "excluded": 1, "metrics": ner_scores["validation"]}}
    text = write_report(tmp_path / "report.md", standard_name="ner", task="token-classification",
                        scores=ner_scores, gate=gate, plots=[], clean=clean).read_text()
    rows = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| test") or line.startswith("| validation")]
    assert rows[:3] == ["| validation", "| test", "| test_clean"]
    assert "| test_clean | 0.6667 | 1.0000 | 0.5000 | 0.7500 |" in text
    assert "`test_clean`: the 3 test examples that train does not hold (1 found in train" in text
