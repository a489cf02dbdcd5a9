"""kdrun's student stage against torchdistill's (the tool its users would otherwise pick) on
identical work: the same 50 shots (10-way 5-shot), the same teacher weights, the same initial
student, SGD with the same warm-up + cosine LR sequence and gradient clip, and the same Hinton
KD loss, checked equal on the first step to 1e-5. kdrun labels the shots once (its soft-label
stage, timed) and trains on the cached logits; torchdistill runs the teacher on every batch, as
it does. No augmentation on either side, so the first-step losses can match exactly.

Target: kdrun's speed / torchdistill's > 1, judged by the 95% interval of interleaved rounds.
Also printed: each tool's peak RSS while its stage runs (one subprocess per tool) and the lines
of configuration each needs. Needs the `peers` extra (`pip install -e '.[peers]'`); skipped
without it. With KDRUN_DATA_ROOT set, the shots are real CIFAR-10 images, else synthetic ones."""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import inspect
import math
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

from benchmarks.common import Target, cifar_sized, compare, cpu_runtime, info, skip
from kdrun.data.augment import Normalize
from kdrun.data.folder import decode_split
from kdrun.data.folder_scan import is_tree, scan_tree
from kdrun.data.views import AugmentedSet
from kdrun.losses import build_loss
from kdrun.models import build_model
from kdrun.train import Schedule, fit, predict

NAME = "student stage: kdrun vs torchdistill"
WAYS, SHOTS, STEPS, TEACHER, STUDENT = 10, 5, 20, "cnn_large", "cnn_small"
LR, MOMENTUM, WEIGHT_DECAY, CLIP, ALPHA, T = 0.02, 0.9, 5e-4, 5.0, 0.9, 4.0

# What each tool needs to be told for this stage (counted, not executed, for kdrun: its
# defaults already are lr 0.02, SGD + Nesterov, warm-up + cosine, clip 5, KD alpha 0.9, T 4).
KDRUN_CONFIG = f"""\
loss=kd
pool=0
soft_labels.views=0
data.augment.crop_padding=0
data.augment.flip=false
student.steps={STEPS}
student.batch_size={WAYS * SHOTS}
"""

# torchdistill's own YAML for the same stage (read by its reader and used below); the schedule
# is a Python function its YAML imports (`lr_lambda` below: counted as lines too).
TORCHDISTILL_CONFIG = f"""\
num_epochs: {STEPS}
train_data_loader:
  dataset_id: train
  sampler:
    class_or_func: !import_get
      key: torch.utils.data.RandomSampler
    kwargs: {{}}
  kwargs:
    batch_size: {WAYS * SHOTS}
    num_workers: 0
    drop_last: false
teacher:
  forward_proc: forward_batch_only
  requires_grad: false
student:
  forward_proc: forward_batch_only
  requires_grad: true
optimizer:
  key: SGD
  kwargs:
    lr: {LR}
    momentum: {MOMENTUM}
    nesterov: true
    weight_decay: {WEIGHT_DECAY}
  max_grad_norm: {CLIP}
scheduler:
  key: LambdaLR
  kwargs:
    lr_lambda: !import_get
      key: benchmarks.peer_torchdistill.lr_lambda
  scheduling_step: 1
criterion:
  key: WeightedSumLoss
  kwargs:
    sub_terms:
      kd:
        criterion:
          key: KDLoss
          kwargs:
            student_module_path: .
            student_module_io: output
            teacher_module_path: .
            teacher_module_io: output
            temperature: {T}
            alpha: {1 - ALPHA:.10g}
            beta: {ALPHA}
            reduction: batchmean
        weight: 1.0
"""


def lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip())


def shots() -> tuple[torch.Tensor, torch.Tensor, Normalize]:
    """10-way 5-shot uint8 images and labels: the first 5 of each class, real or synthetic.
    From a class-folder tree only those 50 files are decoded (kdrun's decoder, no cache);
    a torchvision copy is loaded whole through kdrun's cache."""
    root = os.environ.get("KDRUN_DATA_ROOT")
    if root and is_tree(Path(root)):
        classes = scan_tree(Path(root)).files["train"]
        first = {c: files[:SHOTS] for c, files in list(classes.items())[:WAYS]}
        split, _ = decode_split(first, 32)
        x, y = split.images, split.labels
        return x, y, Normalize(x, torch.device("cpu"))
    if root:
        from kdrun.data import get_source
        from kdrun.store.cache import ArtifactCache

        cfg = OmegaConf.create(
            {"source": "cifar10", "root": root, "download": False, "image_size": 32}
        )
        cache_dir = os.environ["KDRUN_CACHE_DIR"]  # main(): one decode for every process
        train = get_source("cifar10").load(cfg, ArtifactCache(Path(cache_dir))).train
        images, labels = train.images, train.labels
    else:
        images, labels, _ = cifar_sized(2_000)
    idx = torch.cat([(labels == c).nonzero().flatten()[:SHOTS] for c in range(WAYS)])
    x = images[idx].contiguous()
    return x, labels[idx].contiguous(), Normalize(x, torch.device("cpu"))


def models() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """The teacher (eval mode) and the initial student's weights, the same for both tools."""
    torch.manual_seed(1)
    teacher = build_model(TEACHER, WAYS).eval()
    torch.manual_seed(0)
    return teacher, build_model(STUDENT, WAYS).state_dict()


def student_from(init: dict[str, torch.Tensor]) -> torch.nn.Module:
    model = build_model(STUDENT, WAYS)
    model.load_state_dict(init)
    return model


