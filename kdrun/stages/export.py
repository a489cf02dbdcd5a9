"""export=onnx: the student as an ONNX file any runtime can load, verified before it is kept.

The file is written to a temporary name, read back by onnxruntime (its own reader), and its
logits on test images compared with PyTorch's; only a file within tolerance is renamed to
student.onnx. A failing exporter or a mismatch raises ExportError naming the operator or the
difference, and leaves no student.onnx behind.
"""

from __future__ import annotations

import importlib.util
import io
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from kdrun.errors import ExportError
from kdrun.measure.cost import LATENCY_BUDGET_S, LATENCY_REPS, LATENCY_WARMUP, timed_median
from kdrun.store.storage import commit, staged_file

INSTALL_HINT = "pip install 'kdrun[export]'"
ONNX_NAME = "student.onnx"


def missing_exporter() -> str | None:
    """The package export=onnx needs that is not installed, or None."""
    for module in ("onnx", "onnxruntime"):
        if importlib.util.find_spec(module) is None:
            return module
    return None


def onnx_bytes(model: nn.Module, image_size: int, opset: int) -> bytes:
    """The model as ONNX (TorchScript exporter), with a dynamic batch dimension."""
    buf = io.BytesIO()
    x = torch.zeros(1, 3, image_size, image_size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's shape-check and deprecation notes
            torch.onnx.export(
                model.eval(),
                (x,),
                buf,
                dynamo=False,
                input_names=["images"],
                output_names=["logits"],
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=opset,
            )
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]
        op = re.search(r"operator '?([\w:.]+)'?", text)
        what = f"operator {op.group(1)}" if op else "an operation"
        raise ExportError(
            f"export=onnx failed: the ONNX exporter (opset {opset}) could not convert {what} "
            f"of the student ({type(exc).__name__}: {text}). Try another export.opset, or keep "
            "export=none and use student.pt."
        ) from None
    return buf.getvalue()


def compare(reference: torch.Tensor, exported: torch.Tensor, tolerance: float) -> dict:
    """Max |difference| of two logit tensors and the bound it must stay under: `tolerance`
    times the largest |logit| (at least 1), so the test is relative to the logits' scale."""
    if reference.shape != exported.shape:
        raise ExportError(
            f"export=onnx verification failed: onnxruntime returned logits of shape "
            f"{tuple(exported.shape)}, PyTorch {tuple(reference.shape)}; no student.onnx kept."
        )
    diff = (reference.double() - exported.double()).abs().max().item()
    scale = max(1.0, reference.abs().max().item())
    bound = tolerance * scale
    if not diff <= bound:  # NaN fails too
        raise ExportError(
            f"export=onnx verification failed: onnxruntime's logits differ from PyTorch's by up "
            f"to {diff:.3g} on the test images, above export.tolerance={tolerance:g} x logit "
            f"scale {scale:.3g} = {bound:.3g}; no student.onnx kept. An operator the exporter "
            "translated differently is the usual cause: try another export.opset."
        )
    return {"max_abs_diff": diff, "logit_scale": scale, "bound": bound}


def ort_session(blob: bytes):
    """An onnxruntime CPU session on one thread: the deployment latency's setting."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])


def ort_latency_ms(session, image_size: int) -> float:
    """Median onnxruntime latency of one image on one thread, after warm-up, in ms."""
    x = torch.randn(1, 3, image_size, image_size).numpy()
    seconds = timed_median(
        lambda: session.run(None, {"images": x}),
        LATENCY_WARMUP,
        LATENCY_REPS,
        LATENCY_BUDGET_S,
        min_reps=5,
    )
    return 1000.0 * seconds


def export_onnx(
    model: nn.Module,
    images: torch.Tensor,
    out_dir: Path,
    opset: int,
    tolerance: float,
    check=compare,
) -> dict:
    """Write a verified out_dir/student.onnx for `model` (on the CPU) and return what
    metrics.json records; `images` are normalised test images. `check` compares the logits."""
    model = model.cpu().eval()
    image_size = images.shape[-1]
    blob = onnx_bytes(model, image_size, opset)
    path = out_dir / ONNX_NAME
    with staged_file(path, "the run directory") as (f, tmp):
        f.write(blob)
    try:
        session = ort_session(tmp.read_bytes())  # read back from the file itself
        with torch.no_grad():
            reference = model(images.cpu())
        exported = torch.from_numpy(session.run(None, {"images": images.cpu().numpy()})[0])
        verdict = check(reference, exported, tolerance)
        latency = ort_latency_ms(session, image_size)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    commit(tmp, path, "the run directory")
    return {
        "format": "onnx",
        "file": ONNX_NAME,
        "opset": opset,
        "size_mb": len(blob) / 1e6,
        "verified_images": len(images),
        **verdict,
        "tolerance": tolerance,
        "onnxruntime_latency_ms": latency,
        "onnxruntime": _version("onnxruntime"),
    }


def _version(module: str) -> str:
    from importlib.metadata import version

    return version(module)


def export_student(cfg, arch: str, state_dict: dict, images: torch.Tensor, out_dir: Path) -> dict:
    """export=onnx for a trained student's weights; `cfg` is `export`, `images` normalised."""
    from kdrun.models import build_model

    n = int(cfg.verify_images)
    with torch.random.fork_rng(devices=[]):  # building must not shift the run's RNG
        model = build_model(arch, _head_width(state_dict))
    model.load_state_dict(state_dict)
    return export_onnx(model, images[:n], out_dir, int(cfg.opset), float(cfg.tolerance))


def _head_width(state_dict: dict) -> int:
    """Classes of a state dict: the rows of its last 2-D weight (the classifier)."""
    last = [v for k, v in state_dict.items() if k.endswith("weight") and v.dim() == 2][-1]
    return int(last.shape[0])
