"""The accuracy study's statistics and its smoke run (the numbers the docs quote come from it)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import accuracy_study  # noqa: E402


def test_t_interval_matches_the_student_t_formula():
    mean, half = accuracy_study.t_interval([0.80, 0.82, 0.84])
    assert mean == pytest.approx(0.82)
    # s = 0.02, t(0.975, 2) = 4.302652729911275, n = 3
    assert half == pytest.approx(4.302652729911275 * 0.02 / math.sqrt(3), rel=1e-9)
    assert math.isnan(accuracy_study.t_interval([0.5])[1])


def test_paired_comparison_counts_wins_and_tests_the_differences():
    c = accuracy_study.paired([0.83, 0.85, 0.86], [0.82, 0.84, 0.87])
    assert c["n"] == 3 and c["wins"] == 2
    assert c["mean_diff"] == pytest.approx(1 / 300)
    from scipy import stats

    assert c["p_value"] == pytest.approx(stats.ttest_rel([0.83, 0.85, 0.86],
                                                         [0.82, 0.84, 0.87]).pvalue)
    table = accuracy_study.paired_table({"b - a": c})
    assert table[-1] == f"| b - a | {c['mean_diff']:+.4f} | {c['ci95_half_width']:.4f} | " \
                        f"{c['p_value']:.3g} | {c['wins']}/3 |"
    assert accuracy_study.paired_table({}) == []  # one model alone: no empty table
    same = accuracy_study.paired([0.5, 0.6], [0.4, 0.5])  # constant difference: no t statistic
    assert same["mean_diff"] == pytest.approx(0.1) and math.isnan(same["p_value"])


def smoke_study(tmp_path, name, *args):
    """The command line of a one-epoch smoke study on the CPU writing into ``tmp_path``."""
    return [sys.executable, str(ROOT / "benchmarks" / "accuracy_study.py"), "--smoke",
            "--epochs", "1", "--device", "cpu", "--runs", str(tmp_path / "runs"),
            "--results", str(tmp_path), "--name", name, *args]


def test_smoke_study_writes_tables_with_params_and_time(tmp_path):
    cmd = smoke_study(tmp_path, "smoke", "--max-train-samples", "128", "--max-eval-samples", "128",
                      "--models", "mixer_tiny", "imixer_tiny", "--seeds", "0", "1")
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    record = json.loads((tmp_path / "smoke.json").read_text())
    assert set(record["summary"]) == {"mixer_tiny", "imixer_tiny"}
    mixer = record["summary"]["mixer_tiny"]
    assert len(mixer["values"]) == 2 and all(0.0 <= v <= 1.0 for v in mixer["values"])
    assert mixer["params"] > 0 and mixer["train_s_median"] > 0
    assert "imixer_tiny - mixer_tiny" in record["paired"]
    md = (tmp_path / "smoke.md").read_text()
    assert "| params |" in md and "Machine: CPU" in md and "float32" in md
    # Finished runs are reused, not retrained: a second call gives the same accuracies.
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    again = json.loads((tmp_path / "smoke.json").read_text())
    assert again["summary"]["mixer_tiny"]["values"] == mixer["values"]
    assert record["settings"]["crop_padding"] is None


def test_study_forwards_augmentation_and_keeps_its_runs_apart(tmp_path):
    cmd = smoke_study(tmp_path, "crop", "--max-train-samples", "32", "--max-eval-samples", "32",
                      "--models", "mixer_tiny", "--seeds", "0", "--crop-padding", "1",
                      "--random-erasing", "0.25")
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    (run,) = (tmp_path / "runs").glob("*/mixer_tiny-s0")
    assert run.parent.name == "bundled-e1-n32-c1-re0.25-smoke"  # not reused by a default study
    from hopfield.training import checkpoint as ckpt

    config = ckpt.load_checkpoint(run / "last.pt")["config"]
    assert config["crop_padding"] == 1 and config["random_erasing"] == 0.25
    assert "--crop-padding 1 --random-erasing 0.25" in (tmp_path / "crop.md").read_text()


def test_curves_table_averages_seeds_and_marks_unfinished_runs(tmp_path):
    import curves_table

    def run(name, accs):
        folder = tmp_path / name
        folder.mkdir()
        rows = [{"epoch": i + 1, "test_acc": a, "epoch_time_s": 10.0} for i, a in enumerate(accs)]
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return f"m={folder}"

    out = tmp_path / "res"
    curves_table.main(["--name", "c", "--results", str(out), "--run", run("a", [0.5, 0.7]),
                       "--run", run("b", [0.6]), "--plot", str(out / "c.png")])
    assert (out / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = json.loads((out / "c.json").read_text())["m"]
    assert table["epochs"][0]["mean_test_acc"] == pytest.approx(0.55)
    assert table["epochs"][1] == {"epoch": 2, "n": 1, "mean_test_acc": 0.7, "values": [0.7]}
    md = (out / "c.md").read_text()
    assert "| 1 | 0.5500 |" in md and "| 2 | 0.7000 (1/2) |" in md
    with pytest.raises(SystemExit, match="metrics.jsonl"):
        curves_table.main(["--name", "x", "--results", str(out), "--run", f"m={tmp_path}"])


def test_quoted_command_leaves_the_note_out():
    argv = ["--epochs", "2", "--note", "two processes, one thread each", "--note=x", "--smoke"]
    assert accuracy_study.command_args(argv) == ["--epochs", "2", "--smoke"]


def test_gpu_study_launcher_runs_resumes_and_reports(tmp_path):
    """The side-by-side launcher, on the CPU: one run per (model, seed), relaunched with --resume."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_study.py"), "--device", "cpu",
           "--amp", "off", "--dataset", "bundled", "--epochs", "1", "--max-train-samples", "64",
           "--max-eval-samples", "32", "--batch-size", "32", "--crop-padding", "0",
           "--random-erasing", "0.5", "--models", "mixer_tiny", "--seeds", "0", "1", "--runs", str(tmp_path / "runs"),
           "--results", str(tmp_path), "--name", "launch"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    record = json.loads((tmp_path / "launch.json").read_text())
    assert record["runs"]["mixer_tiny/0"]["finished"] and record["runs"]["mixer_tiny/1"]["finished"]
    first = record["summary"]["mixer_tiny"]["values"]
    assert len(first) == 2 and record["settings"]["crop_padding"] == 0
    from hopfield.training import checkpoint as ckpt

    config = ckpt.load_checkpoint(tmp_path / "runs" / "mixer_tiny-s1" / "last.pt")["config"]
    assert config["crop_padding"] == 0 and config["max_train_samples"] == 64
    assert config["random_erasing"] == 0.5
    # a second call resumes the finished runs (nothing to train) and reports the same numbers
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    again = json.loads((tmp_path / "launch.json").read_text())
    assert again["summary"]["mixer_tiny"]["values"] == first


