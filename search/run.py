"""Search a strategy's hyperparameters for the stability-plasticity trade-off.

    python search/run.py --method icarl --trials 64 --dataset gtsrb

Ray Tune schedules the trials over every local CPU/GPU (or an existing Ray
cluster with ``--address``); Optuna's TPE sampler proposes the knobs:

- default: two objectives on the VALIDATION split -- maximise final accuracy,
  minimise average forgetting (Chaudhry et al. 2018) -- with FIFO scheduling,
  because Optuna reads a trial's last report and an early stop would hand over
  truncated metrics; ``--memory-objective`` adds memory size as a third
  objective (minimise);
- ``--asha METRIC``: a single scalar objective with ASHA early stopping over
  tasks (then stopped trials are "truncated" and never on a front);
- ``--mo-asha``: the Pareto objectives with multi-objective ASHA early stopping
  (search/mo_asha.py): at ``--grace-tasks`` x ``--reduction-factor``**i tasks a
  trial goes on only if it ranks in the top 1/reduction-factor of the trials
  compared there (non-dominated sorting, then crowding distance);
- ``--fidelity KEY=VALUE`` (repeatable, cheapest first): successive halving
  over cheaper runs of the WHOLE task sequence (search/fidelity_halving.py):
  fewer ``epochs`` per task and/or a ``train_fraction`` / ``eval_fraction`` of
  each class's images; every trial runs at the first rung, and when that run is
  done goes on -- trained again from scratch at the next rung, the last being
  the protocol itself -- only if it ranks in the top 1/``--reduction-factor`` of
  the rung (``--promote``: split, first, pareto); stopped trials are PRUNED
  in Optuna and never on a front;
- ``--min-plasticity-margin``: a trial whose task-IL plasticity is not this
  far above chance did not learn (core/feasibility.py): it is infeasible --
  told to Optuna as a violated constraint, ranked last at MO-ASHA rungs, never
  on a front or in the live best values (default 0.1, 0 = off);
- ``--confirm-seeds K``: after the trials (and on ``--resume``) every front
  candidate is rerun with K more training seeds on the validation split, as
  ordinary trials of the search (search/confirm.py: ``confirms`` in their
  result.json, in ``tune-confirm/``, never told to Optuna); the report and
  ``rerun.py --pick front`` use the front recomputed on the seed means
  (default 2, 0 = off; a resumed search keeps its own unless given).

``--method a,b,c`` (or ``all``: every class-incremental built-in but joint) is
one search across methods: one Optuna study that samples the method first and
then that method's own space (define-by-run, search/searcher.py), each trial's
params holding only its method's keys; ``--set``/``--range KEY`` must name a
key of every listed method (``METHOD.KEY`` for one method); task-incremental
methods are searched alone.

It writes RESULTS_DIR/search.json (the spec), trials/<id>/result.json per trial,
trials.csv (one row per trial) and the Pareto report; an interrupted search
resumes with ``--resume`` or by rerunning the same command with the same
``--name``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.cli import ArgumentParser, cli_main  # noqa: E402
from core.errors import UsageError, UserError  # noqa: E402
from search.cli import (REPO_ROOT, add_protocol_args, loop_config_from_args, loop_config_from_dict,  # noqa: E402
                        parse_sets, resolve_data_defaults, stream_protocol_from_args, warn_if_bf16_emulated)
from search import tune_state  # noqa: E402

from core.feasibility import DEFAULT_MARGIN, REPORT_KEY, SPEC_KEY, check_plasticity, validate_margin  # noqa: E402
from core.fidelity import FIDELITY_TEXT_KEY, RUNG_KEY, TOP_KEY, report_below_top  # noqa: E402
from core.objectives import DIRECTIONS  # noqa: E402
from core.result import (CONFIRM_SEED_KEY, CONFIRMS_KEY, META_KEYS, METHOD_KEY, OPTUNA_STUDY_FILE,  # noqa: E402
                         OPTUNA_STUDY_KEY, SEARCH_FORMAT, TRIAL_NUMBER_KEY)

# Confirmation seeds per front candidate of a new search (--confirm-seeds).
DEFAULT_CONFIRM_SEEDS = 2


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="search/run.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="icarl",
                   help="strategy to search (search/rerun.py --list shows them); a,b,c or 'all' (every "
                        "class-incremental built-in but joint): one search across the methods, the method "
                        "sampled first (then --set/--range KEY apply to every method, METHOD.KEY to one)")
    p.add_argument("--strategy-module", action="append", metavar="PATH_OR_MODULE",
                   help="import a .py file or module that registers a strategy with @register (repeatable; "
                        "also $CLSEARCH_STRATEGY_MODULES)")
    p.add_argument("--trials", type=int, default=8, help="number of trials")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="fix a knob for every trial (repeatable)")
    p.add_argument("--range", action="append", metavar="KEY=LOW:HIGH", help="narrow a knob's range, or KEY=a,b for choices")
    p.add_argument("--search-protocol", action="append", metavar="KEY",
                   help="let --set/--range vary a protocol knob per trial (epochs); without it the protocol is fixed")
    p.add_argument("--objectives", default="final_acc,forgetting",
                   help=f"comma-separated objectives for the Pareto search ({', '.join(DIRECTIONS)})")
    p.add_argument("--memory-objective", action="store_true", help="add memory size (minimise) as an objective")
    p.add_argument("--asha", metavar="METRIC", default=None,
                   help="single scalar objective with ASHA early stopping (e.g. final_acc)")
    p.add_argument("--mo-asha", action="store_true",
                   help="multi-objective ASHA early stopping over the --objectives (trials stopped early never reach a front)")
    p.add_argument("--grace-tasks", type=int, default=1,
                   help="early stopping: tasks every trial trains before its first comparison (default 1)")
    p.add_argument("--reduction-factor", type=int, default=2,
                   help="early stopping: 1 in this many trials goes on at each comparison (default 2)")
    p.add_argument("--fidelity", action="append", metavar="KEY=VALUE[,KEY=VALUE]",
                   help="successive halving over cheaper runs of the whole task sequence: a rung (repeatable, "
                        "cheapest first) of epochs / train_fraction / eval_fraction below the protocol's; every "
                        "trial runs at the first rung, the top 1/--reduction-factor go on to the next, and the "
                        "last rung is the protocol itself (search/fidelity_halving.py)")
    p.add_argument("--promote", default=None, metavar="RULE",
                   help="with --fidelity: which trials a rung promotes -- split (default: half the slots by the "
                        "first objective, the rest by Pareto rank), first (the first objective only) or pareto "
                        "(non-dominated sorting and crowding, as --mo-asha)")
    p.add_argument("--cpus-per-trial", type=float, default=None, help="CPUs per trial (default 1; torch threads follow)")
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per trial, fractional to share a GPU (default 0.25 when a GPU is visible and --device is not cpu, "
                        "else 0)")
    p.add_argument("--max-concurrent", type=int, default=None, help="cap on trials running at once")
    p.add_argument("--address", default=None, help="address of an existing Ray cluster (e.g. 10.0.0.1:6379 or auto)")
    p.add_argument("--name", default=None, help="search name = results folder name (default METHOD-DATASET-TIME)")
    p.add_argument("--results-root", default="results",
                   help="folder that holds the search folders (default ./results, under the working directory)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted search called --name")
    p.add_argument("--max-failures", type=int, default=2,
                   help="restarts of a trial whose worker died or raised, each from its last per-task checkpoint "
                        "(a diverged trial is not retrained; -1 = unlimited)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler and of every trial's training")
    p.add_argument("--min-plasticity-margin", type=float, default=DEFAULT_MARGIN, metavar="FRACTION",
                   help="a trial whose task-IL plasticity (accuracy on each task right after learning it) is "
                        "not this far above chance did not learn: infeasible, never on a front "
                        f"(default {DEFAULT_MARGIN:g} = 10 points; 0 = off)")
    p.add_argument("--confirm-seeds", type=int, default=None, metavar="K",
                   help="after the trials, rerun every front candidate with K more seeds (the search's seed + 1..K) "
                        "on the validation split and recompute the front on the seed means (default "
                        f"{DEFAULT_CONFIRM_SEEDS} for a new search, a resumed one keeps its own; 0 = off; "
                        "costs K x front size more trials)")
    p.add_argument("--no-report", action="store_true", help="do not build the report at the end")
    p.add_argument("--dry-run", action="store_true",
                   help="check everything, print the protocol, stream, searched space (after clipping to the "
                        "data), parallelism and an estimate of the wall time from a measured step; write nothing")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep every trial's last checkpoint under tune/ after a finished search (by default they "
                        "are removed once every trial has ended: --resume no longer needs them)")
    p.add_argument("--wandb", metavar="PROJECT", default=None,
                   help="also log every trial to Weights & Biases project PROJECT (Ray's WandbLoggerCallback; "
                        "needs the wandb package; WANDB_MODE=offline keeps the runs under RESULTS_DIR/wandb)")
    p.add_argument("--mlflow", metavar="URI", nargs="?", const="", default=None,
                   help="also log every trial to MLflow (Ray's MLflowLoggerCallback), experiment = the search's "
                        "name, at tracking URI (default: $MLFLOW_TRACKING_URI or MLflow's own default); "
                        "needs the mlflow package")
    add_protocol_args(p)
    return p


def parse_objectives(args: argparse.Namespace) -> list[tuple[str, str]]:
    if args.asha and args.mo_asha:
        raise UsageError("--asha (one objective) and --mo-asha (the Pareto objectives) exclude each other; pick one")
    if args.fidelity and (args.asha or args.mo_asha):
        raise UsageError("--fidelity (successive halving over cheaper whole runs) and early stopping over tasks "
                         f"(--{'asha' if args.asha else 'mo-asha'}) exclude each other; pick one")
    if args.asha:
        if args.asha not in DIRECTIONS or args.asha == "memory":
            raise UsageError(f"--asha {args.asha!r}: choose one of {', '.join(k for k in DIRECTIONS if k != 'memory')}")
        if args.memory_objective:
            raise UsageError("--asha takes a single objective; drop --memory-objective")
        return [(args.asha, DIRECTIONS[args.asha])]
    names = [n.strip() for n in args.objectives.split(",") if n.strip()]
    if args.memory_objective and "memory" not in names:
        names.append("memory")
    unknown = [n for n in names if n not in DIRECTIONS]
    if unknown:
        raise UsageError(f"unknown objective {unknown[0]!r}; known: {', '.join(DIRECTIONS)}")
    if len(set(names)) != len(names) or not names:
        raise UsageError(f"--objectives {args.objectives!r}: give each objective once")
    return [(n, DIRECTIONS[n]) for n in names]


def fidelity_rungs(args, loop, fixed: dict[str, Any], space: dict[str, Any],
                   spaces: dict[str, dict[str, Any]] | None,
                   fixed_by_method: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The checked cheap rungs of ``--fidelity`` (core/fidelity.py), against the
    protocol the trials run (the loop's values, or a fixed protocol knob)."""
    from core.fidelity import FIDELITY_KEYS, check_promotion, check_rungs, parse_rung

    if not args.fidelity:
        if args.promote is not None:
            raise UsageError("--promote chooses how a --fidelity rung promotes; add --fidelity KEY=VALUE "
                             "(or drop --promote)")
        return []
    args.promote = check_promotion(args.promote or "split")
    protocol = {k: fixed.get(k, getattr(loop, k)) for k in FIDELITY_KEYS}
    searched = {k for sp in [space, *(spaces or {}).values(), *fixed_by_method.values()] for k in sp}
    return check_rungs([parse_rung(text) for text in args.fidelity], protocol, sorted(searched))


