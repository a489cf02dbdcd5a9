"""export=onnx: a smoke-run student round-trips through onnxruntime, a mismatch is refused and
leaves no file, and a missing onnxruntime is refused before any work."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from omegaconf import OmegaConf

from kdrun.cli.export import main as export_main
from kdrun.errors import ConfigError, ExportError
from kdrun.models import build_model
from kdrun.pipeline import run
from kdrun.preflight import check_ranges
from kdrun.stages.export import compare, export_onnx
from tests.conftest import SMOKE_FAST


@pytest.mark.slow
def test_a_runs_student_round_trips_through_onnxruntime(compose_cfg, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="export=onnx needs kdrun[export]")
    out = tmp_path / "run"
    cfg = compose_cfg(*SMOKE_FAST, "export=onnx")
    metrics = run(cfg, out)
    info = json.loads((out / "metrics.json").read_text())["student"]["export"]
    assert info["file"] == "student.onnx" and info["max_abs_diff"] <= info["bound"]
    assert info["onnxruntime_latency_ms"] > 0
    assert "student.onnx" in metrics["files"]  # checksummed with the other outputs
    # Read both files back through their own readers: the ONNX file computes student.pt's logits.
    model = build_model("cnn_small", 10)
    model.load_state_dict(torch.load(out / "student.pt", weights_only=True))
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        expected = model.eval()(x)
    session = ort.InferenceSession(str(out / "student.onnx"), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    assert torch.allclose(got, expected, atol=1e-4 * max(1.0, expected.abs().max().item()))

    # kdrun-export does the same for an earlier run directory (Hydra saves its config there).
    (out / "student.onnx").unlink()
    (out / ".hydra").mkdir()
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")
    assert export_main([str(out)]) == 0
    again = json.loads((out / "export.json").read_text())
    assert again["max_abs_diff"] <= again["bound"] and (out / "student.onnx").is_file()
    assert export_main([str(tmp_path / "nowhere")]) == 2


def test_a_mismatching_export_is_refused_and_leaves_no_file(tmp_path):
    pytest.importorskip("onnxruntime", reason="export=onnx needs kdrun[export]")
    model = build_model("cnn_small", 3)
    images = torch.randn(4, 3, 32, 32)

    def broken(reference, exported, tolerance):  # as if one operator were translated wrongly
        return compare(reference, exported + 0.5, tolerance)

    with pytest.raises(ExportError, match=r"differ from PyTorch's by up to 0\.5"):
        export_onnx(model, images, tmp_path, 17, 1e-4, check=broken)
    assert list(tmp_path.iterdir()) == []  # neither student.onnx nor a temporary file


def test_compare_names_the_difference_and_the_bound():
    ref = torch.tensor([[10.0, -20.0]])
    assert compare(ref, ref + 1e-4, 1e-4)["bound"] == pytest.approx(20 * 1e-4)
    with pytest.raises(ExportError, match="above export.tolerance=0.0001"):
        compare(ref, ref + 1e-2, 1e-4)
    with pytest.raises(ExportError, match="shape"):
        compare(ref, ref.T, 1e-4)


def test_export_onnx_without_onnxruntime_is_refused_naming_the_extra(compose_cfg, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"pip install 'kdrun\[export\]'"):
        check_ranges(compose_cfg(*SMOKE_FAST, "export=onnx"))
    check_ranges(compose_cfg(*SMOKE_FAST))  # export=none needs nothing
