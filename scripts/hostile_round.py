"""A hostile round (issue 22): >= 100 real cases as real processes of the installed `kdrun` and
`kdrun-report` console scripts on tiny synthetic data, each with the exit status it must give.
Writes docs/hostile-round.md: case, exit status, the first line said, verdict.

    taskset -c 1 env OMP_NUM_THREADS=1 .venv/bin/python scripts/hostile_round.py [--jobs 3]

A case holds when its exit status is the expected one and nothing said is a traceback (plus
the case's own check, e.g. a line in kdrun.log). Everything runs under a fresh temporary dir."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
KDRUN, REPORT = str(BIN / "kdrun"), str(BIN / "kdrun-report")
FAST = [
    "experiment=smoke",
    "data.train_per_class=40",
    "data.test_per_class=10",
    "teacher.epochs=1",
    "student.steps=3",
    "pool=10",  # smoke's pool=50 does not fit 40 images a class: every run was refused
    "device.threads=1",
]
TIMEOUT_S = 900  # a hang guard: a case that needs it is a defect


@dataclass
class Case:
    name: str
    argv: list[str]  # [] and a `run` hook for cases that drive processes themselves
    expect: int | tuple[int, ...]
    setup: Callable[[Path], None] | None = None
    check: Callable[[Path, str], str] | None = None  # "" if fine, else what is wrong
    signal_after: tuple[int, float] | None = None  # (signal, seconds after start)
    report: bool = False
    extra: dict = field(default_factory=dict)


SYNTHETIC_ONLY = ("data.train_per_class=", "data.test_per_class=")


def kd(*args: str, fast: bool = True) -> list[str]:
    """kdrun's argv: flags (`-m`) first, as Hydra's parser wants them, then the fast settings
    (less data=synthetic's own keys when the case names another source), then the case's."""
    base = FAST if fast else []
    if any(a.startswith("data=") and a != "data=synthetic" for a in args):
        base = [a for a in base if not a.startswith(SYNTHETIC_ONLY)]
    flags = [a for a in args if a.startswith("-")]
    return [KDRUN, *flags, *base, *[a for a in args if not a.startswith("-")]]


# --- setups: odd files -------------------------------------------------------------------
def _fifo(d: Path, name: str = "ckpt.pt") -> None:
    os.mkfifo(d / name)


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda d: (d / name).write_bytes(data)


def _sparse(d: Path) -> None:
    with open(d / "ckpt.pt", "wb") as f:
        f.truncate(5 << 30)


def _torch_save(obj_src: str, legacy: bool = False) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        code = (
            "import torch, os, sys\n"
            "class Evil:\n"
            "    def __reduce__(self):\n"
            "        return (os.system, ('echo PWNED',))\n"
            f"obj = {obj_src}\n"
            f"torch.save(obj, sys.argv[1], _use_new_zipfile_serialization={not legacy})\n"
        )
        subprocess.run([sys.executable, "-c", code, str(d / "ckpt.pt")], check=True)

    return make


def _tree(d: Path, classes=("a", "b"), train=6, test=2, size=(16, 16), fmt="png") -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        for c in classes:
            (d / "data" / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / "data" / split / c / f"{i}.{fmt}")


def _then(*fns: Callable[[Path], None]) -> Callable[[Path], None]:
    def run(d: Path) -> None:
        for fn in fns:
            fn(d)

    return run


def _metrics(d: Path, text: bytes | None, fifo: bool = False) -> None:
    (d / "runs" / "0").mkdir(parents=True)
    if fifo:
        os.mkfifo(d / "runs" / "0" / "metrics.json")
    elif text is not None:
        (d / "runs" / "0" / "metrics.json").write_bytes(text)


SLURM = ["hydra/launcher=kdrun_slurm", "hydra.sweep.dir=sweep"]


def _big_png(d: Path) -> None:
    """81 million black pixels: a few hundred KB of PNG that PIL would decode to 243 MB."""
    from PIL import Image

    Image.new("RGB", (9000, 9000)).save(d / "data/train/a/big.png")


def _fake_slurm(d: Path) -> None:
    """srun present, sbatch failing as it does when slurmctld is down."""
    (d / "fakebin").mkdir()
    for name, body in (
        ("srun", "exit 0"),
        ("sbatch", 'echo "sbatch: error: Unable to contact slurm controller" >&2; exit 1'),
    ):
        (d / "fakebin" / name).write_text(f"#!/bin/sh\n{body}\n")
        (d / "fakebin" / name).chmod(0o755)


def _summary_so_far(d: Path, said_: str) -> str:
    """After a kill: summary.csv exists, its rows are ok or not finished, one ok per record."""
    import csv

    path = d / "sweep" / "summary.csv"
    if not path.exists():
        return "no summary.csv"
    rows = list(csv.DictReader(path.open()))
    records = len(list((d / "sweep").glob("*/metrics.json")))
    ok = sum(r["status"] == "ok" for r in rows)
    bad = [r["status"] for r in rows if r["status"] not in ("ok", "not finished", "missing")]
    if len(rows) != 4 or ok != records or bad:
        return f"summary rows {[r['status'] for r in rows]} vs {records} records"
    return ""


FOLDER = ["data=folder", "data.root=data", "ways=2", "shots=1", "pool=2"]


# --- checks --------------------------------------------------------------------------------
def logged(word: str) -> Callable[[Path, str], str]:
    def check(d: Path, said: str) -> str:
        log = d / "run" / "kdrun.log"
        text = log.read_text() if log.exists() else ""
        return "" if word in text else f"kdrun.log lacks {word!r}"

    return check


def said(word: str) -> Callable[[Path, str], str]:
    return lambda d, text: "" if word in text else f"did not say {word!r}"


def no_run_dir(d: Path, text: str) -> str:
    return "" if not (d / "run").exists() else "left a run directory behind"


def _cases() -> list[Case]:
    cases: list[Case] = []
    # first, round 3's classes: memory, data.max_pixels, Slurm, a killed sweep's summary
    cases.append(
        Case(
            "soft_labels.views=2000000 (memory)",
            kd("soft_labels.views=2000000", "hydra.run.dir=run"),
            2,
            None,
            said("soft_labels.views=2000000 needs more memory"),
        )
    )
    cases.append(
        Case(
            "data.image_size=1024 on 50,000 images (memory)",
            kd(
                "teacher=resnet20",
                "student=resnet20",
                "data.image_size=1024",
                "data.train_per_class=5000",
                "hydra.run.dir=run",
            ),
            2,
            None,
            said("data.image_size=1024 needs more memory"),
        )
    )
    cases.append(
        Case(
            "a 9000x9000 PNG (81 MP, under PIL's bomb limit)",
            kd(*FOLDER, "hydra.run.dir=run"),
            0,
            _then(_tree, _big_png),
            said("larger than data.max_pixels"),
        )
    )
    cases.append(
        Case(
            "kdrun_slurm, sbatch cannot reach the controller",
            ["env", "PATH=fakebin:/usr/bin:/bin", *kd("-m", "shots=1,2", *SLURM)],
            2,
            _fake_slurm,
            said("could not submit the sweep to Slurm"),
        )
    )
    cases.append(
        Case(
            "kdrun_slurm, no Slurm commands at all",
            ["env", "PATH=nobin", *kd("-m", "shots=1,2", *SLURM)],
            2,
            None,
            said("no `srun` command"),
        )
    )
    cases.append(
        Case(
            "a sweep SIGKILLed midway leaves a summary",
            kd("-m", "shots=1,2,3,4", "hydra.sweep.dir=sweep"),
            (-9, 0),
            None,
            _summary_so_far,
            (signal.SIGKILL, 90.0),
        )
    )
    bad_values = [
        "shots=0",
        "shots=-3",
        "ways=1",
        "ways=11",
        "ways=0",
        "episodes=0",
        "seed=-1",
        "seed=4294967296",
        "pool=-1",
        "pool=abc",
        "pool=100000",
        "shots=1000",
        "soft_labels.views=-1",
        "soft_labels.mix=blend",
        "soft_labels.mix=mixup soft_labels.views=0",
        "soft_labels.mix_alpha=0",
        "soft_labels.features=disk",
        "soft_labels.feature_cache_mb=-1",
        "teacher.arch=vgg99",
        "student.arch=nope",
        "teacher.optimizer=lion",
        "teacher.lr=0",
        "student.lr=-1",
        "teacher.batch_size=0",
        "student.batch_size=-5",
        "teacher.grad_clip=-1",
        "teacher.label_smoothing=1",
        "student.label_smoothing=-0.1",
        "teacher.momentum=1",
        "student.weight_decay=-1",
        "teacher.epochs=0",
        "teacher.checkpoint_every=0",
        "student.steps=0",
        "student.epochs=0",
        "student.min_steps=0",
        "student.curve=[0]",
        "student.curve=[1.5]",
        "loss.alpha=2",
        "loss.alpha=-0.1",
        "loss.temperature=0",
        "loss=dkd loss.beta=-1",
        "device.type=tpu",
        "device.precision=fp8",
        "device.threads=-1",
        "device.channels_last=maybe",
        "data.image_size=4",
        "data.image_size=5000",
        "data.augment.crop_padding=-1",
        "data.augment.crop_padding=64",
        "eval_batch_size=0",
        "teacher.lr=nan",
        "student.lr=inf",
        "data.num_classes=1",
        "data.num_classes=99",
        "data.train_per_class=0",
        "+foo=1",
        "shots=abc",
        "ways=2.5",
        "loss=nope",
        "teacher=nope",
        "cache_dir=''",
        "data.synthetic_seed=-2",
        "teacher.seed=-1",
        "logger=nope",
        "loss.name=xyz",
    ]
    for v in bad_values:
        cases.append(Case(f"bad value `{v}`", kd(*v.split(), "hydra.run.dir=run"), (1, 2)))
    ckpt = "teacher.checkpoint=ckpt.pt"
    odd_ckpt = [
        ("checkpoint is a FIFO", _fifo),
        ("checkpoint is /dev/zero", None),
        ("checkpoint is a directory", lambda d: (d / "ckpt.pt").mkdir()),
        ("checkpoint is empty", _write("ckpt.pt", b"")),
        ("checkpoint is text", _write("ckpt.pt", b"hello\n")),
        ("checkpoint is a sparse 5 GiB file", _sparse),
        ("checkpoint is random bytes", _write("ckpt.pt", os.urandom(4096))),
        ("checkpoint is a zip of junk", _write("ckpt.pt", b"PK\x03\x04" + os.urandom(200))),
        ("checkpoint with pickled code (zip)", _torch_save("{'x': Evil()}")),
        ("checkpoint with pickled code (legacy)", _torch_save("{'x': Evil()}", legacy=True)),
        ("checkpoint of a list", _torch_save("[torch.ones(2)]")),
        ("checkpoint of a wrong architecture", _torch_save("{'w': torch.ones(3)}")),
        ("checkpoint missing", None),
        (
            "checkpoint with NaN weights",
            _torch_save(
                "{k: v * float('nan') for k, v in __import__('kdrun.models', fromlist=['x'])"
                ".build_model('cnn_small', 10).state_dict().items()}"
            ),
        ),
    ]
    for name, setup in odd_ckpt:
        arg = "teacher.checkpoint=/dev/zero" if "dev/zero" in name else ckpt
        cases.append(
            Case(name, kd(arg, "hydra.run.dir=run"), 2, setup, said("PWNED") if False else None)
        )
    cases.append(
        Case(
            "pickled code never runs",
            kd(ckpt, "hydra.run.dir=run"),
            2,
            _torch_save("{'x': Evil()}"),
            lambda d, t: "ran the pickled code" if "PWNED" in t else "",
        )
    )
    data_cases = [
        ("data.root missing", [], None, 2),
        ("data.root is a file", [], _write("data", b"x"), 2),
        ("data.root empty dir", [], lambda d: (d / "data").mkdir(), 2),
        ("one class only", [], lambda d: _tree(d, ("a",)), 2),
        ("class without test images", [], lambda d: _tree(d, test=0), 2),
        (
            "a FIFO among the images",
            [],
            _then(_tree, lambda d: os.mkfifo(d / "data/train/a/fifo.png")),
            0,
        ),
        (
            "a corrupt image among the images",
            [],
            _then(_tree, lambda d: (d / "data/train/a/bad.png").write_bytes(b"junk")),
            0,
        ),
        ("images of odd sizes (1x300)", [], lambda d: _tree(d, size=(1, 300)), 0),
        ("grey JPEGs", [], lambda d: _tree(d, fmt="jpg"), 0),
        ("too many shots for the folder", ["shots=50"], _tree, 2),
        ("ways above the folder's classes", ["ways=3"], _tree, 2),
    ]
    for name, extra, setup, code in data_cases:
        args = [
            a for a in FOLDER if not (extra and a.split("=")[0] in {e.split("=")[0] for e in extra})
        ]
        cases.append(Case(name, kd(*args, *extra, "hydra.run.dir=run"), code, setup))
    # signals during a real run: one line, in kdrun.log, 128 + the signal
    for sig, code in (
        (signal.SIGINT, 130),
        (signal.SIGTERM, 143),
        (signal.SIGHUP, 129),
        (signal.SIGQUIT, 131),
    ):
        cases.append(
            Case(
                f"{sig.name} during a run",
                kd("teacher.epochs=50", "hydra.run.dir=run"),
                code,
                None,
                logged("re-run the same command"),
                (sig, 25.0),
            )
        )
    # runs that must succeed, and reuse that must prove its inputs
    cases.append(Case("a plain smoke run", kd("hydra.run.dir=run"), 0))
    cases.append(
        Case(
            "a sweep with a repeated value",
            kd("-m", "shots=1,1", "hydra.sweep.dir=sweep"),
            0,
            None,
            said("more than once"),
        )
    )
    cases.append(Case("a run dir name longer than NAME_MAX", kd("hydra.run.dir=" + "x" * 300), 2))
    cases.append(
        Case(
            "a sweep dir name longer than NAME_MAX",
            kd("-m", "shots=1", "hydra.sweep.dir=" + "y" * 300),
            2,
        )
    )
    cases.append(
        Case("run dir under a file", kd("hydra.run.dir=afile/run"), 2, _write("afile", b"x"))
    )
    cases.append(
        Case(
            "cache_dir under a file",
            kd("cache_dir=afile/c", "hydra.run.dir=run"),
            2,
            _write("afile", b"x"),
        )
    )
    cases.append(Case("cache_dir is /dev/null", kd("cache_dir=/dev/null", "hydra.run.dir=run"), 2))
    cases.append(Case("a typo in a key", kd("shot=1", "hydra.run.dir=run"), (1, 2)))
    cases.append(Case("a typo in a group", kd("teacher=cnn_lrge", "hydra.run.dir=run"), (1, 2)))
    cases.append(
        Case(
            "an unknown experiment", kd("experiment=nope", "hydra.run.dir=run", fast=False), (1, 2)
        )
    )
    # kdrun-report
    rep = [
        ("report on a FIFO metrics.json", lambda d: _metrics(d, None, fifo=True), 2),
        ("report on a foreign metrics.json", lambda d: _metrics(d, b"[1, 2]"), 1),
        ("report on a cut metrics.json", lambda d: _metrics(d, b'{"student": '), 1),
        ("report on an empty dir", lambda d: (d / "runs").mkdir(), 1),
        ("report on a missing dir", None, 2),
        (
            "report on a metrics.json directory",
            lambda d: (d / "runs/0/metrics.json").mkdir(parents=True),
            (1, 2),
        ),
    ]
    for name, setup, code in rep:
        cases.append(Case(name, [REPORT, "runs", "--out", "out"], code, setup, report=True))
    cases.append(
        Case(
            "report --out under a file",
            [REPORT, "runs", "--out", "afile/out"],
            (1, 2),
            _then(lambda d: _metrics(d, b"{}"), _write("afile", b"x")),
            report=True,
        )
    )
    cases.append(Case("kdrun --help", [KDRUN, "--help"], 0))
    cases.append(Case("kdrun-report --help", [REPORT, "--help"], 0, report=True))
    cases.append(Case("kdrun-report with no args", [REPORT], 2, report=True))
    return cases


def first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line and "INFO" not in line[:30]:
            return line[:160]
    return ""


def run_case(case: Case, root: Path) -> dict:
    d = Path(tempfile.mkdtemp(prefix="case-", dir=root))
    if case.setup is not None:
        case.setup(d)
    env = {
        **os.environ,
        "KDRUN_CACHE_DIR": str(root / "cache"),
        "OMP_NUM_THREADS": "1",
        "HYDRA_FULL_ERROR": "0",
    }
    env.pop("HYDRA_FULL_ERROR")
    start = time.time()
    proc = subprocess.Popen(
        case.argv,
        cwd=d,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    if case.signal_after:
        sig, after = case.signal_after
        try:
            proc.wait(timeout=after)
        except subprocess.TimeoutExpired:
            proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, code = proc.communicate()[0] + "\n(hung: killed)", -9
    expect = case.expect if isinstance(case.expect, tuple) else (case.expect,)
    problems = []
    if code not in expect:
        problems.append(f"exit {code}, expected {'/'.join(map(str, expect))}")
    if "Traceback" in out:
        problems.append("a traceback")
    if case.check is not None:
        extra = case.check(d, out)
        if extra:
            problems.append(extra)
    return {
        "case": case.name,
        "status": code,
        "said": first_line(out) if code != 0 else "(ran)" if not case.report else first_line(out),
        "verdict": "held" if not problems else "DEFECT: " + "; ".join(problems),
        "seconds": round(time.time() - start, 1),
    }


def markdown(results: list[dict], planned: int | None = None) -> str:
    held = sum(r["verdict"] == "held" for r in results)
    lines = [
        "# Hostile round (issue 22)",
        "",
        "`scripts/hostile_round.py` runs each case below as a real process of the installed",
        "`kdrun` or `kdrun-report` console script, on tiny synthetic data (`experiment=smoke`,",
        "one teacher epoch, three student steps) or a small generated image folder, in a fresh",
        "directory, pinned to one core. A case *holds* when its exit status is the expected",
        "one, nothing it said is a traceback, and its own check passes (e.g. the stop line in",
        "`kdrun.log` after a signal).",
        "",
        "Exit statuses: 0 ran; 1 Hydra refused the command line (unknown key, group or option)",
        "or kdrun-report found no record; 2 kdrun refused the input in one paragraph; 3 a Slurm",
        "job of a sweep ended without a result; 128 + N a signal N stopped the run (130 SIGINT,",
        "143 SIGTERM, 129 SIGHUP, 131 SIGQUIT); -9 the round itself SIGKILLed the process.",
        "",
        f"Result: {held} of {len(results)} cases held"
        + (f" ({len(results)} of the {planned} planned cases ran)." if planned else "."),
        "",
        "| # | case | exit | first line said | verdict |",
        "|---|---|---|---|---|",
    ]
    for i, r in enumerate(results, 1):
        said_ = r["said"].replace("|", "\\|").replace("`", "'")
        lines.append(f"| {i} | {r['case']} | {r['status']} | {said_} | {r['verdict']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("docs/hostile-round.md"))
    parser.add_argument("-k", default="", help="only cases whose name contains this")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="kdrun-hostile-"))
    cases = [c for c in _cases() if args.k in c.name]
    done: dict[int, dict] = {}

    def one(i: int) -> None:
        r = run_case(cases[i], root)
        done[i] = r
        print(f"{r['verdict'][:60]:60} {r['status']:>4} {r['case']}", flush=True)
        # the page so far, in case order: a round cut short still reports what it ran
        args.out.write_text(markdown([done[j] for j in sorted(done)], len(cases)))

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(one, range(len(cases))))
    results = [done[j] for j in sorted(done)]
    shutil.rmtree(root, ignore_errors=True)
    print(f"{sum(r['verdict'] == 'held' for r in results)}/{len(results)} held; {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