def search_spec(args, method, space, fixed, objectives, stream_protocol, loop,
                spaces=None, fixed_by_method=None) -> dict[str, Any]:
    """What search.json records: everything needed to resume, report and rerun.

    A search across methods (``spaces``: method -> its space) records
    ``"method": "a,b,c"``, ``"methods": [a, b, c]``, ``"spaces"`` (method -> its
    searched space), ``"fixed"`` (the knobs fixed for every method) and
    ``"fixed_by_method"`` (method -> its own fixed knobs, ``--set METHOD.KEY``);
    its ``"space"`` is empty. Each trial's method is in its result.json
    (``"method"``) and in the ``method`` column of trials.csv."""
    import dataclasses

    import strategies
    from core.result import environment_info
    from search.spaces import knob_kinds, parse_search_protocol

    cross = {}
    keys = [*space, *fixed]
    if spaces:
        cross = {"methods": list(spaces),
                 "spaces": {m: {k: d.to_json() for k, d in sp.items()} for m, sp in spaces.items()},
                 "fixed_by_method": json.loads(json.dumps(fixed_by_method or {}))}
        keys = list(dict.fromkeys([*fixed, *(k for sp in spaces.values() for k in sp),
                                   *(k for f in (fixed_by_method or {}).values() for k in f)]))
    return {
        "format": SEARCH_FORMAT,
        "method": method,
        **cross,
        "task_incremental_only": (False if spaces else strategies.STRATEGIES[method].task_incremental_only),
        "objectives": [list(o) for o in objectives],
        "asha": bool(args.asha),
        "mo_asha": bool(args.mo_asha),
        "grace_tasks": args.grace_tasks,
        "reduction_factor": args.reduction_factor,
        # Successive halving over fidelities (core/fidelity.py): the cheap rungs, cheapest first.
        "fidelity_rungs": json.loads(json.dumps(getattr(args, "fidelity_rungs", []))),
        "promotion": args.promote or "split",
        SPEC_KEY: args.min_plasticity_margin,
        # Not part of a search's identity (_same_search): --resume --confirm-seeds K changes it.
        "confirm_seeds": DEFAULT_CONFIRM_SEEDS if args.confirm_seeds is None else args.confirm_seeds,
        "space": {k: d.to_json() for k, d in space.items()},
        "fixed": json.loads(json.dumps(fixed)),  # as a resumed search reads it back (a tuple knob as a list)
        # Which searched/fixed knobs are protocol, training or strategy knobs
        # (core/knobs.py), and the protocol knobs the user allowed to vary.
        "knob_kinds": knob_kinds(keys),
        "search_protocol": list(parse_search_protocol(args.search_protocol)),
        "stream_protocol": stream_protocol.to_dict(),
        "loop": dataclasses.asdict(loop),
        "trials": args.trials,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "environment": environment_info(),
    }

MB = 1 << 20
# Besides the checkpoints: per trial its result.json, Tune's logs of it (CSV, JSON
# and TensorBoard: about 7 KB for a 3-task trial) and its lines in the Optuna
# study file (about 1 KB); per search Tune's experiment state, search.json,
# trials.csv and the report.
PER_TRIAL_FILES = 256 * 1024
PER_SEARCH_FILES = 8 * MB


def check_results_dir(results_root: str, name: str) -> Path:
    """The search folder RESULTS_ROOT/NAME, refused in one line -- before anything
    is created -- when it cannot be a folder: a name with a slash or too long for
    the filesystem, a file where a folder must be."""
    if "/" in name or name in (".", "..") or "\0" in name or not name.strip():
        raise UsageError(f"--name {name!r} must be a plain folder name")
    root = Path(results_root).expanduser().absolute()
    existing = next((p for p in (root, *root.parents) if p.exists()), Path("/"))
    if not existing.is_dir():
        raise UsageError(f"--results-root {root}: {existing} is a file, not a folder")
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if len(name.encode()) > name_max:
        raise UsageError(f"--name is {len(name.encode())} bytes long; a folder name on {existing} "
                         f"can have at most {name_max}")
    results_dir = (root / name).resolve()
    if results_dir.exists() and not results_dir.is_dir():
        raise UsageError(f"{results_dir} is a file, not a search folder; choose another --name")
    return results_dir


