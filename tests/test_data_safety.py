"""Nothing a user has is lost, and nothing is silently wrong: destinations keep what they hold, the
last good export survives a failed or losing run, a stage refuses another recipe's output, and two
runs never share an output folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import wait_for_checkpoint
from nlpstd import cli, locks
from nlpstd.errors import NlpstdError
from nlpstd.export import destination as publication
from nlpstd.runner import KEPT_EXPORT, run_standard


def with_export(standard: Path, section: str) -> Path:
    standard.write_text(standard.read_text() + f"export: {section}\n")
    return standard


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def export_identity(out: Path, folder: str = "export") -> str:
    return json.loads((out / folder / "stage.json").read_text())["identity"]


# ---------------------------------------------------------------------------------------
# Destinations


def test_a_destination_that_holds_the_standards_folder_is_refused_before_any_work(ner_standard: Path, tmp_path: Path, capsys):
    with_export(ner_standard, "{destination: .}")
    before = tree(ner_standard.parent)

    code = cli.main(["run", str(ner_standard), "--out", str(tmp_path / "runs" / "out"), "--no-tracking"])

    assert code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {ner_standard}:") and ": export.destination: " in error
    assert "holds files nlpstd did not write (dev.txt, standard.yaml, test.txt and 1 more)" in error
    assert tree(ner_standard.parent) == before
    assert not (tmp_path / "runs" / "out").exists()


def test_a_destination_with_a_users_files_is_refused_and_its_files_kept(ner_standard: Path, tmp_path: Path):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "notes.txt").write_text("mine\n")
    with_export(ner_standard, f"{{destination: {shipped}}}")

    with pytest.raises(NlpstdError, match=r"holds files nlpstd did not write \(notes.txt\)"):
        run_standard(ner_standard, tmp_path / "out", tracking=False)
    assert tree(shipped) == {"notes.txt": b"mine\n"}


def test_each_export_gets_a_folder_of_its_own_and_current_json_names_the_latest(ner_standard: Path, tmp_path: Path):
    shipped = tmp_path / "shipped"
    with_export(ner_standard, "{destination: shipped}")  # relative: beside the standard
    first = run_standard(ner_standard, tmp_path / "out", tracking=False)["stages"]["export"]["metrics"]["destination"]
    first_files = tree(Path(first))
    second = run_standard(ner_standard, tmp_path / "out", stages=["export"], tracking=False)["stages"]["export"]["metrics"]["destination"]

    assert Path(first).parent == Path(second).parent == shipped
    assert first != second and tree(Path(first)) == first_files, "an earlier export is never rewritten"
    current = publication.current(str(shipped))
    assert current["uri"] == second and current["registered_model"] == "tiny-ner"
    assert (Path(second) / "model.safetensors").is_file()


def test_a_destination_serving_another_model_is_refused(ner_standard: Path, tmp_path: Path):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / publication.POINTER).write_text(json.dumps({"nlpstd_destination": 1, "registered_model": "other-model"}))
    with_export(ner_standard, f"{{destination: {shipped}}}")

    with pytest.raises(NlpstdError, match="serves 'other-model'; give 'tiny-ner' a destination of its own"):
        run_standard(ner_standard, tmp_path / "out", tracking=False)


def test_a_failed_upload_leaves_the_last_good_export_and_the_destination_as_they_were(
        ner_standard: Path, tmp_path: Path, monkeypatch):
    shipped = tmp_path / "shipped"
    with_export(ner_standard, f"{{destination: {shipped}}}")
    out = tmp_path / "out"
    run_standard(ner_standard, out, tracking=False)
    good_export, good_destination = tree(out / "export"), tree(shipped)

    def outage(folder, destination, slot):
        raise NlpstdError(f"{destination}/{slot}: cannot reach the S3 endpoint (ConnectTimeoutError)")

    monkeypatch.setattr(publication, "upload", outage)
    ner_standard.write_text(ner_standard.read_text().replace("epochs: 3", "epochs: 2"))  # another model
    with pytest.raises(NlpstdError, match="cannot reach"):
        run_standard(ner_standard, out, tracking=False)

    assert tree(out / "export") == good_export
    assert tree(shipped) == good_destination
    assert not (out / ".export.partial").exists()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri


def test_a_model_that_does_not_beat_the_champion_leaves_the_champions_export_in_place(
        ner_standard: Path, tmp_path: Path, store: str):
    shipped = tmp_path / "shipped"
    with_export(ner_standard, f"{{destination: {shipped}}}")
    out = tmp_path / "out"
    run_standard(ner_standard, out)
    champion_export, champion_identity = tree(out / "export"), export_identity(out)
    served = publication.current(str(shipped))

    ner_standard.write_text(ner_standard.read_text().replace("epochs: 3", "max_steps: 2"))  # a crippled recipe
    summary = run_standard(ner_standard, out)

    assert summary["stages"]["export"]["metrics"]["promoted"] is False
    assert tree(out / "export") == champion_export and export_identity(out) == champion_identity
    assert export_identity(out, KEPT_EXPORT) != champion_identity, "the losing candidate is kept beside it"
    assert publication.current(str(shipped)) == served
    assert len([p for p in shipped.iterdir() if p.is_dir()]) == 1, "a candidate that lost is not uploaded"


# ---------------------------------------------------------------------------------------
# Stage identity


def test_evaluate_refuses_a_model_fine_tuned_by_another_recipe_naming_both(ner_standard: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    run_standard(ner_standard, out, tracking=False)
    exported = tree(out / "export")
    other = ner_standard.with_name("other.yaml")
    other.write_text(ner_standard.read_text().replace("lr: 3.0e-3", "lr: 1.0e-3"))
    capsys.readouterr()

    code = cli.main(["run", str(other), "--out", str(out), "--stages", "evaluate,export", "--no-tracking"])

    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1
    assert f"{out / 'finetune'}: finetune output of another recipe" in error
    recorded = json.loads((out / "finetune" / "stage.json").read_text())["identity"][:12]
    assert recorded in error and "needs " in error
    assert tree(out / "export") == exported


def test_allow_other_inputs_uses_another_recipes_output_knowingly(ner_standard: Path, tmp_path: Path):
    out = tmp_path / "out"
    run_standard(ner_standard, out, stages=["data-prep", "finetune"], tracking=False)
    ner_standard.write_text(ner_standard.read_text().replace("lr: 3.0e-3", "lr: 1.0e-3"))

    summary = run_standard(ner_standard, out, stages=["evaluate"], tracking=False, allow_other_inputs=True)

    assert "test_f1" in summary["stages"]["evaluate"]["metrics"]


def test_a_change_to_export_settings_keeps_the_fine_tuned_model_usable(ner_standard: Path, tmp_path: Path):
    out = tmp_path / "out"
    run_standard(ner_standard, out, stages=["data-prep", "finetune", "evaluate"], tracking=False)
    with_export(ner_standard, "{formats: [safetensors, onnx]}")

    summary = run_standard(ner_standard, out, stages=["export"], tracking=False)

    assert summary["stages"]["export"]["metrics"]["formats"] == ["safetensors", "onnx"]


def test_a_model_trained_on_data_prepared_again_from_changed_data_is_refused(ner_standard: Path, tmp_path: Path):
    out = tmp_path / "out"
    run_standard(ner_standard, out, stages=["data-prep", "finetune"], tracking=False)
    train = ner_standard.with_name("train.txt")
    train.write_text(train.read_text() + "London NNP B-NP B-LOC\ncalls VBZ B-VP O\n")
    run_standard(ner_standard, out, stages=["data-prep"], tracking=False)

    with pytest.raises(NlpstdError, match="finetune output made from other data"):
        run_standard(ner_standard, out, stages=["evaluate"], tracking=False)


# ---------------------------------------------------------------------------------------
# One run per output folder


def test_a_folder_lock_refuses_a_second_holder_naming_the_first(tmp_path: Path):
    with locks.exclusive(tmp_path / "out", "output folder"):
        with pytest.raises(locks.FolderInUse, match=rf"in use by process {os.getpid()} on "):
            with locks.exclusive(tmp_path / "out", "output folder"):
                pass
    with locks.exclusive(tmp_path / "out", "output folder"):  # released: free again
        pass
    assert not locks.lock_path(tmp_path / "out").exists()


def test_a_lock_that_waits_takes_the_folder_once_its_holder_lets_go(tmp_path: Path):
    held, released = threading.Event(), threading.Event()

    def holder() -> None:
        with locks.exclusive(tmp_path / "ckpt", "checkpoint folder"):
            held.set()
            released.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    threading.Timer(0.5, released.set).start()
    with locks.exclusive(tmp_path / "ckpt", "checkpoint folder", wait_s=30):
        assert released.is_set()
    thread.join()


def _slow(standard: Path) -> None:
    standard.write_text(standard.read_text().replace("epochs: 3", "epochs: 40").replace("checkpoint_every: 10", "checkpoint_every: 25"))


def test_a_second_run_into_a_busy_out_folder_is_refused_and_the_first_completes(ner_standard: Path, tmp_path: Path):
    _slow(ner_standard)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "nlpstd.cli", "run", str(ner_standard), "--out", str(out), "--no-tracking"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_checkpoint(first, out / ".finetune.partial" / "checkpoints" / "last" / "state.json", 25)

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [second.stderr.strip()]
    assert f"this output folder is in use by process {first.pid} on" in second.stderr
    assert first.wait(timeout=600) == 0, first.stderr.read()[-2000:]
    assert json.loads((out / "summary.json").read_text())["stages"]["export"]


def test_the_lock_of_a_killed_run_does_not_block_its_rerun(ner_standard: Path, tmp_path: Path):
    _slow(ner_standard)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "nlpstd.cli", "run", str(ner_standard), "--out", str(out), "--no-tracking",
               "--stages", "data-prep,finetune"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    killed = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_checkpoint(killed, out / ".finetune.partial" / "checkpoints" / "last" / "state.json", 25)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert locks.lock_path(out).exists(), "a killed run leaves its lock file behind"

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)

    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming from the checkpoint" in rerun.stdout
    assert not locks.lock_path(out).exists()
