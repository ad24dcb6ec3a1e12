"""Bad input to the three command-line tools, table-driven (issue "Reliability", item 2).

Each row runs ``search/run.py``, ``search/rerun.py`` or ``analysis/report.py`` as a
subprocess, as a user would, on a fresh workspace (``tmp_path``) holding small
data files and results folders, some of them broken. Every row must:

- exit non-zero (2: an expected error, never the crash path's 1);
- print exactly ONE line on stderr, ``error: ...``, that names the problem
  (the expected substring), and no traceback;
- leave the workspace exactly as it was: every path, its bytes (sha256) and its
  mtime, so nothing was written, replaced, touched or created -- no results
  folder from a search that failed, no crash log in the working directory;
- fail before Ray starts (and before any lock is taken) and before any training: the subprocesses see a
  poisoned ``ray`` package first on PYTHONPATH (importing it raises), and
  training would write under the workspace (caught by the snapshot).

The data files are tiny fakes in the ``gtsrb32.npz`` layout (shared/data/README.md):
a valid one (checked to load), the same cut in half, and wrong-shape variants.
``CL_DATA_DIR`` is removed and the working directory has no ``./data``, so a
missing file is really missing (no fallback to the real 121 MB file).

Cost: each row is one short Python process, ~1.6 s of CPU, almost all of it
``import torch`` (the strategy registry behind the method/key checks imports it).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures_results import write_search_fixture

ROOT = Path(__file__).resolve().parent.parent
CLIS = {"run": ROOT / "search" / "run.py", "rerun": ROOT / "search" / "rerun.py",
        "rerun-dir": ROOT / "search" / "rerun.py", "report": ROOT / "analysis" / "report.py"}
# Every run.py / rerun.py row works on the synthetic stream (3 tasks, 6 classes, 360 training images)
# unless it names --dataset gtsrb; outputs go under the workspace.
BASE = {"run": ["--dataset", "synthetic", "--epochs", "1", "--results-root", "{ws}/results"],
        "rerun": ["--dataset", "synthetic", "--epochs", "1", "--threads", "1", "--quiet", "--out", "{ws}/out"],
        # rerun of a search folder: the protocol comes from its search.json
        "rerun-dir": ["--threads", "1", "--quiet"],
        "report": []}
GTSRB = ["--dataset", "gtsrb", "--data-dir"]
POISON = 'raise RuntimeError("bad-input test: Ray was imported, so this case did not fail before Ray starts")\n'

# (cli, args, expected substring of the one stderr line)
CASES = [
    # unknown methods
    ("run", ["--method", "icarll"], "unknown method 'icarll'"),
    ("rerun", ["--method", "icarll"], "unknown method 'icarll'"),
    # one search across methods (--method a,b,c): an unknown or repeated method, a task-IL one,
    # a key only some of the methods have (named)
    ("run", ["--method", "icarl,icarll"], "unknown method 'icarll'"),
    ("run", ["--method", "icarl,der,icarl"], "--method 'icarl,der,icarl': 'icarl' is given twice"),
    ("run", ["--method", "icarl,packnet"], "packnet is task-incremental only"),
    ("run", ["--method", "finetune,replay", "--set", "memory=100"],
     "--set memory: only replay of the methods searched has 'memory' (finetune does not); give it per method: "
     "--set replay.memory=..."),
    ("run", ["--method", "icarl,lwf", "--range", "memory=10:100"], "--range memory: only icarl of the methods"),
    ("run", ["--method", "finetune,replay", "--set", "der.memory_per_class=5"], "'der' is not one of the methods searched"),
    # unknown or misspelt config keys in --set and --range
    ("run", ["--method", "icarl", "--set", "lrr=0.1"], "unknown key 'lrr' (did you mean 'lr'?)"),
    ("run", ["--method", "icarl", "--range", "memroy=10:100"], "unknown key 'memroy' (did you mean 'memory'?)"),
    ("run", ["--method", "finetune", "--range", "memory=10:100"], "finetune: unknown key 'memory'"),
    ("rerun", ["--method", "replay", "--set", "kd_wieght=1"], "unknown key 'kd_wieght' (did you mean 'kd_weight'?)"),
    # empty or inverted ranges
    ("run", ["--method", "icarl", "--range", "lr=1:0.1"], "--range lr=1:0.1: empty or inverted range"),
    ("run", ["--method", "icarl", "--range", "lr=:"], "--range lr=:: give one low and one high bound"),
    # negative or zero sizes
    ("run", ["--method", "icarl", "--trials", "0"], "--trials must be at least 1, got 0"),
    ("run", ["--method", "icarl", "--trials", "-3"], "--trials must be at least 1, got -3"),
    ("run", ["--method", "icarl", "--epochs", "0"], "epochs=0 is below its minimum 1"),
    ("run", ["--method", "icarl", "--cpus-per-trial", "0"], "--cpus-per-trial must be positive, got 0"),
    ("run", ["--method", "icarl", "--set", "memory=-5"], "icarl: memory=-5 is below its minimum 0"),
    ("rerun", ["--method", "icarl", "--classes", "0"], "protocol: classes=0 is below its minimum 1"),
    ("rerun", ["--method", "icarl", "--tasks", "0"], "protocol: tasks=0 is below its minimum 1"),
    ("rerun", ["--method", "icarl", "--batch-size", "0"], "batch_size=0 is below its minimum 2"),
    ("rerun", ["--method", "icarl", "--seeds", "0"], "--seeds must be at least 1, got 0"),
    # training knobs (core/knobs.py): an unknown optimiser, a zero batch size, the protocol's
    # epochs set or ranged per trial without --search-protocol
    ("run", ["--method", "icarl", "--set", "optimizer=rmsprop"], "icarl: optimizer='rmsprop' must be one of sgd, adam, adamw"),
    ("rerun", ["--method", "icarl", "--set", "optimizer=rmsprop"], "icarl: optimizer='rmsprop' must be one of sgd, adam, adamw"),
    ("run", ["--method", "icarl", "--set", "batch_size=0"], "loop: batch_size=0 is below its minimum 2"),
    ("run", ["--method", "icarl", "--range", "batch_size=0,32"], "loop: batch_size=0 is below its minimum 2"),
    ("rerun", ["--method", "icarl", "--set", "batch_size=0"], "loop: batch_size=0 is below its minimum 2"),
    ("run", ["--method", "icarl", "--range", "epochs=2:10"], "--range epochs: epochs is part of the benchmark protocol, the same for every trial (set it with --epochs); add --search-protocol epochs to search it"),
    ("run", ["--method", "icarl", "--set", "epochs=3"], "--set epochs: epochs is part of the benchmark protocol"),
    ("run", ["--method", "icarl", "--search-protocol", "classes", "--range", "epochs=2:10"], "--search-protocol classes: a search may vary only epochs"),
    # early stopping: conflicting modes, a factor that stops nothing, no comparison before the last task
    ("run", ["--method", "icarl", "--asha", "final_acc", "--mo-asha"], "--asha (one objective) and --mo-asha (the Pareto objectives) exclude each other"),
    ("run", ["--method", "icarl", "--mo-asha", "--reduction-factor", "1"], "--reduction-factor must be at least 2, got 1"),
    ("run", ["--method", "icarl", "--mo-asha", "--grace-tasks", "0"], "--grace-tasks must be at least 1, got 0"),
    # successive halving over fidelities (core/fidelity.py): with task-prefix early stopping, an
    # unknown or dearer rung, a rung over a searched protocol knob, an unknown promotion rule
    ("run", ["--method", "icarl", "--fidelity", "epochs=1", "--mo-asha"], "--fidelity (successive halving over cheaper whole runs) and early stopping over tasks (--mo-asha) exclude each other"),
    ("run", ["--method", "icarl", "--fidelity", "lr=0.1"], "--fidelity 'lr=0.1': 'lr' is not a fidelity"),
    ("run", ["--method", "icarl", "--epochs", "2", "--fidelity", "epochs=2"], "--fidelity epochs=2 is no cheaper than the protocol itself"),
    ("run", ["--method", "icarl", "--epochs", "4", "--fidelity", "epochs=9"], "--fidelity epochs=9: must be 1..4 (the search's --epochs)"),
    ("run", ["--method", "icarl", "--search-protocol", "epochs", "--range", "epochs=2:4", "--fidelity", "epochs=1"], "--fidelity: epochs is searched"),
    ("run", ["--method", "icarl", "--fidelity", "epochs=2", "--promote", "best"], "--promote 'best': use one of pareto, first, split"),
    ("run", ["--method", "icarl", "--promote", "first"], "--promote chooses how a --fidelity rung promotes; add --fidelity KEY=VALUE"),
    ("run", ["--method", "icarl", "--mo-asha", "--grace-tasks", "3"], "--grace-tasks 3: early stopping needs a comparison before the last of the stream's 3 tasks"),
    # a backbone that cannot take the images (VGG-16's five poolings on 8x8 synthetic images)
    ("rerun", ["--method", "packnet", "--backbone", "vgg16"], "backbone vgg16 needs images of at least 32 px"),
    # more tasks than classes
    ("run", ["--method", "icarl", "--tasks", "7"], "num_tasks=7 is more than the 6 selected classes"),
    ("rerun", ["--method", "icarl", "--classes", "3", "--tasks", "5"], "num_tasks=5 is more than the 3 selected classes"),
    # a memory larger than the data
    ("run", ["--method", "icarl", "--set", "memory=100000"], "memory=100000 is larger than the stream's"),
    ("rerun", ["--method", "replay", "--set", "memory=100000"], "memory=100000 is larger than the stream's"),
    # data files: missing, truncated, wrong shape
    ("run", ["--method", "icarl", *GTSRB, "{ws}/data/missing"], "GTSRB not found: looked for gtsrb32.npz in {ws}/data/missing"),
    ("rerun", ["--method", "icarl", *GTSRB, "{ws}/data/truncated"], "{ws}/data/truncated/gtsrb32.npz: cannot open the archive (truncated or corrupt?"),
    ("run", ["--method", "icarl", *GTSRB, "{ws}/data/truncated"], "{ws}/data/truncated/gtsrb32.npz: cannot open the archive (truncated or corrupt?"),
    ("rerun", ["--method", "icarl", *GTSRB, "{ws}/data/dims"], "array x_train has shape (86, 32, 96) but needs N x H x W x C"),
    ("rerun", ["--method", "icarl", *GTSRB, "{ws}/data/channels"], "array x_train has shape (86, 32, 32, 1), i.e. 1 channel(s), but needs 3"),
    ("rerun", ["--method", "icarl", *GTSRB, "{ws}/data/lengths"], "train arrays have different lengths (x_train 86, y_train 80, track_train 86)"),
    # results folders: missing, empty, another version
    ("report", ["{ws}/results/missing"], "results folder {ws}/results/missing does not exist"),
    ("report", ["{ws}/results/empty"], "results folder {ws}/results/empty is empty"),
    ("report", ["{ws}/results/old"], "has format 'clsearch-search/0'; this version reads 'clsearch-search/2'"),
    ("rerun", ["{ws}/results/old", "--seeds", "1"], "has format 'clsearch-search/0'; this version reads 'clsearch-search/2'"),
    ("run", ["--method", "icarl", "--name", "old"], "search.json is from another version (clsearch-search/0)"),
    # -- issue "reliability": paths that cannot be folders (were crashes, some after the work)
    ("run", ["--method", "icarl", "--name", "n" * 300], "--name is 300 bytes long; a folder name on"),
    ("run", ["--method", "icarl", "--name", "a/b"], "--name 'a/b' must be a plain folder name"),
    ("run", ["--method", "icarl", "--results-root", "{ws}/afile"], "--results-root {ws}/afile: {ws}/afile is a file, not a folder"),
    ("run", ["--method", "icarl", "--results-root", "{ws}/afile/deeper"], "{ws}/afile is a file, not a folder"),
    ("rerun", ["--method", "icarl", "--out", "{ws}/afile"], "--out {ws}/afile is a file, not a folder"),
    ("rerun-dir", ["{ws}/results/good", "--seeds", "1", "--out", "{ws}/afile"], "--out {ws}/afile is a file, not a folder"),
    ("rerun", ["--method", "icarl", "--out", "{ws}/afile/deeper"], "cannot create the folder {ws}/afile/deeper"),
    # seeds out of range (run.py used to fail only after Ray started, leaving a folder behind)
    ("run", ["--method", "icarl", "--seed", "-1"], "--seed must be in 0..2147483647, got -1"),
    ("run", ["--method", "icarl", "--seed", "4294967296"], "--seed must be in 0..2147483647, got 4294967296"),
    ("rerun", ["--method", "icarl", "--seed", "-1"], "seed=-1 is below its minimum 0"),
    # a negative number of confirmation seeds (0 is "off")
    ("run", ["--method", "icarl", "--confirm-seeds", "-1"],
     "--confirm-seeds must be at least 0 (0 = no confirmation), got -1"),
    # options a rerun of a search would silently ignore
    ("rerun-dir", ["{ws}/results/good", "--epochs", "3"], "--epochs cannot be changed when rerunning the search"),
    ("rerun-dir", ["{ws}/results/good", "--dataset", "gtsrb"], "--dataset cannot be changed when rerunning the search"),
    ("rerun-dir", ["{ws}/results/good", "--eval", "val"], "--eval cannot be changed when rerunning the search"),
    ("rerun-dir", ["{ws}/results/good", "--val-fraction", "0.3"], "--val-fraction cannot be changed when rerunning"),
    ("rerun-dir", ["{ws}/results/good", "--method", "icarl"], "give either RESULTS_DIR (rerun a search's configs) or --method/--set"),
    ("rerun-dir", ["{ws}/results/good", "--pick", "999"], "--pick '999': no such trial"),
    # a class without training images must not shift "the first N classes"
    ("run", ["--method", "icarl", *GTSRB, "{ws}/data/noclass"], "classes=40: class id(s) 5 of the first 40 have no training image"),
    ("rerun", ["--method", "icarl", *GTSRB, "{ws}/data/noclass"], "classes=40: class id(s) 5 of the first 40 have no training image"),
    # streams that cannot be scored, found before Ray or training starts, with the hint that fits
    ("run", ["--method", "icarl", *GTSRB, "{ws}/data/onetrack"], "got no validation images with --val-fraction 0.1: the split is made by track"),
    ("rerun", ["--method", "icarl", "--eval", "val", *GTSRB, "{ws}/data/onetrack"], "got no validation images with --val-fraction 0.1"),
    ("rerun", ["--method", "icarl", *GTSRB, "{ws}/data/notest"], "have no test images (the dataset has none for their classes)"),
    ("rerun", ["--method", "icarl", "--eval", "val", "--val-fraction", "0"], "the validation fraction is 0"),
    ("run", ["--method", "icarl", "--val-fraction", "0"], "a search needs a validation split"),
    # ranges written as a function call, not split at their comma
    ("run", ["--method", "icarl", "--range", "lr=log(0.001,1)"], "--range lr=log(0.001,1): write a range as lr=low:high"),
    ("run", ["--method", "icarl", "--range", "memory=100"], "--range memory=100: give at least two choices"),
    ("run", ["--method", "icarl", "--set", "lr"], "--set 'lr' must look like key=value"),
    ("run", ["--method", "icarl", "--set", "lr=0.1", "--set", "lr=0.2"], "--set 'lr' given twice"),
    ("run", ["--method", "icarl", "--set", "lr=0.1", "--range", "lr=0.2:0.3"], "lr is both fixed (--set) and searched (--range)"),
    # argparse mistakes: one error line too, never the usage block
    ("run", ["--method", "icarl", "--task-sizes", "-2,12"], "argument --task-sizes: expected one argument (a value starting with '-' must be attached"),
    ("run", ["--method", "icarl", "--task-sizes=-2,12"], "task_sizes=-2 is below its minimum 1"),
    ("run", ["--method", "icarl", "--task-sizes", "2,x"], "--task-sizes '2,x' must be comma-separated integers"),
    ("run", ["--method", "icarl", "--trials", "abc"], "argument --trials: invalid int value: 'abc'"),
    ("run", ["--method", "icarl", "--trails", "5"], "unrecognized arguments: --trails 5"),
    ("rerun", ["--method", "icarl", "--eval", "train"], "argument --eval: invalid choice: 'train'"),
    ("report", [], "the following arguments are required: RESULTS_DIR"),
    ("report", ["{ws}/results/good", "--colour", "lr"], "unrecognized arguments: --colour lr"),
    # other flags checked before anything starts
    ("run", ["--method", "icarl", "--max-failures", "-2"], "--max-failures must be -1 (unlimited) or at least 0, got -2"),
    ("run", ["--method", "icarl", "--max-concurrent", "0"], "--max-concurrent must be at least 1, got 0"),
    ("run", ["--method", "icarl", "--gpus-per-trial", "-1"], "--gpus-per-trial must be >= 0, got -1"),
    ("rerun", ["--method", "icarl", "--cpus-per-run", "0"], "--cpus-per-run must be positive, got 0"),
    ("rerun", ["--method", "icarl", "--gpus-per-run", "-1"], "--gpus-per-run must be >= 0, got -1"),
    # through Ray a run's threads are its CPUs (BASE gives --threads 1)
    ("rerun", ["--method", "icarl", "--seeds", "2", "--cpus-per-run", "2"], "--threads 1 and --cpus-per-run 2 disagree"),
    ("rerun", ["--method", "icarl", "--sequential", "--address", "auto"],
     "--sequential trains in this process and --address is for runs through Ray"),
    ("run", ["--method", "icarl", "--objectives", "final_acc,final_acc"], "give each objective once"),
    ("run", ["--method", "icarl", "--objectives", "accuracy"], "unknown objective 'accuracy'"),
    ("run", ["--method", "icarl", "--asha", "memory"], "--asha 'memory': choose one of"),
    ("run", ["--method", "icarl", "--name", "nothing", "--resume"], "nothing to resume: {ws}/results/nothing has no search state"),
    ("run", ["--method", "icarl", "--name", "good"], "already exists and is not a search to resume"),
    ("report", ["{ws}/results/good", "--color", "nosuch"], "nosuch"),
    # a folder another process holds (lock file naming a live pid on this host)
    ("run", ["--method", "icarl", "--name", "lockedempty"], "{ws}/results/lockedempty is in use by another process (pid 1 on"),
    ("report", ["{ws}/results/locked"], "{ws}/results/locked is in use by another process (pid 1 on"),
    ("rerun-dir", ["{ws}/results/locked", "--seeds", "1"], "{ws}/results/locked is in use by another process (pid 1 on"),
    ("rerun", ["--method", "icarl", "--out", "{ws}/results/lockedempty"], "{ws}/results/lockedempty is in use by another process"),
]
# No GPU here: --device cuda must be refused, not run on the CPU while recording "cuda".
if not Path("/dev/nvidia0").exists():
    CASES += [
        ("run", ["--method", "icarl", "--device", "cuda"], "device 'cuda' requested but CUDA is not available"),
        ("rerun", ["--method", "icarl", "--device", "cuda:1"], "device 'cuda:1' requested but CUDA is not available"),
    ]


def _tiny_gtsrb(**replace: np.ndarray) -> dict[str, np.ndarray]:
    """43 classes x 2 training images (2 tracks) and 1 test image each, 32x32 RGB,
    dtypes as in the real file (uint8 images, int16 labels, int32 tracks)."""
    rng = np.random.default_rng(0)
    y_train = np.repeat(np.arange(43), 2)
    arrays = {
        "x_train": rng.integers(0, 256, (86, 32, 32, 3), dtype=np.uint8),
        "y_train": y_train.astype(np.int16),
        "x_test": rng.integers(0, 256, (43, 32, 32, 3), dtype=np.uint8),
        "y_test": np.arange(43, dtype=np.int16),
        "track_train": (y_train * 10000 + np.tile([0, 1], 43)).astype(np.int32),
    }
    arrays.update(replace)
    return arrays


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """The workspace every row starts from (copied per row, so no row sees another's leftovers)."""
    ws = tmp_path_factory.mktemp("bad-input-template")
    (ws / "cwd").mkdir()                       # the subprocesses' working directory: no ./data here
    data = ws / "data"
    (data / "missing").mkdir(parents=True)     # a data folder without gtsrb32.npz
    good = _tiny_gtsrb()
    variants = {
        "good": good,
        "dims": _tiny_gtsrb(x_train=good["x_train"].reshape(86, 32, 96)),       # 3-D, not N x H x W x C
        "channels": _tiny_gtsrb(x_train=good["x_train"][..., :1].copy()),       # grayscale: 1 channel
        "lengths": _tiny_gtsrb(y_train=good["y_train"][:80].copy()),            # 80 labels for 86 images
    }
    for name, arrays in variants.items():
        (data / name).mkdir()
        np.savez_compressed(data / name / "gtsrb32.npz", **arrays)
    whole = (data / "good" / "gtsrb32.npz").read_bytes()
    (data / "truncated").mkdir()
    (data / "truncated" / "gtsrb32.npz").write_bytes(whole[: len(whole) // 2])

    results = ws / "results"
    (results / "empty").mkdir(parents=True)
    old = write_search_fixture(results / "old")  # a complete search folder, then made another version's
    spec = json.loads((old / "search.json").read_text())
    spec["format"] = "clsearch-search/0"
    (old / "search.json").write_text(json.dumps(spec, indent=1))
    (old / "tune").mkdir()                      # Tune state: run.py --name old tries to resume it

    # the reliability rows: a file where a folder is expected, data whose stream
    # cannot be scored, a class without training images, folders held by a live process
    (ws / "afile").write_text("not a folder\n")
    keep = good["y_train"] != 5
    broken = {
        "noclass": _tiny_gtsrb(x_train=good["x_train"][keep], y_train=good["y_train"][keep],
                               track_train=good["track_train"][keep]),
        "onetrack": _tiny_gtsrb(track_train=(good["y_train"].astype(np.int32) * 10000)),  # one track per class
        "notest": _tiny_gtsrb(x_test=good["x_test"][20:], y_test=good["y_test"][20:]),     # classes 0..19: no test image
    }
    for name, arrays in broken.items():
        (data / name).mkdir()
        np.savez_compressed(data / name / "gtsrb32.npz", **arrays)
    write_search_fixture(results / "good")
    write_search_fixture(results / "locked")
    (results / "lockedempty").mkdir()
    holder = json.dumps({"pid": 1, "host": socket.gethostname(), "started": "2026-01-01 00:00:00",
                         "purpose": "search", "command": "search/run.py (the bad-input test's stand-in)"})
    for folder in ("locked", "lockedempty"):
        (results / folder / ".clsearch.lock").write_text(holder)

    (ws / "poison" / "ray").mkdir(parents=True)
    (ws / "poison" / "ray" / "__init__.py").write_text(POISON)
    return ws


def test_template_data_is_valid_apart_from_the_breakage(template):
    """The valid file loads, so each broken variant fails for its breakage alone."""
    from datasets import load_gtsrb

    arrays = load_gtsrb(template / "data" / "good")
    assert arrays.x_train.shape == (86, 32, 32, 3) and arrays.groups_train is not None
    whole = (template / "data" / "good" / "gtsrb32.npz").stat().st_size
    assert (template / "data" / "truncated" / "gtsrb32.npz").stat().st_size == whole // 2


def snapshot(root: Path) -> dict[str, tuple]:
    """path -> (kind, sha256 of the bytes, mtime in ns) for everything under ``root``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            out[str(p.relative_to(root))] = ("file" if p.is_file() else "dir", digest, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("cli, args, message", CASES,
                         ids=[f"{c}:{' '.join(a)}" for c, a, _ in CASES])
@pytest.mark.slow  # subprocess: one CLI run per case
def test_bad_input_is_one_line_and_changes_nothing(template, tmp_path, cli, args, message):
    ws = tmp_path / "ws"
    shutil.copytree(template, ws, symlinks=True)
    argv = [sys.executable, str(CLIS[cli]), *(a.format(ws=ws) for a in BASE[cli] + args)]
    env = {k: v for k, v in os.environ.items() if k != "CL_DATA_DIR"}
    env.update(RAY_AUTH_MODE="disabled", PYTHONPATH=str(ws / "poison"))
    before = snapshot(ws)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ws / "cwd", env=env)
    seconds = time.perf_counter() - t0
    after = snapshot(ws)

    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, f"exit {proc.returncode}; stderr:\n{proc.stderr[-3000:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert message.format(ws=ws) in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and "Ray was imported" not in proc.stderr
    assert proc.stdout == "", proc.stdout[-2000:]  # nothing was started, so nothing to report
    assert after == before, {"created": sorted(set(after) - set(before)),
                             "removed": sorted(set(before) - set(after)),
                             "changed": sorted(k for k in before.keys() & after.keys() if before[k] != after[k])}
    assert seconds < 60, f"{seconds:.1f} s: too slow for a failure that comes before any work"