def test_compile_training_quick_run_writes_ratio_and_warmup(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "compile_training.py"), "--quick",
           "--backend", "eager", "--results", str(tmp_path), "--name", "smoke"]
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    assert "RESULT compile_step_ratio_mixer " in proc.stdout
    assert "RESULT compile_warmup_s_mixer " in proc.stdout
    record = json.loads((tmp_path / "smoke.json").read_text())
    (row,) = record["rows"]
    assert row["model"] == "mixer_tiny" and row["ratio_median"] > 0 and row["warmup_s"] > 0
    assert len(row["ratios"]) == 2 and row["graphs"] >= 1
    assert record["machine"]["cpu_count"] and record["machine"]["torch"]
    assert str(tmp_path) not in record["command"]  # no path of this machine in the results
    assert "| mixer_tiny |" in (tmp_path / "smoke.md").read_text()


def test_gpu_session_script_dry_run_prints_every_device_command():
    """``benchmarks/gpu_session.sh`` (the lent GPU machine's one script), with DRY_RUN=1: both
    phases print the commands they would run and exit 0; without CUDA the real ``checks`` stops
    at once with a clear message."""
    import os

    import torch

    script = str(ROOT / "benchmarks" / "gpu_session.sh")
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "HOPFIELD_DATA_DIR")}

    def session(*args, dry=True):
        return subprocess.run(["bash", script, *args], capture_output=True, text=True,
                              timeout=120, env=dict(env, DRY_RUN="1" if dry else "0"))

    checks = session("checks")
    assert checks.returncode == 0, checks.stderr
    assert "pytest -m gpu" in checks.stdout
    assert "benchmarks/descent.py --device cuda --repeats 5 --chunks 1,2" in checks.stdout
    assert "benchmarks/throughput.py --device cuda" in checks.stdout
    train = session("train", "540")
    assert train.returncode == 0, train.stderr
    (study,) = [line for line in train.stdout.splitlines() if "benchmarks/gpu_study.py" in line]
    assert "--deadline 540" in study and "--models mixer_tiny imixer_tiny" in study
    assert "--seeds 0 1 2" in study and "--epochs 60" in study
    assert "--random-erasing 0.25" in study and "--name fashion_mnist_gpu_60ep" in study
    cpu = session("cpu-descent")
    assert cpu.returncode == 0, cpu.stderr
    assert "benchmarks/descent.py --device cpu --threads 2,16" in cpu.stdout
    assert session("train", "soon").returncode == 2  # a deadline must be a number
    assert session("nonsense").returncode == 2
    if not torch.cuda.is_available():
        real = session("checks", dry=False)
        assert real.returncode == 2 and "no CUDA device" in real.stderr


