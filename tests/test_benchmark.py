"""Smoke tests of the benchmark scripts: ``--quick`` runs on the current
backend, exits 0 and reports what it should. Nothing here looks at a time."""

import json
import os
import subprocess
import sys

import keras
import pytest

# Subprocess runs and exports: minutes, not seconds (pytest -m 'not slow').
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKEND = keras.backend.backend()


def run_quick(script, json_path, *extra):
    """Runs ``scripts/<script> --quick`` on this backend; returns stdout."""
    env = {**os.environ, "KERAS_BACKEND": BACKEND}
    completed = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", script), "--quick"]
        + ["--json", str(json_path), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = completed.stdout[-3000:] + completed.stderr[-3000:]
    assert completed.returncode == 0, output
    return completed.stdout


def test_layer_benchmark_quick(tmp_path):
    path = tmp_path / "layer.json"
    out = run_quick("benchmark.py", path)
    assert "Median time per call, ms:" in out
    assert "| shape | task | keras_bn | keras |" in out
    assert "| shape | task | reference | ratio | ratio of minima |" in out
    assert "fold_batchnorm, small CNN" in out

    report = json.loads(path.read_text())
    assert report["machine"]["backend"] == BACKEND
    assert report["repeats"] == 2
    assert [r["shape"] for r in report["results"]] == [[32, 16], [4, 4, 4, 8]]
    for result in report["results"]:
        for key in ("inference_ms", "train_ms"):
            assert {"keras_bn", "keras", "one-pass"} <= set(result[key])
        references = {(r["task"], r["reference"]) for r in result["ratios"]}
        assert {("train", "keras"), ("inference", "one-pass")} <= references
        # Batch Renormalization's step, against Keras' own.
        assert {"keras_bn renorm", "keras renorm"} <= set(result["train_ms"])
        (renorm,) = [r for r in result["ratios"] if r["reference"] == "keras renorm"]
        assert renorm["candidate"] == "keras_bn renorm" and renorm["task"] == "train"
    assert report["folding"]["batch_normalizations"] == 4
    assert report["folding"]["max_abs_difference"] < 1e-4
    if BACKEND == "torch":
        assert "| shape | task | identity layer | x*gamma layer | keras_bn |" in out
        assert {"identity layer", "x*gamma layer", "torch"} <= set(
            report["results"][0]["train_ms"]
        )


def test_network_benchmark_quick(tmp_path):
    path = tmp_path / "networks.json"
    out = run_quick("benchmark_networks.py", path)
    assert "| network | input | BNs folded | train keras | train keras_bn |" in out
    assert "predict unfolded / folded (>= 1.2)" in out

    report = json.loads(path.read_text())
    assert report["machine"]["backend"] == BACKEND
    assert [r["network"] for r in report["results"]] == ["convnet"]
    for result in report["results"]:
        assert set(result["train_ms"]) == {"keras", "keras_bn"}
        assert set(result["predict_ms"]) == {"keras", "keras_bn", "keras_bn folded"}
        # Converted and folded models predict what the stock model does.
        for value in result["max_abs_difference"].values():
            assert value < 1e-4
    convnet = report["results"][0]
    assert convnet["folded"] == convnet["batch_normalizations"] == 6


@pytest.mark.skipif(BACKEND != "torch", reason="torch.profiler of eager PyTorch")
def test_torch_step_profile():
    completed = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "profile_torch_step.py")]
        + ["--shapes", "32x16"],
        cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": BACKEND},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| ")]
    split = {row[1].strip(): [float(v) for v in row[2:5]] for row in rows[1:5]}
    assert set(split) == {
        "keras_bn",
        "identity layer",
        "x*gamma layer",
        "torch.nn.BatchNorm1d",
    }
    for total, kernels, rest in split.values():
        assert 0 <= kernels <= total and abs(total - kernels - rest) < 2e-3
    # keras_bn's step runs ATen's fused batch-norm backward, as PyTorch's does.
    assert "| aten::native_batch_norm_backward |" in out
