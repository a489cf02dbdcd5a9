"""`kdrun-export RUN_DIR`: export=onnx for an earlier run's student, with the same verification.

Reads the run's resolved config (.hydra/config.yaml), its student.pt (weights only) and, for the
comparison, episode 0's classes from metrics.json; writes a verified student.onnx and
export.json (the figures a run with export=onnx records under student.export) into RUN_DIR.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kdrun.errors import ConfigError

DEFAULTS = {"opset": 17, "tolerance": 1e-4, "verify_images": 64}  # OnnxExportConf's


def _test_images(cfg, classes: list[str], n: int):
    """Up to `n` normalised test images of the run's classes (episode 0), as the run saw them."""
    import torch

    from kdrun.data import get_source
    from kdrun.data.augment import Normalize
    from kdrun.store.cache import ArtifactCache

    cache = ArtifactCache(Path(str(cfg.cache_dir)))
    dataset = get_source(cfg.data.source).load(cfg.data, cache)
    wanted = torch.tensor([dataset.classes.index(c) for c in classes])
    idx = torch.isin(dataset.test.labels, wanted).nonzero().flatten()[:n]
    normalize = Normalize(dataset.train.images, torch.device("cpu"))
    return normalize(dataset.test.images[idx])


def export_run(run_dir: Path, opset: int, tolerance: float, images: int) -> dict:
    """Export and verify RUN_DIR's student; returns what export.json holds."""
    import torch
    from omegaconf import OmegaConf

    from kdrun.config import EXPORT_SCHEMAS
    from kdrun.stages.export import INSTALL_HINT, export_student, missing_exporter
    from kdrun.store.cache import atomic_write_text

    missing = missing_exporter()
    if missing:
        raise ConfigError(f"kdrun-export needs the {missing} package: {INSTALL_HINT}.")
    paths = [run_dir / ".hydra" / "config.yaml", run_dir / "student.pt", run_dir / "metrics.json"]
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise ConfigError(f"{run_dir} is not a finished kdrun run: missing {', '.join(absent)}.")
    cfg = OmegaConf.load(paths[0])
    state = torch.load(paths[1], map_location="cpu", weights_only=True)
    classes = json.loads(paths[2].read_text())["episodes"][0]["classes"]
    export_cfg = OmegaConf.merge(
        OmegaConf.structured(EXPORT_SCHEMAS["onnx"]),
        {"name": "onnx", "opset": opset, "tolerance": tolerance, "verify_images": images},
    )
    x = _test_images(cfg, classes, images)
    info = export_student(export_cfg, cfg.student.arch, state, x, run_dir)
    atomic_write_text(json.dumps(info, indent=2) + "\n", run_dir / "export.json")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kdrun-export",
        description="Write a verified student.onnx for an earlier kdrun run (needs kdrun[export]).",
    )
    parser.add_argument("run_dir", type=Path, help="a run directory (holds student.pt)")
    parser.add_argument("--opset", type=int, default=DEFAULTS["opset"])
    parser.add_argument("--tolerance", type=float, default=DEFAULTS["tolerance"])
    parser.add_argument("--images", type=int, default=DEFAULTS["verify_images"])
    args = parser.parse_args(argv)
    try:
        info = export_run(args.run_dir, args.opset, args.tolerance, args.images)
    except ConfigError as exc:  # ExportError and StorageError included: one paragraph, exit 2
        print(f"kdrun-export: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.run_dir / info['file']}: max |diff| {info['max_abs_diff']:.3g} vs PyTorch "
        f"on {info['verified_images']} test images (bound {info['bound']:.3g}); onnxruntime "
        f"{info['onnxruntime_latency_ms']:.2f} ms at batch 1; details in export.json"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