def folder_is_free(results_dir: Path) -> bool:
    """Absent or empty -- a lock file left by a driver that died before it wrote
    anything does not make a folder taken."""
    from core.lock import LOCK_NAME

    return not results_dir.exists() or all(p.name == LOCK_NAME for p in results_dir.iterdir())


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem that holds ``path`` (or would hold it)."""
    p = next((q for q in (path, *path.parents) if q.exists()), Path("/")).resolve()
    while not os.path.ismount(p):
        p = p.parent
    return p


def free_bytes(path: Path) -> int:
    import shutil

    p = next((q for q in (path, *path.parents) if q.exists()), Path("/"))
    return shutil.disk_usage(p).free


class DiskNeed:
    """What a search will write: ``per_checkpoint`` bytes for each trial's kept
    checkpoint, ``total`` for the whole search."""

    def __init__(self, per_checkpoint: int, total: int, trials: int) -> None:
        self.per_checkpoint, self.total, self.trials = per_checkpoint, total, trials


def estimate_disk_need(method, fixed, space, stream, cfg, trials: int, done: int = 0,
                       concurrent: int | None = None) -> DiskNeed:
    """Estimate the disk a search needs, from the real size of one checkpoint.

    A fresh strategy at the top of every range is serialised as Tune stores it
    (``torch.save`` of the whole object); a checkpoint after some tasks also
    holds the old model that distillation keeps (once more the model) and the
    exemplar memory (``memory`` images at the stream's image size). Tune keeps
    one checkpoint per trial (``num_to_keep=1``) and writes the next one before
    deleting the last, so running trials briefly hold two. ``done`` trials have
    their checkpoint already on disk."""
    import io
    import math

    import torch

    from strategies.loop import make_strategy

    from core.knobs import split_params
    from strategies.loop import with_loop_knobs

    top = {k: (d.high if d.type != "categorical" else d.choices[0]) for k, d in space.items()}
    # Loop knobs (batch size, augmentation, ...) go to the loop config, not the strategy's.
    strategy_part, loop_part = split_params({**fixed, **top})
    strategy = make_strategy(method, strategy_part, stream, with_loop_knobs(cfg, loop_part))
    buf = io.BytesIO()
    torch.save(strategy.model.state_dict(), buf)
    model = len(buf.getvalue())
    conf = strategy.config
    images = int(getattr(conf, "memory", 0) or 0) or int(getattr(conf, "memory_per_class", 0) or 0) * stream.num_classes
    per = 2 * model + images * math.prod(stream.image_shape) + 64 * 1024
    left = max(trials - done, 0)
    running = min(left, concurrent or os.cpu_count() or 1)
    return DiskNeed(per, per * (left + running) + PER_TRIAL_FILES * left + PER_SEARCH_FILES, trials)


def check_free_space(results_dir: Path, need: DiskNeed) -> None:
    free = free_bytes(results_dir)
    if free < need.total:
        raise UsageError(f"not enough disk space on {mount_point(results_dir)} for this search: about "
                         f"{need.total / MB:.1f} MB needed ({need.per_checkpoint / MB:.1f} MB per trial checkpoint, "
                         f"{need.trials} trials), {free / MB:.1f} MB free")


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it, or its text: Ray wraps a worker's
    exception into its own types) is a full disk."""
    import errno

    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(exc) or "Errno 28" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _trial_error_is_disk_full(trial) -> bool:
    """Whether Tune's error file of ``trial`` says ENOSPC (empty or unreadable: no)."""
    path = getattr(trial, "error_file", None)
    try:
        text = Path(path).read_text(errors="replace") if path else ""
    except OSError:
        return False
    return "No space left on device" in text or "Errno 28" in text


class DiskFull(UserError):
    """The search stopped because its disk is (nearly) full."""


class DiskGuard:
    """Stops a search cleanly before its disk is full.

    Checked at every step of Tune's loop: once the free space on the results
    disk falls below ``reserve`` (two checkpoints), or a trial failed with
    ENOSPC, it interrupts the search the way Ctrl-C does (SIGUSR1, which Tune
    treats like SIGINT): Tune saves its experiment state one last time, with
    the unfinished trials still resumable, while there is room for it. A disk
    that fills up under Tune leaves 0-byte state files instead, and the next
    restore fails with unrelated errors (an EOFError from pickle)."""

    def __init__(self, results_dir: Path, reserve: int) -> None:
        self.results_dir, self.reserve = results_dir, reserve
        self.full = False
        self._last = 0.0

    def low(self) -> bool:
        now = time.time()
        if not self.full and now - self._last > 0.5:  # statvfs is cheap, but steps are many
            self._last = now
            if free_bytes(self.results_dir) < self.reserve:
                self.full = True
        return self.full

    def trip(self) -> None:
        if not getattr(self, "_tripped", False):
            self._tripped = True
            self.full = True
            import signal
            os.kill(os.getpid(), signal.SIGUSR1)

    def callback(self):
        from ray.tune import Callback

        guard = self

        class _Guard(Callback):
            def on_step_begin(self, iteration, trials, **info):
                if guard.low():
                    guard.trip()

            def on_trial_error(self, iteration, trials, trial, **info):
                if guard.low() or _trial_error_is_disk_full(trial):
                    guard.trip()

            on_trial_recover = on_trial_error

        return _Guard()

    def error(self) -> DiskFull:
        free = free_bytes(self.results_dir)
        return DiskFull(f"the disk at {mount_point(self.results_dir)} is full ({free / MB:.1f} MB free, the search "
                        f"keeps {self.reserve / MB:.1f} MB in reserve): the search stopped; free some space, then "
                        f"rerun the same command with --resume")


def check_resumable(results_dir: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """The stored spec of a search to resume; error if it is another search."""
    spec_file = results_dir / "search.json"
    from core.protocol import upgrade_search_spec

    try:
        old = upgrade_search_spec(json.loads(spec_file.read_text()))
    except (OSError, json.JSONDecodeError, AttributeError):
        raise UsageError(f"{results_dir} has Tune state but no readable search.json; use another --name") from None
    if old.get("format") != SEARCH_FORMAT:
        raise UsageError(f"{spec_file} is from another version ({old.get('format')}); use another --name")
    if not _same_search(old, spec):
        raise UsageError(f"{results_dir} holds a different search; use another --name (or the same options to resume)")
    return old


def _same_search(old: dict[str, Any], new: dict[str, Any]) -> bool:
    keys = ("method", "objectives", "asha", "space", "fixed", "trials", "methods", "spaces", "fixed_by_method")
    # Early-stopping keys came later: a spec without them ran with these values.
    later = {"mo_asha": False, "grace_tasks": 1, "reduction_factor": 2, SPEC_KEY: DEFAULT_MARGIN,
             "fidelity_rungs": [], "promotion": "split"}
    # Where the data lies and which hardware runs the trials do not change what
    # a search computes: a resumed search may differ in them.
    where = {"stream_protocol": ("data_dir",), "loop": ("device", "threads")}
    same_protocol = all(
        {k: v for k, v in (old.get(part) or {}).items() if k not in skip}
        == {k: v for k, v in new[part].items() if k not in skip}
        for part, skip in where.items())
    return (all(old.get(k) == new.get(k) for k in keys)
            and all(old.get(k, d) == new.get(k, d) for k, d in later.items())
            and same_protocol)


def progress_line(text: str) -> None:
    """One line of a live view, time-stamped: a search's trials, a rerun's runs."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def format_value(name: str, v) -> str:
    """A metric as the live views print it: memory as a count, fractions as %."""
    if v is None:
        return "-"
    return f"{v:.0f}" if name == "memory" else f"{100 * v:.1f}%"


def format_pace(durations: list[float], t0: float, unit: str) -> str:
    """The end of a live-view line: mean seconds per ended trial (run) and minutes since ``t0``."""
    mean_t = sum(durations) / len(durations) if durations else 0.0
    return f"{mean_t:.0f} s/{unit}, elapsed {(time.time() - t0) / 60:.1f} min"


class ProgressPrinter:
    """A compact live view: a line when a trial starts, one after each of its
    tasks (its objectives so far, images/s, the task's time) and one when it
    ends (trials done/running/failed, best values, time per trial); the task
    and end lines carry the search's progress and an ETA.

    Progress is counted in tasks: the search has trials x tasks of them; a
    trial that ended (completed, stopped early, failed) counts all of its. The
    ETA is the time left at the rate tasks have been done so far in this run
    (which folds in how many trials run at once)."""

    def __init__(self, total: int, objectives: list[tuple[str, str]], num_tasks: int, results_dir: Path,
                 class_counts: list[int] | None = None, margin: float = 0.0, max_failures: int = 0,
                 planned_runs: int | None = None) -> None:
        from ray.tune import Callback

        printer = self

        class _Cb(Callback):
            def on_trial_start(self, iteration, trials, trial, **info):
                printer.started[trial.trial_id] = time.time()
                printer.print_line(f"{trial_label(trial)} started: {printer.fmt_params(trial.config)}")

            def on_trial_result(self, iteration, trials, trial, result, **info):
                printer.last[trial.trial_id] = result
                printer.task_done(trial, result)

            def on_trial_complete(self, iteration, trials, trial, **info):
                printer.finished(trial, failed=False)

            def on_trial_error(self, iteration, trials, trial, **info):
                record = mark_dead_trial_failed(results_dir, trial, max_failures)
                # Tune failed it, but its own record is complete (it finished and
                # Tune's restore of a deleted checkpoint failed): it is done.
                printer.finished(trial, failed=record.get("status") != "completed", record=record)

            def on_trial_recover(self, iteration, trials, trial, **info):
                from search.trainable import completed_on_disk
                if completed_on_disk(results_dir / "trials" / trial.trial_id / "result.json"):
                    # A resumed trial that had finished, whose checkpoint Tune's restore
                    # cannot find: nothing of it is lost, so no "failed" line.
                    printer.print_line(f"{trial_label(trial)}: Tune could not restore its checkpoint (gone); "
                                       f"it had finished: its result.json says completed and is kept as is")
                    return
                done = printer.last.get(trial.trial_id, {}).get("tasks_done", 0)
                printer.print_line(f"{trial_label(trial)} failed (worker died or raised); retrying from its "
                                   f"checkpoint after task {done}")

        self.callback = _Cb()
        self.total, self.objectives, self.num_tasks = total, objectives, num_tasks
        self.results_dir = results_dir
        self.started: dict[str, float] = {}
        self.last: dict[str, dict] = {}
        self.done = self.failed = self.truncated = self.infeasible = 0
        self.class_counts, self.margin = class_counts, margin  # the did-not-learn rule (core/feasibility.py)
        self.durations: list[float] = []
        self.best: dict[str, float] = {}
        self.t0 = time.time()
        self.tasks_done: dict[str, int] = {}  # trial id -> tasks counted towards the search's progress
        # Runs of the whole sequence the search plans: one per trial, or with --fidelity
        # about trials / eta^k at rung k (planned_runs); a trial's tasks then count over its rungs.
        self.planned_runs = planned_runs or total

    def progress(self) -> str:
        """"search 38% done, ETA ~6 min" (tasks done of trials x tasks, at this run's rate)."""
        total = self.planned_runs * self.num_tasks
        done = min(sum(self.tasks_done.values()), total)
        elapsed = time.time() - self.t0
        if done == 0 or elapsed <= 0:
            return "search 0% done"
        if done == total:
            ended = self.done + self.failed + self.truncated + self.infeasible
            # Successive halving may promote more than planned: not done until every trial ended.
            return "search 100% done" if ended >= self.total else "search ~99% done"
        left = (total - done) * elapsed / done
        return f"search {100 * done / total:.0f}% done, ETA ~{_minutes(left)}"

    def task_done(self, trial, result: dict) -> None:
        """The line after each task of a running trial (the last task's line is the trial's end line)."""
        n = int(result.get("tasks_done", 0)) + int(result.get(RUNG_KEY) or 0) * self.num_tasks
        self.tasks_done[trial.trial_id] = max(self.tasks_done.get(trial.trial_id, 0), n)
        n -= int(result.get(RUNG_KEY) or 0) * self.num_tasks
        so_far = " ".join(f"{name} {self._fmt(name, result.get(name))}" for name, _ in self.objectives
                          if name != "memory")
        rung = fidelity_label(result)
        if n >= self.num_tasks:
            if report_below_top(result):
                # A cheap rung's run is done; the scheduler now promotes it or stops it.
                self.print_line(f"{trial_label(trial)} {rung} done: {so_far} | {self.progress()}")
            return
        images, seconds = result.get("task_images") or 0, result.get("task_seconds") or 0
        rate = f"{images / seconds:,.0f} img/s, " if images and seconds else ""
        self.print_line(f"{trial_label(trial)} {rung + ' ' if rung else ''}task {n}/{self.num_tasks} done: "
                        f"{so_far} ({rate}{seconds:.0f} s) | {self.progress()}")

    @staticmethod
    def fmt_params(config: dict[str, Any]) -> str:
        knobs = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in sorted(config.items()) if k not in META_KEYS)
        if config.get(METHOD_KEY):  # a search across methods: the trial's method first
            knobs = f"{config[METHOD_KEY]}: {knobs}"
        if config.get(CONFIRMS_KEY) is not None:  # a confirmation trial (search/confirm.py)
            return f"confirms #{config[CONFIRMS_KEY]} with seed {config.get(CONFIRM_SEED_KEY)}: {knobs}"
        return knobs

    def print_line(self, text: str) -> None:
        progress_line(text)

    def finished(self, trial, failed: bool, record: dict[str, Any] | None = None) -> None:
        result = self.last.get(trial.trial_id, {})
        if record and record.get("status") == "completed" and not failed:
            from search.trainable import record_metrics
            result = record_metrics(record)
        self.durations.append(time.time() - self.started.get(trial.trial_id, time.time()))
        if failed:
            self.failed += 1
            what = f"FAILED ({self.failure_reason(trial.trial_id)})"
        elif int(result.get("tasks_done", 0)) < self.num_tasks:
            self.truncated += 1
            n = int(result.get('tasks_done', 0))
            what = f"stopped early after {n} task{'' if n == 1 else 's'}"
        elif report_below_top(result):
            self.truncated += 1  # stopped by successive halving after a cheap rung's run
            what = f"stopped after {fidelity_label(result)}"
        elif (verdict := self.feasibility(result)) is not None and not verdict.feasible:
            # Completed but did not learn: its ~0 forgetting is no best value.
            self.infeasible += 1
            what = f"INFEASIBLE ({verdict.reason})"
        else:
            self.done += 1
            for name, sense in self.objectives:
                v = result.get(name)
                if v is None:
                    continue
                if name not in self.best or (v > self.best[name] if sense == "max" else v < self.best[name]):
                    self.best[name] = v
            what = " ".join(f"{n} {self._fmt(n, result.get(n))}" for n, _ in self.objectives)
        ended = self.done + self.failed + self.truncated + self.infeasible
        # Ended: none of its tasks is left to do (over the rungs it ran, with --fidelity).
        self.tasks_done[trial.trial_id] = (int(result.get(RUNG_KEY) or 0) + 1) * self.num_tasks
        best = ", ".join(f"{'best' if s == 'max' else 'lowest'} {n} {self._fmt(n, self.best[n])}"
                         for n, s in self.objectives if n in self.best)
        running = len(self.started) - ended
        self.print_line(f"{trial_label(trial)} {what} | {ended}/{self.total} ended ({self.done} completed, "
                        f"{self.infeasible} did not learn, {self.truncated} stopped, {self.failed} failed, {max(running, 0)} running) | {best} | "
                        + format_pace(self.durations, self.t0, "trial") + f", {self.progress()}")

    def feasibility(self, result: dict):
        """The did-not-learn verdict on a finished trial's last report; None when the rule is off."""
        if not self.margin or not self.class_counts:
            return None
        return check_plasticity(result.get(REPORT_KEY, float("nan")), self.class_counts,
                                min(int(result.get("tasks_done", 0)) or 1, len(self.class_counts)), margin=self.margin)

    def failure_reason(self, trial_id: str) -> str:
        try:
            d = json.loads((self.results_dir / "trials" / trial_id / "result.json").read_text())
            return d.get("error") or d.get("status", "unknown")
        except (OSError, json.JSONDecodeError):
            return "no result written; see the trial's error.txt under tune/"

    _fmt = staticmethod(format_value)


def planned_runs(spec: dict[str, Any]) -> int:
    """Runs of the whole sequence a search plans: its trials, and with --fidelity
    about trials / eta^k more at each rung k above the first (synchronous
    successive halving's count; the live view's progress is measured in them)."""
    trials, cheap = int(spec["trials"]), spec.get("fidelity_rungs") or []
    eta = max(2, int(spec.get("reduction_factor") or 2))
    return sum(-(-trials // eta ** k) for k in range(len(cheap) + 1))


def fidelity_label(result: dict) -> str:
    """"rung 1/2 (epochs=2)" for a report of a successive-halving trial, else ""."""
    if result.get(TOP_KEY) is None or result.get(RUNG_KEY) is None:
        return ""
    rung, top = int(result[RUNG_KEY]), int(result[TOP_KEY])
    return f"rung {rung + 1}/{top + 1}" + (f" ({result[FIDELITY_TEXT_KEY]})" if result.get(FIDELITY_TEXT_KEY) else "")


def trial_label(trial) -> str:
    """How the live log names a trial: its number (the searcher's, as in
    trials.csv, the report and ``rerun.py --pick``) and Tune's id."""
    number = (getattr(trial, "config", None) or {}).get(TRIAL_NUMBER_KEY)
    return f"trial {trial.trial_id}" if number is None else f"trial {number} ({trial.trial_id})"


def trial_dirname(trial) -> str:
    """Tune's folder of a trial under tune/: number and id (Tune's default puts
    every knob in the name and numbers trials from 1, unlike Optuna)."""
    number = (trial.config or {}).get(TRIAL_NUMBER_KEY)
    return f"trial_{trial.trial_id}" if number is None else f"trial_{int(number):04d}_{trial.trial_id}"


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 \
        else f"{seconds / 3600:.1f} h"


def mark_dead_trial_failed(results_dir: Path, trial, max_failures: int) -> dict[str, Any]:
    """The record of a trial Tune gave up on, made to say so.

    A trial that raised has written its error into its result.json already.
    One whose worker died (killed, out of memory) more than ``--max-failures``
    times never got to: its record still says "running" and would read as
    early-stopped ("truncated"). Rewrite it as "error" with the reason, so
    result.json and trials.csv both say failed. Returns the record as it ends."""
    from core.files import write_json_atomic
    from search.trainable import record_on_disk

    path = results_dir / "trials" / trial.trial_id / "result.json"
    record = record_on_disk(path)
    if record.get("status") not in (None, "running"):
        return record
    reason = "no error text"
    try:
        lines = [ln for ln in Path(trial.error_file).read_text(errors="replace").splitlines() if ln.strip()]
        reason = lines[-1].strip()[:300] if lines else reason
    except (OSError, TypeError):
        pass
    tries = "" if max_failures < 0 else f" {max_failures + 1} time(s), more than --max-failures {max_failures}"
    record.update(status="error", error=f"worker died or raised{tries}: {reason}")
    if "trial_id" not in record:
        config = dict(trial.config)
        record.update({"format": "clsearch-result/1", "trial_id": trial.trial_id,
                       TRIAL_NUMBER_KEY: config.pop(TRIAL_NUMBER_KEY, None), "acc_class_il": [],
                       "acc_task_il": [], "eval_sizes": [], "metrics": {}, "timings": [], "protocol": {}})
        if config.get(CONFIRMS_KEY) is not None:
            record.update({CONFIRMS_KEY: config[CONFIRMS_KEY], "protocol": {"seed": config.get(CONFIRM_SEED_KEY)}})
        if config.get(METHOD_KEY):
            record["method"] = config[METHOD_KEY]
        record["params"] = {k: v for k, v in config.items() if k not in META_KEYS}
    try:
        write_json_atomic(path, record)
    except OSError:
        pass  # a full disk: the guard stops the search; trials.csv then reads it as unfinished
    return record


def init_ray(address: str | None) -> None:
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # The legacy console output honours verbose=0; ProgressPrinter is the live view.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Workers do not inherit the driver's sys.path: locally the repo
    # goes on PYTHONPATH; on a cluster the code travels as the working_dir.
    if address:
        runtime_env = {"working_dir": str(REPO_ROOT),
                       "excludes": [".git", ".venv", "results", "data", "*.npz", "docs/*.png", "__pycache__"],
                       "env_vars": {"RAY_AUTH_MODE": "disabled"}}
    else:
        pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        runtime_env = {"env_vars": {"PYTHONPATH": pythonpath, "RAY_AUTH_MODE": "disabled"}}
    ray.init(address=address, runtime_env=runtime_env, include_dashboard=False, logging_level="ERROR",
             log_to_driver=True, configure_logging=True)
    if not address:
        # Ray's dashboard and runtime-env agents outlive a killed driver by 1-2
        # minutes (search/ray_watchdog.py says why); this watchdog ends them.
        import subprocess
        subprocess.Popen([sys.executable, str(REPO_ROOT / "search" / "ray_watchdog.py"), str(os.getpid())],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         close_fds=True)
    # A failed trial is reported in one line by ProgressPrinter (reason from its
    # result.json); Tune's own multi-line tracebacks stay in tune/*/error.txt.
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)


# Logger options -> (the package each needs, the pip name).
LOGGER_PACKAGES = {"wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}


def check_logger_args(args) -> None:
    """--wandb / --mlflow need their package: refused in one line before anything starts."""
    import importlib.util

    for option, (module, pip_name) in LOGGER_PACKAGES.items():
        if getattr(args, option, None) is not None and importlib.util.find_spec(module) is None:
            raise UsageError(f"--{option} needs the {module} package: pip install {pip_name}")
    if args.wandb is not None and not args.wandb.strip():
        raise UsageError("--wandb needs a project name")


def logger_callbacks(args, name: str, results_dir: Path, method: str) -> list:
    """Ray Tune's logger callbacks for a search.

    Always Tune's CSV (``progress.csv``) and JSON (``result.json``,
    ``params.json``) loggers, one row per report -- a trial reports once per
    task -- in each trial's folder under ``tune/``, which is what
    ``ray.tune.ExperimentAnalysis(RESULTS_DIR/tune)`` reads; TensorBoard event
    files (``events.out.tfevents.*``) when tensorboardX is importable (ray[tune]
    installs it); Weights & Biases and MLflow when asked for."""
    import importlib.util

    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

    callbacks: list = [CSVLoggerCallback(), JsonLoggerCallback()]
    if importlib.util.find_spec("tensorboardX") is not None:
        callbacks.append(TBXLoggerCallback())
    if args.wandb is not None:
        from ray.air.integrations.wandb import WandbLoggerCallback
        # dir: wandb's local files (the offline runs) go into the search folder.
        callbacks.append(WandbLoggerCallback(project=args.wandb, group=name, dir=str(results_dir)))
    if args.mlflow is not None:
        from ray.air.integrations.mlflow import MLflowLoggerCallback
        # Without a URI: a file store in the search folder (offline, next to the
        # rest). MLflow 3 refuses file stores unless told they are wanted; a user
        # who names one (or takes this default) wants it.
        uri = args.mlflow or (results_dir / "mlruns").as_uri()
        if uri.startswith("file:") or "://" not in uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        callbacks.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=name,
                                              tags={"clsearch.search": name, "clsearch.method": method}))
    return callbacks


def check_resource_args(args) -> None:
    """What can be checked about the resource flags without Ray (before anything starts)."""
    if args.cpus_per_trial is not None and not args.cpus_per_trial > 0:
        raise UsageError(f"--cpus-per-trial must be positive, got {args.cpus_per_trial:g}")
    if args.gpus_per_trial is not None and not args.gpus_per_trial >= 0:
        raise UsageError(f"--gpus-per-trial must be >= 0, got {args.gpus_per_trial:g}")
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise UsageError(f"--max-concurrent must be at least 1, got {args.max_concurrent}")


def trial_resources(args, device: str = "auto") -> dict[str, float]:
    """Each trial's Ray resources, checked against the connected cluster
    (``ray_resources`` with the search's flags)."""
    return ray_resources(args.cpus_per_trial, args.gpus_per_trial, device, args.address)


def ray_resources(cpus: float | None, gpus: float | None, device: str = "auto", address: str | None = None, *,
                  flags: tuple[str, str] = ("--cpus-per-trial", "--gpus-per-trial"),
                  what: str = "trials") -> dict[str, float]:
    """The Ray resources of each of ``what`` (trials of a search, runs of a
    rerun), checked against the connected cluster; ``flags`` name the CPU and
    GPU options in the messages, ``None`` is their default.

    ``device`` is the loop's (search.json ``loop.device``). A CUDA device is
    refused here, before any trial starts, when the cluster has no GPU or the
    trials would get none (--gpus-per-trial 0): on a cluster (``--address``)
    this is the first point where the workers' hardware is known, and a trial
    without a GPU would fail (search/trainable.py: trial_device). ``cpu`` asks
    for no GPU; otherwise the default is 0.25 GPU when the cluster has one."""
    import ray

    cpu_flag, gpu_flag = flags
    total_gpus = ray.cluster_resources().get("GPU", 0)
    cpus = 1.0 if cpus is None else cpus
    wants_cuda = device.startswith("cuda")
    if wants_cuda and total_gpus == 0:
        where = "the Ray cluster at --address" if address else "the local Ray instance"
        raise UsageError(f"--device {device}: {where} has no GPU (ray.cluster_resources() reports 0); "
                         f"use --device cpu or auto, or a cluster with GPUs")
    if wants_cuda and gpus == 0:
        raise UsageError(f"--device {device} with {gpu_flag} 0: the {what} would get no GPU; "
                         f"give {gpu_flag} (e.g. 1, or 0.25 to share a GPU between 4 {what})")
    if gpus is None:
        gpus = 0.25 if total_gpus > 0 and device != "cpu" else 0.0
    if gpus > 0 and total_gpus == 0:
        raise UsageError(f"{gpu_flag} {gpus}: the Ray cluster has {total_gpus:g} GPUs")
    if cpus > ray.cluster_resources().get("CPU", 0):
        raise UsageError(f"{cpu_flag} {cpus:g} is more than the cluster's {ray.cluster_resources().get('CPU', 0):g} CPUs")
    # A trial runs on ONE node: on a cluster a request that only the sum of the
    # nodes could meet would leave every trial pending forever.
    for flag, need, key in ((cpu_flag, cpus, "CPU"), (gpu_flag, gpus, "GPU")):
        largest = max((n["Resources"].get(key, 0) for n in ray.nodes() if n.get("Alive")), default=0)
        if need > largest:
            raise UsageError(f"{flag} {need:g} is more than any node of the cluster has "
                             f"(largest node: {largest:g} {key}s, {ray.cluster_resources().get(key, 0):g} in all)")
    return {"cpu": cpus, "gpu": gpus}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        # No arguments: say how to start rather than start a default search.
        parser.print_help()
        print("\nTo start: search/run.py --method icarl --trials 8 (embedded digits data); add --dry-run to see "
              "what a search would do first.")
        return 2
    args = parser.parse_args(argv)
    args.argv = argv  # for the resume hint
    from core.methods import ALL, check_method_early, check_method_list, expand_all, parse_method_list
    asked = parse_method_list(args.method)  # a,b,c: one search across the methods
    for m in asked:
        if m != ALL:
            check_method_early(m, args.strategy_module,
                               Path(args.results_root) / args.name if args.name else None)  # before torch is imported
    warnings.filterwarnings("ignore", category=Warning, module="optuna")
    import strategies  # noqa: F401
    from search.spaces import fit_space_to_stream, loop_flags_given, parse_search_protocol, resolve_space, resolve_spaces
    from strategies.plugins import load_cli_modules
    modules = load_cli_modules(args.strategy_module, Path(args.results_root) / args.name if args.name else None)
    methods = expand_all(asked, strategies.STRATEGIES)
    check_method_list(methods, strategies.STRATEGIES)
    cross = len(methods) > 1

    if args.trials < 1:
        raise UsageError(f"--trials must be at least 1, got {args.trials}")
    if args.max_failures < -1:
        raise UsageError(f"--max-failures must be -1 (unlimited) or at least 0, got {args.max_failures}")
    check_resource_args(args)
    check_logger_args(args)
    if args.reduction_factor < 2:
        raise UsageError(f"--reduction-factor must be at least 2, got {args.reduction_factor}")
    if args.grace_tasks < 1:
        raise UsageError(f"--grace-tasks must be at least 1, got {args.grace_tasks}")
    try:
        validate_margin(args.min_plasticity_margin)
    except ValueError as exc:
        raise UsageError(f"--min-plasticity-margin: {exc}") from None
    if not 0 <= args.seed < 2**31:
        raise UsageError(f"--seed must be in 0..{2**31 - 1}, got {args.seed}")
    if args.confirm_seeds is not None and args.confirm_seeds < 0:
        raise UsageError(f"--confirm-seeds must be at least 0 (0 = no confirmation), got {args.confirm_seeds}")
    if args.confirm_seeds is not None and args.seed + args.confirm_seeds >= 2**31:
        raise UsageError(f"--seed {args.seed} + --confirm-seeds {args.confirm_seeds} passes the largest seed "
                         f"{2**31 - 1}")
    method = ",".join(methods)
    fixed_raw = parse_sets(args.set)
    spaces: dict[str, Any] | None = None
    fixed_by_method: dict[str, dict[str, Any]] = {}
    if cross:
        spaces, fixed, fixed_by_method = resolve_spaces(methods, args.range, fixed_raw,
                                                        parse_search_protocol(args.search_protocol),
                                                        flags_given=loop_flags_given(args))
        space = {}
    else:
        space, fixed = resolve_space(method, args.range, fixed_raw, parse_search_protocol(args.search_protocol),
                                     flags_given=loop_flags_given(args))
    objectives = parse_objectives(args)
    stream_protocol = stream_protocol_from_args(args)
    loop = loop_config_from_args(args, seed=args.seed, eval_split="val")
    if stream_protocol.val_fraction <= 0:
        raise UsageError("a search needs a validation split: --val-fraction must be > 0 (objectives are never measured on test)")
    from core.knobs import split_params
    from strategies.loop import strategy_config, with_loop_knobs
    for m in methods:
        # the fixed part alone must already be valid
        strategy_config(m, split_params({**fixed, **fixed_by_method.get(m, {})})[0])

    if not args.address:
        # Locally the driver sees the trials' hardware: a CUDA device that is not
        # there is refused now, not silently replaced by the CPU in every trial.
        from strategies.loop import resolve_device
        resolve_device(loop.device)
        warn_if_bf16_emulated(loop)

    name = args.name or f"{args.method.replace(',', '+')}-{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    results_dir = check_results_dir(args.results_root, name)
    resuming = (results_dir / "tune").exists()
    if args.resume and not resuming:
        raise UsageError(f"nothing to resume: {results_dir} has no search state")
    if not resuming and not folder_is_free(results_dir):
        raise UsageError(f"{results_dir} already exists and is not a search to resume; choose another --name")

    # Load and split the data ONCE in the driver; trials get it from the object store.
    from datasets.protocol import build_protocol_stream, load_arrays

    arrays, stream_protocol = load_arrays(stream_protocol)
    stream = build_protocol_stream(arrays, stream_protocol)
    del arrays
    loop = resolve_data_defaults(args, loop, stream)  # imagefolder/npz: defaults that follow the images
    from strategies.loop import check_eval_split
    check_eval_split(stream, "val")  # every trial would fail on it: say so before Ray starts
    space_asked, space = space, fit_space_to_stream(space, stream)
    spaces_asked = spaces
    if spaces is not None:
        spaces = {m: fit_space_to_stream(sp, stream) for m, sp in spaces.items()}
    args.fidelity_rungs = fidelity_rungs(args, loop, fixed, space, spaces, fixed_by_method)
    if (args.asha or args.mo_asha) and args.grace_tasks >= stream.num_tasks:
        raise UsageError(f"--grace-tasks {args.grace_tasks}: early stopping needs a comparison before the last of "
                         f"the stream's {stream.num_tasks} tasks (use 1..{stream.num_tasks - 1})")
    spec = search_spec(args, method, space, fixed, objectives, stream_protocol, loop, spaces, fixed_by_method)
    # The Optuna study, persisted in the folder (search/searcher.py); a resumed
    # search keeps what its search.json says (none: a search from before the file).
    spec[OPTUNA_STUDY_KEY] = {"storage": OPTUNA_STUDY_FILE, "study_name": name}
    confirm_changed = False
    if resuming:
        spec = check_resumable(results_dir, spec)
        # A resumed search keeps its own number of confirmation seeds (none for a
        # search from before them) unless --confirm-seeds is given.
        stored = int(spec.get("confirm_seeds") or 0)
        confirm_changed = args.confirm_seeds is not None and args.confirm_seeds != stored
        spec["confirm_seeds"] = args.confirm_seeds if confirm_changed else stored
    spec["strategy_modules"] = modules  # imported by every trial's worker before it builds the strategy
    # Fail fast on configs that cannot work on this stream, at both ends of each range.
    from strategies.loop import make_strategy
    probe_cfg = loop_config_from_dict(spec["loop"], seed=0, device="cpu")
    # method -> (its space, its fixed knobs): one entry, or one per method of a search across methods.
    per_method = ({m: (spaces[m], {**fixed, **fixed_by_method.get(m, {})}) for m in methods} if cross
                  else {method: (space, fixed)})
    for m, (m_space, m_fixed) in per_method.items():
        for end in ("low", "high"):
            probe = {k: (getattr(d, end) if d.type != "categorical" else d.choices[0]) for k, d in m_space.items()}
            strategy_part, loop_part = split_params({**m_fixed, **probe})
            make_strategy(m, strategy_part, stream, with_loop_knobs(probe_cfg, loop_part))

    from search.trainable import completed_on_disk
    done = sum(completed_on_disk(f) for f in (results_dir / "trials").glob("*/result.json")) if resuming else 0
    # Across methods: as if every trial were of the method with the largest checkpoints.
    need = max((estimate_disk_need(m, m_fixed, m_space, stream, probe_cfg, spec["trials"], done=done,
                                   concurrent=args.max_concurrent)
                for m, (m_space, m_fixed) in per_method.items()), key=lambda n: n.total)
    check_free_space(results_dir, need)
    if args.dry_run:
        from search.dry_run import print_dry_run
        if cross:
            print(f"search across {len(methods)} methods ({', '.join(methods)}): each trial samples its method "
                  f"first, then that method's knobs; the figures below are per method, as if every trial were it")
        for m, (m_space, m_fixed) in per_method.items():
            print_dry_run(args, method=m, space_asked=spaces_asked[m] if cross else space_asked, space=m_space,
                          fixed=m_fixed, spec=spec, stream=stream, loop=probe_cfg, need=need,
                          results_dir=results_dir)
        return 0

    # One driver per search folder; the checks above changed nothing, so a
    # refused driver leaves no trace. Taken only now, after every check: the
    # lock creates the folder.
    from core.lock import FolderLock
    created = not results_dir.exists()
    lock = FolderLock(results_dir, "search")
    stale = lock.acquire()
    try:
        if stale:
            print(f"{results_dir}: {stale}", file=sys.stderr)
        if (results_dir / "tune").exists() != resuming or (not resuming and not folder_is_free(results_dir)):
            # Another driver started this search between our checks and the lock.
            raise UsageError(f"{results_dir} was started by another driver meanwhile; "
                             "to continue it, rerun with --resume")
        print(f"search {name}: {method} on {stream.name} ({stream.num_tasks} tasks, {stream.num_classes} classes), "
              f"{args.trials} trials, objectives {', '.join(f'{n} ({s})' for n, s in objectives)}")
        print(f"results folder: {results_dir}")
        guard = DiskGuard(results_dir, reserve=max(need.per_checkpoint * 2, 2 * MB))
        if confirm_changed:
            from core.files import write_json_atomic
            write_json_atomic(results_dir / "search.json", spec)  # the new number of confirmation seeds
        status = run_tune(args, spec, space, objectives, stream, results_dir, resuming, guard, spaces=spaces)
        if status == 0:
            finish(results_dir, args, objectives, guard)
        return status
    finally:
        lock.release()
        if created and results_dir.is_dir() and not any(results_dir.iterdir()):
            results_dir.rmdir()  # a search that never started leaves no folder


def worker_log_environment() -> None:
    """Trials' epoch lines reach the driver's log as they are: no colour codes in
    Ray's "(trial_main pid=N)" prefix, no "[repeated 3x]" folding of similar
    lines. Ray reads both when it is imported, so this runs before that."""
    os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def run_tune(args, spec, space, objectives, stream, results_dir: Path, resuming: bool, guard: DiskGuard,
             spaces: dict[str, dict[str, Any]] | None = None) -> int:
    """The search's Tune experiment (and then its confirmations). ``spaces``:
    method -> space of a search across methods (then ``space`` is empty)."""
    worker_log_environment()
    import ray
    from ray import tune

    from search.searcher import FullRunOptunaSearch, make_sampler, set_restore_location
    from search.spaces import to_optuna
    from search.trainable import trial_main
    from core.methods import spec_methods

    init_ray(args.address)
    try:
        resources = trial_resources(args, spec["loop"].get("device", "auto"))
        # Written only now, after every check (the cluster's resources are the last):
        # a search that fails to start leaves no results folder behind.
        if not resuming:
            from core.files import write_json_atomic
            write_json_atomic(results_dir / "search.json", spec)
        margin = float(spec.get(SPEC_KEY, DEFAULT_MARGIN))  # a resumed search keeps its own
        class_counts = [len(t.classes) for t in stream.tasks]
        trainable = tune.with_resources(
            tune.with_parameters(trial_main, method=spec_methods(spec)[0], fixed=spec["fixed"], loop=spec["loop"],
                                 results_dir=str(results_dir), stream=stream,
                                 strategy_modules=spec["strategy_modules"], min_plasticity_margin=margin,
                                 fixed_by_method=spec.get("fixed_by_method"),
                                 fidelity_rungs=spec.get("fidelity_rungs") or None),
            resources)
        progress = ProgressPrinter(spec["trials"], objectives, stream.num_tasks, results_dir, class_counts, margin,
                                   max_failures=args.max_failures, planned_runs=planned_runs(spec))
        run_config = tune.RunConfig(
            name="tune", storage_path=str(results_dir), verbose=0,
            callbacks=[progress.callback, guard.callback(),
                       *logger_callbacks(args, results_dir.name, results_dir, spec["method"])],
            # A trial whose worker dies is restarted from its last per-task
            # checkpoint (search/trainable.py); one checkpoint per trial is kept.
            failure_config=tune.FailureConfig(max_failures=args.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        )
        tune_dir = results_dir / "tune"
        done: dict[str, dict[str, Any]] = {}
        if resuming and not tune_state.state_readable(tune_dir):
            # Tune writes its experiment state in place: a disk that filled up
            # during that write leaves it cut short, and Tune's restore then
            # starts from nothing. What finished is known from the trials' own
            # records: keep those, put Tune's broken state aside, and run the
            # rest as a new Tune experiment whose sampler is told the finished
            # trials' results.
            done = completed_records(results_dir)
            aside = set_aside_tune_state(tune_dir)
            print(f"Tune's saved state is unreadable (cut short, e.g. by a full disk); moved to {aside.name}/. "
                  f"Kept the {len(done)} finished trial(s) from their result.json; running the other "
                  f"{max(spec['trials'] - len(done), 0)} as a new Tune experiment")
            resuming = False
            if len(done) >= spec["trials"]:
                return run_confirmations(args, spec, objectives, results_dir, trainable, guard,
                                         stream.num_tasks, class_counts, margin)
        study = spec.get(OPTUNA_STUDY_KEY) or None  # {"storage": file name, "study_name": ...}
        study_file = results_dir / study["storage"] if study else None
        if resuming:
            print(f"resuming from {tune_dir}")
            # The searcher Tune restores re-opens the study file here, where the
            # folder is now, not where it was when the search started.
            set_restore_location(results_dir, study_file)
            # Errored trials start again from scratch (restart_errored), not from
            # their checkpoint: a trial stopped by a full disk may have a broken
            # one, and one whose checkpoint Tune deleted fails in Ray's restore
            # before our own fallback runs. A trial whose result.json already
            # says completed is reported as is (search/trainable.py), a diverged
            # one fails again at once; the others train again, same seed.
            if search_phase_over(tune_dir, results_dir, spec["trials"]):
                # Restoring would only restart the diverged trials under new Tune ids
                # (restart_errored): same config, same NaN, the first record orphaned.
                print("the search's trials have all ended (the diverged ones would diverge again); "
                      "going on with the front confirmation")
                return run_confirmations(args, spec, objectives, results_dir, trainable, guard,
                                         stream.num_tasks, class_counts, margin)
            mend_lost_checkpoints(tune_dir, results_dir)
            tuner = tune.Tuner.restore(str(tune_dir), trainable, resume_unfinished=True, restart_errored=True)
        else:
            metrics = [n for n, _ in objectives]
            modes = [s for _, s in objectives]
            searcher = FullRunOptunaSearch(
                space={k: to_optuna(d) for k, d in space.items()} if not spaces else None,
                method_spaces=spaces or None,
                metric=metrics if len(metrics) > 1 else metrics[0],
                mode=modes if len(modes) > 1 else modes[0],
                # After a lost Tune state the sampler starts again: offset its seed by
                # the trials kept, or its first draw repeats the first kept trial.
                sampler=make_sampler(args.seed + len(done), spec["trials"], group=bool(spaces),
                                     methods=len(spaces or {}) or 1),
                num_tasks=stream.num_tasks, class_counts=class_counts, min_plasticity_margin=margin,
                # The study in the search folder: a search whose Tune state was lost
                # goes on in the same study (searcher.py says why).
                study_file=study_file, study_name=study["study_name"] if study else None,
                results_dir=results_dir,
                **warm_start(done, space, metrics, spaces),
            )
            scheduler = None
            if spec["asha"]:
                scheduler = tune.schedulers.ASHAScheduler(
                    time_attr="tasks_done", metric=metrics[0], mode=modes[0], max_t=stream.num_tasks,
                    grace_period=spec["grace_tasks"], reduction_factor=spec["reduction_factor"])
            elif spec.get("fidelity_rungs"):
                from search.fidelity_halving import FidelityHalving
                scheduler = FidelityHalving(objectives, len(spec["fidelity_rungs"]), stream.num_tasks,
                                            eta=spec["reduction_factor"], rule=spec.get("promotion", "split"),
                                            results_dir=str(results_dir), class_counts=class_counts,
                                            min_plasticity_margin=margin)
            elif spec.get("mo_asha"):
                from search.mo_asha import MultiObjectiveASHA
                scheduler = MultiObjectiveASHA(objectives, stream.num_tasks, grace=spec["grace_tasks"],
                                               eta=spec["reduction_factor"], results_dir=str(results_dir),
                                               task_incremental_only=spec["task_incremental_only"],
                                               class_counts=class_counts, min_plasticity_margin=margin)
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                            num_samples=spec["trials"] - len(done),
                                            trial_dirname_creator=trial_dirname,
                                            max_concurrent_trials=args.max_concurrent, reuse_actors=True),
                run_config=run_config,
            )
        grid = fit_guarded(tuner, guard, results_dir)
        set_aside_orphans(results_dir, known_trial_ids(grid))
        if unfinished_trials(grid) or (not resuming and len(grid) < spec["trials"] - len(done)):
            # Ctrl-C (Tune catches SIGINT, saves its state and returns): what
            # finished is kept; say so, and how to go on.
            save_trials_csv_quietly(results_dir)
            counts = count_statuses(results_dir)
            ended = sum(v for k, v in counts.items() if k not in ("running", "truncated"))
            print(f"search interrupted: {ended} of {spec['trials']} trials ended, kept in {results_dir}; "
                  f"to continue: {resume_command(args, results_dir)}", file=sys.stderr, flush=True)
            return 130
        counts = count_statuses(results_dir)
        print(f"search finished: {len(grid)} trials in Tune, " +
              ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
        if counts and not counts.get("completed") and not counts.get("truncated") and not counts.get("infeasible"):
            save_trials_csv_quietly(results_dir)
            raise UserError(f"every trial of the search failed ({', '.join(f'{v} {k}' for k, v in counts.items())}); "
                            f"the reasons are in trials.csv and {results_dir / 'trials'}/*/result.json")
        if counts.get("infeasible") and not counts.get("completed"):
            # The trials ran; none learned. Their records and the report are
            # still written (they show how far each got), but there is no front
            # (and nothing to confirm).
            print(f"warning: no trial learned ({counts['infeasible']} did not learn: task-IL plasticity not "
                  f"--min-plasticity-margin above chance), so there is no front; train longer (--epochs), narrow "
                  f"the learning rate (--range lr=...), or see the reasons in trials.csv", file=sys.stderr)
            return 0
        return run_confirmations(args, spec, objectives, results_dir, trainable, guard, stream.num_tasks,
                                 class_counts, margin)
    finally:
        ray.shutdown()


def run_confirmations(args, spec, objectives, results_dir: Path, trainable, guard: DiskGuard, num_tasks: int,
                      class_counts: list[int], margin: float) -> int:
    """The confirmation phase (search/confirm.py): every front candidate of the
    finished trials rerun with ``spec["confirm_seeds"]`` more seeds, as trials
    of a second Tune experiment. Returns 0, or 130 when interrupted (Ctrl-C:
    --resume continues it)."""
    from ray import tune

    from search import confirm

    k = int(spec.get("confirm_seeds") or 0)
    if k <= 0:
        return 0
    cands = confirm.candidates(results_dir)
    if not cands:
        print("front confirmation: no completed trial of the search, so no front to confirm")
        return 0
    base_seed = int((spec.get("loop") or {}).get("seed") or 0)
    wanted = confirm.pairs(cands, base_seed, k)
    states = confirm.confirmation_states(results_dir)
    open_pairs = [(c, s) for c, s in wanted if states.get((c.number, s), ("",))[0] not in confirm.SETTLED]
    numbers = ", ".join(f"#{c.number}" for c in cands)
    if not open_pairs:
        print(f"front confirmation: {len(cands)} front candidate(s) ({numbers}) x {k} more seed(s): every "
              f"confirmation has run")
        return 0
    print(f"front confirmation: {len(cands)} front candidate(s) ({numbers}) x {k} more seed(s) "
          f"(seed{f' {base_seed + 1}' if k == 1 else f's {base_seed + 1}..{base_seed + k}'}), "
          f"{len(open_pairs)} trial(s) to run")

    def fit(tuner) -> int:
        grid = fit_guarded(tuner, guard, results_dir)
        if unfinished_trials(grid):
            save_trials_csv_quietly(results_dir)
            print(f"front confirmation interrupted: the search's trials are kept in {results_dir}; to continue: "
                  f"{resume_command(args, results_dir)}", file=sys.stderr, flush=True)
            return 130
        return 0

    def progress(total: int) -> ProgressPrinter:
        return ProgressPrinter(total, objectives, num_tasks, results_dir, class_counts, margin,
                               max_failures=args.max_failures)

    def run_config(name: str, printer: ProgressPrinter):
        # The same loggers as the search's trials (CSV/JSON/TensorBoard, --wandb, --mlflow).
        return tune.RunConfig(name=name, storage_path=str(results_dir), verbose=0,
                              callbacks=[printer.callback, guard.callback(),
                                         *logger_callbacks(args, results_dir.name, results_dir, spec["method"])],
                              failure_config=tune.FailureConfig(max_failures=args.max_failures),
                              checkpoint_config=tune.CheckpointConfig(num_to_keep=1))

    dirs = confirm.experiment_dirs(results_dir)
    started = [p for p in open_pairs if (p[0].number, p[1]) in states]
    if dirs and started and tune_state.state_readable(dirs[-1]):
        # An interrupted confirmation phase: its experiment resumes its unfinished
        # trials and restarts its errored ones; nothing of it starts twice.
        print(f"resuming the front confirmation from {dirs[-1]}")
        mend_lost_checkpoints(dirs[-1], results_dir)
        tuner = tune.Tuner.restore(str(dirs[-1]), trainable, resume_unfinished=True, restart_errored=True)
        status = fit(tuner)
        if status:
            return status
        states = confirm.confirmation_states(results_dir)
    # Pairs that no experiment holds, or whose record was left running by a
    # trial no experiment will finish (set aside, as the search's orphans are).
    todo = [(c, s) for c, s in wanted if states.get((c.number, s), ("",))[0] in ("", "running")]
    for c, s in todo:
        if (c.number, s) in states:
            _set_aside(results_dir, states[(c.number, s)][1])
    if todo:
        configs = confirm.confirmation_configs(todo, spec, confirm.largest_trial_number(results_dir) + 1)
        name = confirm.next_experiment_name(results_dir)
        printer = progress(len(configs))
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=confirm.ListSearcher(configs), num_samples=len(configs),
                                        trial_dirname_creator=trial_dirname,
                                        max_concurrent_trials=args.max_concurrent, reuse_actors=True),
            run_config=run_config(name, printer))
        status = fit(tuner)
        if status:
            return status
    states = confirm.confirmation_states(results_dir)
    done = sum(states.get((c.number, s), ("",))[0] == "completed" for c, s in wanted)
    print(f"front confirmation finished: {done} of {len(wanted)} confirmation trial(s) completed")
    return 0


def _set_aside(results_dir: Path, trial_id: str) -> None:
    target = results_dir / "trials_orphaned" / trial_id
    n = 1
    while target.exists():
        n += 1
        target = results_dir / "trials_orphaned" / f"{trial_id}.{n}"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(results_dir / "trials" / trial_id, target)
    print(f"set aside the unfinished confirmation trial {trial_id} that no Tune experiment lists -> trials_orphaned/")


def fit_guarded(tuner, guard: DiskGuard, results_dir: Path):
    """``tuner.fit()`` of the search or its confirmation phase, a full disk turned
    into the guard's one-line error (trials.csv saved first when it still fits)."""
    try:
        grid = tuner.fit()
    except Exception as exc:
        # Tune's own writes (experiment state, trial logs) on a full disk end
        # in unrelated errors (EOFError from a 0-byte pickle): name the disk.
        if is_disk_full(exc) or guard.low():
            raise guard.error() from None
        raise
    if guard.full or any(is_disk_full(e) for e in grid.errors):
        save_trials_csv_quietly(results_dir)
        raise guard.error()
    return grid


def unfinished_trials(grid) -> int:
    """Trials of the experiment Tune left neither terminated nor errored: after
    Ctrl-C, the ones that were pending or running (they resume with --resume).

    Read from the state Tune saved as ``fit`` ended, not only from the trial
    objects it returns: it stops the trials' actors after that snapshot, and a
    trial cut short by Ctrl-C can come back TERMINATED (seen on a fast machine:
    the search then said "finished" and removed the checkpoint its resume
    needed).

    A trial the live objects call ERROR has ended, whatever the saved state
    says: when a trial's worker dies, Tune marks it ERROR without refreshing its
    entry in the saved state (the refresh happens only for a trial whose actor
    is still live), so that entry stays RUNNING. Counting it would turn a search
    whose every trial failed into an "interrupted" one (exit 130, not 2)."""
    analysis = getattr(grid, "_experiment_analysis", None)
    trials = getattr(analysis, "trials", None) or []
    live = {str(t.trial_id) for t in trials if str(t.status) not in tune_state.ENDED}
    errored = {str(t.trial_id) for t in trials if str(t.status) == "ERROR"}
    path = getattr(analysis, "experiment_path", None)
    saved = set(tune_state.unended_in_saved_state(Path(path))) if path and Path(path).is_dir() else set()
    return len(live | (saved - errored))


def resume_command(args, results_dir: Path) -> str:
    """The command line that continues this search: the same options, with the
    search's name (a default name holds the start time) and --resume."""
    import shlex

    argv = list(getattr(args, "argv", None) or sys.argv[1:])
    if not args.name:
        argv += ["--name", results_dir.name]
    if not args.resume:
        argv.append("--resume")
    script = sys.argv[0] if sys.argv and sys.argv[0].endswith("run.py") else "search/run.py"
    command = ["python", script] if script.endswith(".py") else [script]
    return shlex.join([*command, *argv])


def search_phase_over(tune_dir: Path, results_dir: Path, planned: int) -> bool:
    """Whether a resume has nothing left to do in the search's own experiment:
    Tune's saved state holds every planned trial, each ended, at least one
    finished, and every errored one diverged (its result.json says so). A
    diverged trial is deterministic -- the same seed and config reach the same
    NaN -- so ``restart_errored`` would only train it again under a new Tune id.
    A trial that errored for another reason (a dead worker, a full disk) is
    worth the retry: then this is False and the experiment is restored."""
    from search.trainable import record_on_disk

    saved = tune_state.saved_trials(tune_dir)
    if len(saved) < planned or any(t.status not in tune_state.ENDED for t in saved):
        return False
    if not any(t.status == "TERMINATED" for t in saved):
        return False
    return all(record_on_disk(results_dir / "trials" / t.trial_id / "result.json").get("status") == "diverged"
               for t in saved if t.status == "ERROR")


def mend_lost_checkpoints(tune_dir: Path, results_dir: Path) -> None:
    """Before ``Tuner.restore``: a trial Tune would resume from a checkpoint
    folder that is gone gets an empty one instead of failing in Ray's restore
    (search/tune_state.py). One that had finished is then reported as its
    result.json says; the others train again from their first task."""
    from search.trainable import completed_on_disk

    mended = tune_state.recreate_lost_checkpoints(tune_dir)
    if not mended:
        return
    finished = [t.folder for t in mended if completed_on_disk(results_dir / "trials" / t.trial_id / "result.json")]
    again = [t.folder for t in mended if t.folder not in finished]
    parts = ([f"{', '.join(finished)} had finished: kept as recorded"] if finished else []) + \
            ([f"{', '.join(again)} train again from the first task (same seed, same numbers)"] if again else [])
    print(f"{len(mended)} trial(s) Tune would resume lost their checkpoint folder; " + "; ".join(parts))


def set_aside_tune_state(tune_dir: Path) -> Path:
    n = 1
    target = tune_dir.with_name("tune.unreadable")
    while target.exists():
        n += 1
        target = tune_dir.with_name(f"tune.unreadable.{n}")
    os.replace(tune_dir, target)
    return target


def completed_records(results_dir: Path) -> dict[str, dict[str, Any]]:
    """trial id -> result.json of every trial whose own record says completed."""
    from search.trainable import record_on_disk

    out = {}
    for f in sorted((results_dir / "trials").glob("*/result.json")):
        record = record_on_disk(f)
        if record.get(CONFIRMS_KEY) is not None:
            continue  # a confirmation trial (search/confirm.py): no sample of the search
        if record.get("status") == "completed" and isinstance(record.get("params"), dict):
            out[f.parent.name] = record
    return out


def warm_start(done: dict[str, dict[str, Any]], space: dict[str, Any], metrics: list[str],
               spaces: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The finished trials for the searcher (search/searcher.py: their number,
    searched knobs, objective values, Tune id and last report), so a new
    experiment samples as if it had seen them. Across methods (``spaces``:
    method -> space) each trial's knobs are its own method's, with ``method``."""
    if not done:
        return {}
    from search.searcher import finished_from_record

    from core.fidelity import below_top

    keys = {m: list(sp) for m, sp in spaces.items()} if spaces else list(space)
    # A trial stopped at a cheap fidelity rung ended, but its values are not the protocol's.
    finished = [f for f in (finished_from_record(r, keys, metrics) for r in done.values()
                            if not below_top(r)) if f is not None]
    return {"finished": finished}


def count_statuses(results_dir: Path) -> dict[str, int]:
    """Trials of the search (confirmation trials left out) by the status their
    own result.json gives (what trials.csv will say)."""
    from analysis.results import CONFIRMS_COLUMN, trials_frame_from_results

    try:
        df = trials_frame_from_results(results_dir)
    except (UserError, OSError):
        return {}
    if CONFIRMS_COLUMN in df.columns:
        df = df[df[CONFIRMS_COLUMN].isna()]
    return {str(k): int(v) for k, v in df["status"].value_counts().items()} if len(df) else {}


def save_trials_csv_quietly(results_dir: Path) -> None:
    """trials.csv when the search ends early; on a full disk it may not fit
    (the result.json files it comes from are there either way)."""
    from analysis.results import write_trials_csv

    try:
        write_trials_csv(results_dir)
    except (OSError, UserError):
        pass


def known_trial_ids(grid) -> set[str]:
    """Ids of the trials Tune ran or restored in this experiment."""
    analysis = getattr(grid, "_experiment_analysis", None)
    if analysis is not None and hasattr(analysis, "trials"):
        return {str(t.trial_id) for t in analysis.trials}
    return {str(r.metrics["trial_id"]) for r in grid if r.metrics and "trial_id" in r.metrics}


def set_aside_orphans(results_dir: Path, known: set[str]) -> list[str]:
    """Move result folders of trials Tune does not know to ``trials_orphaned/``.

    After a hard kill (SIGKILL, power loss) ``Tuner.restore`` goes back to the
    last saved experiment state: a trial started after that snapshot is unknown
    to Tune and to Optuna, which start a replacement, but its worker may have
    written ``trials/<id>/result.json`` already. Left there it would be one row
    too many in trials.csv (and a truncated one). Its files are kept, aside.
    """
    trials_dir = results_dir / "trials"
    if not known or not trials_dir.is_dir():
        return []
    # A finished trial is known from its own result.json: one Tune's state lost
    # (a driver stopped between the trial's last write and Tune's snapshot) is
    # kept, never set aside.
    from search.trainable import completed_on_disk, record_on_disk
    # Confirmation trials belong to their own experiment (tune-confirm/): not this one's to judge.
    unknown = sorted(d.name for d in trials_dir.iterdir() if d.is_dir() and d.name not in known
                     and record_on_disk(d / "result.json").get(CONFIRMS_KEY) is None)
    kept = [n for n in unknown if completed_on_disk(trials_dir / n / "result.json")]
    if kept:
        print(f"kept {len(kept)} finished trial(s) that Tune's saved state did not list: {', '.join(kept)}")
    orphans = [n for n in unknown if n not in kept]
    for name in orphans:
        target = results_dir / "trials_orphaned" / name
        n = 1
        while target.exists():
            n += 1
            target = results_dir / "trials_orphaned" / f"{name}.{n}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(trials_dir / name, target)
    if orphans:
        print(f"set aside {len(orphans)} unfinished trial folder(s) that Tune's saved state does not list (started "
              f"after its last snapshot by a killed driver, or before a state a full disk cut short; Tune ran "
              f"replacements): {', '.join(orphans)} -> trials_orphaned/")
    return orphans


def remove_checkpoints(tune_dir: Path) -> tuple[int, int]:
    """Delete the per-task checkpoints Tune keeps of each trial (4-12 MB each on
    GTSRB) once a search has ended: they exist to restart a trial whose worker
    died; a finished trial is known from its own result.json, and a resumed
    search restarts an errored trial from scratch. Tune's experiment state and
    the trials' logs stay. Returns (checkpoints removed, bytes freed)."""
    import shutil

    count = size = 0
    for folder in sorted(tune_dir.glob("*/checkpoint_*")):
        if not folder.is_dir():
            continue
        size += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        count += 1
    return count, size


def finish(results_dir: Path, args, objectives, guard: DiskGuard) -> None:
    from analysis.results import load_search, write_trials_csv

    try:
        write_trials_csv(results_dir)
    except OSError as exc:
        if is_disk_full(exc):
            raise guard.error() from None
        raise
    results = load_search(results_dir)
    df = results.trials
    print(f"trials.csv: {len(df)} rows, by status: " + ", ".join(f"{k} {v}" for k, v in df["status"].value_counts().items()))
    if not args.keep_checkpoints:
        from search.confirm import experiment_dirs
        count = size = 0
        confirm_dirs = experiment_dirs(results_dir)
        for tune_dir in [results_dir / "tune", *confirm_dirs]:
            c, b = remove_checkpoints(tune_dir)
            count, size = count + c, size + b
        if count:
            print(f"removed {count} trial checkpoint(s) from tune/{' and ' + confirm_dirs[0].name + '*/' if confirm_dirs else ''} ({size / MB:.1f} MB; every trial has ended, so "
                  f"--resume no longer needs them; --keep-checkpoints keeps them)")
    if not args.no_report:
        from analysis.report import build_report

        report = build_report([results_dir])
        print(f"report: {report}")
    print(f"results folder: {results_dir}")


def entry() -> None:
    """The installed console command (pyproject.toml [project.scripts])."""
    sys.exit(cli_main(main))


if __name__ == "__main__":
    sys.exit(cli_main(main))