def run_kdrun(images, labels, normalize, teacher, init) -> list[dict]:
    """Soft labels once (clean shots, eval-mode teacher), then the distilled student."""
    logits = predict(teacher, images, normalize, cpu_runtime())
    targets = {"labels": labels, "teacher_logits": logits}
    train_set = AugmentedSet(images, targets, normalize, 0, False)
    kd = build_loss(OmegaConf.create({"name": "kd", "alpha": ALPHA, "temperature": T}))
    schedule = Schedule(STEPS, WAYS * SHOTS, LR, MOMENTUM, WEIGHT_DECAY, CLIP)
    return fit(student_from(init), train_set, kd, schedule, cpu_runtime(), seed=0, stage="peer")


def lr_lambda(step: int) -> float:
    """The schedule's warm-up + cosine for torchdistill (its YAML imports this function)."""
    warmup = max(1, int(STEPS * 0.05))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, STEPS - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def torchdistill_config() -> dict:
    """TORCHDISTILL_CONFIG read by torchdistill's own YAML reader (its !import_get tags)."""
    from torchdistill.common.yaml_util import load_yaml_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "kd.yaml")
        path.write_text(TORCHDISTILL_CONFIG)
        return load_yaml_file(str(path))


def run_torchdistill(images, labels, normalize, teacher, init) -> list[float]:
    """torchdistill's DistillationBox loop over the same shots; returns each step's loss."""
    from torch.utils.data import TensorDataset
    from torchdistill.core.distillation import get_distillation_box

    dataset = TensorDataset(normalize(images), labels)
    box = get_distillation_box(
        teacher,
        student_from(init),
        {"train": dataset},
        torchdistill_config(),
        torch.device("cpu"),
        None,
        False,
        1,
    )
    losses = []
    for epoch in range(box.num_epochs):
        box.pre_epoch_process(epoch=epoch)
        for sample_batch, targets, supp_dict in box.train_data_loader:
            loss = box.forward_process(sample_batch, targets, supp_dict)
            box.post_forward_process(loss=loss)
            losses.append(loss.detach())
        box.post_epoch_process()
    return [float(x) for x in losses]


def peak_rss_mib(tool: str) -> float:
    """One stage of `tool` in a fresh process: its peak resident set while the stage runs."""
    code = f"from benchmarks import peer_torchdistill as p; print(p.one_stage({tool!r}))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1]) / 1024


def one_stage(tool: str) -> int:
    """Peak RSS in KiB of the stage alone: the data set is loaded and cut to the shots first,
    then Linux's high-water mark is reset (clear_refs 5), so loading CIFAR-10 is not counted.
    Where that reset is unavailable, the process's whole peak (imports and loading included)."""
    data, (teacher, init) = shots(), models()
    gc.collect()
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    (run_kdrun if tool == "kdrun" else run_torchdistill)(*data, teacher, init)
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def main() -> None:
    if importlib.util.find_spec("torchdistill") is None:
        skip(NAME, "torchdistill is not installed: pip install -e '.[peers]'")
        return
    if os.environ.get("KDRUN_CACHE_DIR"):
        return compare_tools()
    with tempfile.TemporaryDirectory() as cache:  # shared with the memory subprocesses
        os.environ["KDRUN_CACHE_DIR"] = cache
        try:
            compare_tools()
        finally:
            del os.environ["KDRUN_CACHE_DIR"]


def compare_tools() -> None:
    import logging

    logging.getLogger("torchdistill").setLevel(logging.WARNING)
    images, labels, normalize = shots()
    teacher, init = models()
    ours = run_kdrun(images, labels, normalize, teacher, init)
    theirs = run_torchdistill(images, labels, normalize, teacher, init)
    gap = abs(ours[0]["loss"] - theirs[0])
    agree = gap <= 1e-5
    info(
        "first-step KD loss",
        f"kdrun {ours[0]['loss']:.7f}, torchdistill {theirs[0]:.7f}, |diff| {gap:.1e} "
        f"({'agree to 1e-5' if agree else 'DISAGREE: the two stages are not the same work'})",
    )
    if not agree:
        print(f"[MISS] {NAME}: first-step losses differ by {gap:.1e} > 1e-5", flush=True)
        sys.exit(1)
    data = "CIFAR-10 shots" if os.environ.get("KDRUN_DATA_ROOT") else "synthetic shots"
    compare(
        f"{NAME} ({WAYS}-way {SHOTS}-shot {data}, {STEPS} steps, {STUDENT} from {TEACHER}, "
        f"{torch.get_num_threads()} threads)",
        lambda: run_kdrun(images, labels, normalize, teacher, init),
        lambda: run_torchdistill(images, labels, normalize, teacher, init),
        Target(">", 1.0),
        warmup=0,  # the first-step check above just ran each tool once
        labels=("kdrun", "torchdistill 1.1.5"),
    )
    ours_mib, theirs_mib = peak_rss_mib("kdrun"), peak_rss_mib("torchdistill")
    info(
        "peak RSS while one stage runs (fresh process, data and models loaded)",
        f"kdrun {ours_mib:.0f} MiB, torchdistill {theirs_mib:.0f} MiB",
    )
    info(
        "lines of configuration",
        f"kdrun {lines(KDRUN_CONFIG)} (command-line overrides), torchdistill "
        f"{lines(TORCHDISTILL_CONFIG)} YAML + {lines(inspect.getsource(lr_lambda)) - 1} Python "
        "(the LR function its YAML imports)",
    )


if __name__ == "__main__":
    main()
