"""Every example runs in its smoke mode and writes what it promises."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_derive_imixer_example_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "derive_imixer.py"), "--smoke",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "IMPLICIT fast group {x2, x3}" in out and "(1 − F)⁻¹" in out
    assert "max |Δ| forward 0.00e+00, gradient 0.00e+00" in out
    assert "Lyapunov guarantee: PARTIAL" in out
    png, csv = tmp_path / "energy_descent.png", tmp_path / "energy_descent.csv"
    assert png.stat().st_size > 10_000 and csv.stat().st_size > 100


def test_energy_classifier_example_smoke(tmp_path):
    png = tmp_path / "descent.png"
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "energy_classifier.py"),
                           "--smoke", "--plot", str(png)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "slow layers 'hidden'" in out and "schedule: sequential" in out
    assert "test accuracy" in out and " 0 rises over 128 test images" in out
    assert png.stat().st_size > 10_000


def test_custom_energy_example_smoke():
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "custom_energy.py"), "--smoke",
                           "--steps", "6"], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "token memory" in out and "HopfieldMemory, untied" in out
    assert "block maps (2, 49, 32) -> (2, 49, 32)" in out
    assert "factory custom_energy:hopfield_memory_block" in out and "step   5 loss" in out
