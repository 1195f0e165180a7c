"""The command line: outputs, the results.json schema, one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fedcond.apps.cli import main

FAST = [
    "--set", "progress=false",
    "--set", "device=cpu",
    "--set", "condense.ipc=2",
    "--set", "condense.iterations=3",
    "--set", "condense.batch_real=16",
    "--set", "evaluation.runs=2",
    "--set", "evaluation.epochs=3",
]  # fmt: skip


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def test_condense_writes_set_results_and_baselines(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["condense", *FAST, "--baselines", "random,herding", "--out", str(out)]) == 0
    assert (out / "synthetic.pt").exists() and (out / "synthetic.png").exists()
    results = json.loads((out / "results.json").read_text())
    for key in ("dataset", "method", "discrepancy", "ipc", "iterations", "condense_seconds", "pool_seconds", "factor", "peak_memory_mb"):
        assert key in results
    assert results["command"] == "condense"
    assert results["dataset"] == "digits" and results["ipc"] == 2 and results["iterations"] == 3
    assert results["peak_memory_mb"] > 0
    evaluation = results["evaluation"]
    assert evaluation["runs"] == 2 and evaluation["epochs"] == 3 and len(evaluation["accuracies"]) == 2
    assert set(results["baselines"]) == {"random", "herding"}
    for baseline in results["baselines"].values():
        assert {"accuracy_mean", "accuracy_std"} <= set(baseline)
    assert "acc %" in capsys.readouterr().out
    # The saved set is the one evaluated: evaluating the file again gives the same accuracies.
    again = tmp_path / "again"
    assert main(["evaluate", *FAST, "--synthetic", str(out / "synthetic.pt"), "--out", str(again)]) == 0
    assert json.loads((again / "results.json").read_text())["evaluation"]["accuracies"] == evaluation["accuracies"]
    # The random baseline is the set a real initialisation starts from: without iterations the two agree.
    start = tmp_path / "start"
    assert main(["condense", *FAST, "--set", "condense.iterations=0", "--baselines", "random", "--out", str(start)]) == 0
    unmoved = json.loads((start / "results.json").read_text())
    assert unmoved["evaluation"]["accuracies"] == unmoved["baselines"]["random"]["accuracies"]


def test_evaluate_and_show_a_saved_set(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["condense", *FAST, "--no-evaluate", "--out", str(out)]) == 0
    assert "evaluation" not in json.loads((out / "results.json").read_text())
    evaluated = tmp_path / "eval"
    args = ["evaluate", *FAST, "--set", "evaluation.cross_models=[mlp]", "--synthetic", str(out / "synthetic.pt")]
    assert main([*args, "--out", str(evaluated)]) == 0
    results = json.loads((evaluated / "results.json").read_text())
    assert set(results["cross_architecture"]) == {"mlp"}
    # A cross-architecture row is the protocol run with that model: the same as naming it the model.
    as_model = tmp_path / "as-model"
    assert main(["evaluate", *FAST, "--set", "evaluation.model=mlp", "--synthetic", str(out / "synthetic.pt"),
                 "--out", str(as_model)]) == 0  # fmt: skip
    mlp = json.loads((as_model / "results.json").read_text())["evaluation"]
    assert results["cross_architecture"]["mlp"]["accuracies"] == mlp["accuracies"] and mlp["model"] == "mlp"
    shown = tmp_path / "show"
    assert main(["show", "--synthetic", str(out / "synthetic.pt"), "--out", str(shown)]) == 0
    assert (shown / "synthetic.png").stat().st_size > 0
    assert json.loads((shown / "results.json").read_text())["class_counts"] == [2] * 10


def test_datasets_lists_digits(tmp_path, capsys) -> None:
    assert main(["datasets", "--out", str(tmp_path)]) == 0
    listing = json.loads((tmp_path / "results.json").read_text())["datasets"]
    assert listing["digits"]["available"] is True
    assert {"fashion-mnist", "mnist", "cifar10", "npz", "image-folder"} <= set(listing)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["condense", "--set", "condense.ipcc=3"], "unknown config key condense.'ipcc'"),
        (["condense", "--set", "condense.discrepancy=mmd-gausian"], "choose from:"),
        (["condense", "--set", "condense.ipc=-1"], "condense.ipc must be at least 1"),
        (["condense", "--baselines", "random,best"], "unknown baseline 'best'"),
        (["condense", "--resume"], "no checkpoint"),
        (["condense", "--set", "dataset.name=fashion-mnist", "--set", "dataset.data_root=/nonexistent"], "fashion-mnist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, fragment) -> None:
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    assert fragment in _error_line(capsys)


def test_hostile_synthetic_file(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(os.urandom(200))
    assert main(["evaluate", "--synthetic", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "bad.pt" in _error_line(capsys)
    assert main(["show", "--synthetic", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")]) == 2
    _error_line(capsys)


def test_a_failing_command_keeps_earlier_results(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["condense", *FAST, "--no-evaluate", "--out", str(out)]) == 0
    before = (out / "results.json").read_text()
    assert main(["condense", "--set", "condense.ipc=0", "--out", str(out)]) == 2
    assert (out / "results.json").read_text() == before


def test_console_script_exit_status(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fedcond.apps.cli", "condense", "--set", "condense.method=magic", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("fedcond: error: unknown condense method 'magic'")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_condense_with_pool_and_factor_reports_them(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = ["condense", *FAST, "--set", "condense.factor=2", "--set", "condense.pool_networks=2", "--no-evaluate"]
    assert main([*args, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["factor"] == 2 and results["num_synthetic"] == 10 * 2 * 4 and results["pool_seconds"] > 0
    assert "stored as 2x2 tiles" in capsys.readouterr().out


def test_a_binary_config_file_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    config = tmp_path / "model.pt"
    config.write_bytes(b"PK\x03\x04\x14\x00\x00\x00\x08\x00\x9c\xff\xfe binary")
    earlier = tmp_path / "out" / "results.json"
    earlier.parent.mkdir()
    earlier.write_text('{"kept": true}\n')
    assert main(["condense", "--config", str(config), "--out", str(earlier.parent)]) == 2
    err = _error_line(capsys)
    assert f"config {config} is not UTF-8 text" in err and "0x9c" in err
    assert earlier.read_text() == '{"kept": true}\n'  # nothing already written is lost


TEACHER = ["--set", "condense.teacher.model=mlp", "--set", "condense.teacher.steps=40", "--set", "condense.teacher.dsa=false",
           "--set", "condense.teacher.lr=0.05", "--set", "condense.teacher.temperature=2"]  # fmt: skip


def test_a_teacher_trained_and_saved_labels_a_set_and_its_random_control(tmp_path, capsys) -> None:
    teacher_dir, run, shown = tmp_path / "teacher", tmp_path / "run", tmp_path / "show"
    assert main(["teacher", *FAST, *TEACHER, "--out", str(teacher_dir)]) == 0
    trained = json.loads((teacher_dir / "results.json").read_text())
    assert trained["teacher"]["model"] == "mlp" and trained["teacher"]["steps"] == 40
    assert trained["teacher"]["test_accuracy"] > 50.0
    labelled = [*TEACHER, "--set", "condense.labels=teacher", "--set", f"condense.teacher.weights={teacher_dir / 'teacher.pt'}",
                "--set", "evaluation.loss=kd"]  # fmt: skip
    assert main(["condense", *FAST, *labelled, "--baselines", "random", "--out", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["labels"]["source"] == "teacher" and results["labels"]["temperature"] == 2.0
    assert results["teacher"]["weights"] == str(teacher_dir / "teacher.pt") and results["teacher"]["steps"] == 0
    assert results["teacher"]["test_accuracy"] == trained["teacher"]["test_accuracy"]
    assert results["evaluation"]["loss"] == "kd" and results["evaluation"]["temperature"] == 2.0
    assert results["baselines"]["random"]["loss"] == "kd"
    assert "teacher labels" in capsys.readouterr().out
    assert main(["show", "--synthetic", str(run / "synthetic.pt"), "--out", str(shown)]) == 0
    show = json.loads((shown / "results.json").read_text())
    assert show["soft_labels"] and show["labels"]["source"] == "teacher"
    assert len(show["top_labels"]) == show["num_synthetic"] and 0 < show["top_labels"][0]["probability"] <= 1
    wrong = tmp_path / "wrong.pt"
    wrong.write_bytes(b"junk")
    assert main(["condense", *FAST, *TEACHER, "--set", "condense.labels=teacher", "--set", f"condense.teacher.weights={wrong}", "--out", str(run)]) == 2
    assert "is not a teacher file" in _error_line(capsys)
    assert json.loads((run / "results.json").read_text())["labels"]["source"] == "teacher"  # earlier results kept