def test_descent_benchmark_quick_run_writes_its_results(tmp_path, needs_compile):
    """``benchmarks/descent.py``, tiny: one pinned thread, chunks 1 and 2, two steps; the tables
    and the RESULT lines are written (HAMUX ratios only where HAMUX is installed)."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "descent.py"), "--threads", "1", "--chunks",
           "1", "--steps", "2", "--repeats", "1", "--batch", "4", "--name", "smoke",
           "--out-dir", str(tmp_path)]
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=400)
    assert "RESULT descent_warmup_s " in proc.stdout
    assert "RESULT descent_step_ratio_vs_hamux_1t " in proc.stdout
    record = json.loads((tmp_path / "smoke.json").read_text())
    run = record["runs"]["1"]
    assert {"eager", "chunk=1", "chunk=2", "chunk=2 +stats"} <= set(run["ms_per_step_median"])
    assert run["warmup_s"]["chunk=2 +stats"] > 0 and run["threads"] == 1
    # the compiled chunks equal the eager descent (float32 round-off over two steps)
    assert all(v < 1e-3 for k, v in run["equivalence_max_abs_diff"].items() if "chunk" in k)
    md = (tmp_path / "smoke.md").read_text()
    assert str(tmp_path) not in md and "| chunk=2 +stats |" in md and "RESULT " in md


def test_overhead_quick_run_writes_training_and_inference_ratios(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "overhead.py"), "--pairs", "2",
           "--sizes", "small", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    blocks = ["mixer", "vit", "imixer_k1", "imixer_k2", "imixer_k4"]
    for b in blocks:
        assert f"RESULT overhead_{b}_small " in proc.stdout
        assert f"RESULT overhead_inference_{b}_small " in proc.stdout
    record = json.loads((tmp_path / "overhead.json").read_text())
    assert [r["block"] for r in record["rows"]] == blocks
    assert all(r["ratio"] > 0 and r["eval_ratio"] > 0 for r in record["rows"])
    table = (tmp_path / "overhead.md").read_text()
    assert "| inference ratio |" in table and str(tmp_path) not in table
