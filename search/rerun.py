"""Rerun configs: the final table of a search, or a direct run of one config.

Final table of a search (the last step after a search and its report):

    python search/rerun.py RESULTS_DIR --pick front --seeds 5

retrains the chosen configs (``front``: the non-dominated trials on the search's
objectives -- for a search with confirmation trials (``run.py --confirm-seeds``),
the front recomputed on the candidates' seed means, analysis/confirm.py; or
trial numbers / ids) on train + validation with several seeds,
evaluates on the TEST split, next to finetune and joint under the same protocol,
and writes RESULTS_DIR/final_table.md and final_table.csv (mean ± std over seeds).

Direct run (one config, several seeds):

    python search/rerun.py --method icarl --set lr=0.5 --set memory=200 --seeds 1
    python search/rerun.py --method icarl --set batch_size=64 --set optimizer=adam --set lr=0.001

trains on the full training data (train + validation) and evaluates on the test
split (the final numbers come from test, the search's from validation);
``--eval val`` keeps the validation split instead. It prints the class-IL and
task-IL accuracy matrices and their metrics (core/metrics.py) and writes
``result.json`` per seed (docs/RESULT_FORMAT.md) under ``--out``.

Scheduling (search/rerun_ray.py): the (config, seed) runs, baselines included,
are Ray tasks spread over every local CPU/GPU, or over the cluster at
``--address``: ``--cpus-per-run`` CPUs each (default 1, or ``--threads``),
which are also its torch threads, and ``--gpus-per-run`` GPUs (default 0.25
when a GPU is visible and ``--device`` is not cpu). A command with a single run
(one config, one seed) trains it in this process with every CPU (or
``--threads``), without Ray's start-up; so does ``--sequential``, one run after
another (debugging). A run that fails or diverges does not stop the others;
the command then exits 2 naming it, and the same command reruns only it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.cli import ArgumentParser, cli_main, format_matrix, format_metrics  # noqa: E402
from core.errors import UsageError  # noqa: E402
from core.result import metrics_key  # noqa: E402
from search.cli import (add_protocol_args, loop_config_from_args, loop_config_from_dict,  # noqa: E402
                        parse_sets, resolve_data_defaults, stream_protocol_from_args, warn_if_bf16_emulated)


# Loop fields that say where a run ran, not what it computed: a finished seed
# is reused whatever they were. Likewise where the data was read from. The
# thread count is NOT one of them: float reductions differ with it, so a seed
# run with another number of threads is run again.
HARDWARE_KEYS = ("device",)


def _without_data_dir(stream: dict[str, Any]) -> dict[str, Any]:
    protocol = {k: v for k, v in (stream.get("protocol") or {}).items() if k != "data_dir"}
    return {**stream, "protocol": protocol}


def finished_run(path: Path, result_like: dict[str, Any]) -> dict[str, Any] | None:
    """The completed result at ``path`` if it ran exactly this method, config,
    protocol (hardware keys aside) and stream; else None (it will be rerun)."""
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    import dataclasses

    from strategies.loop import LoopConfig

    # A loop field added after a run was recorded is absent from its protocol: the
    # run had that field's default (train_fraction 1, the whole data, for one).
    defaults = dataclasses.asdict(LoopConfig())

    def same_protocol(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return ({k: v for k, v in {**defaults, **a}.items() if k not in HARDWARE_KEYS}
                == {k: v for k, v in {**defaults, **b}.items() if k not in HARDWARE_KEYS})
    if (d.get("status") == "completed" and d.get("method") == result_like["method"]
            and d.get("config") == result_like["config"]
            and _without_data_dir(d.get("stream") or {}) == _without_data_dir(result_like["stream"])
            and same_protocol(d.get("protocol") or {}, result_like["protocol"])):
        return d
    return None


def uses_ray(args, runs: int) -> bool:
    """Whether this command trains through Ray: unless --sequential, when it has
    more than one (config, seed) run, or names a cluster or a per-run resource.
    A single run stays in this process (no Ray start-up)."""
    if args.sequential:
        return False
    return runs > 1 or args.address is not None or args.cpus_per_run is not None or args.gpus_per_run is not None


def cpus_per_run(args) -> float:
    """Each Ray task's CPUs: --cpus-per-run, else --threads, else 1."""
    if args.cpus_per_run is not None:
        return args.cpus_per_run
    return float(args.threads) if args.threads > 0 else 1.0


def threads_of(cpus: float) -> int:
    """A Ray task's torch threads: its CPUs (at least one; a fraction rounds down)."""
    return max(1, int(cpus))


def check_run_args(args) -> None:
    """The scheduling flags, checked before anything is loaded (README, Rerun)."""
    if args.cpus_per_run is not None and not args.cpus_per_run > 0:
        raise UsageError(f"--cpus-per-run must be positive, got {args.cpus_per_run:g}")
    if args.gpus_per_run is not None and not args.gpus_per_run >= 0:
        raise UsageError(f"--gpus-per-run must be >= 0, got {args.gpus_per_run:g}")
    if args.sequential:
        for flag, value in (("--address", args.address), ("--cpus-per-run", args.cpus_per_run),
                            ("--gpus-per-run", args.gpus_per_run)):
            if value is not None:
                raise UsageError(f"--sequential trains in this process and {flag} is for runs through Ray; "
                                 f"drop one of them")
    elif args.cpus_per_run is not None and args.threads > 0 and args.threads != threads_of(args.cpus_per_run):
        raise UsageError(f"--threads {args.threads} and --cpus-per-run {args.cpus_per_run:g} disagree: through Ray "
                         f"a run's torch threads are the CPUs it gets; give one of them (or --sequential "
                         f"--threads {args.threads} to train in this process)")


def train_configs(args, configs: list[tuple[str, str, dict[str, Any], Any, Path]], seeds: list[int], stream):
    """Train every (config, seed) that is not finished yet, through Ray or in
    this process (search/rerun_ray.py); return ({result.json path: record} of
    the finished runs, [(run, reason)] of the failed ones).

    ``configs``: (label, method, strategy overrides, LoopConfig, run folder).
    A seed whose ``result.json`` already holds a completed run of the same
    method, config, protocol (threads included) and stream is kept, not
    retrained: an interrupted rerun of many configs and seeds continues where
    it stopped."""
    from core.files import write_json_atomic
    from search.rerun_ray import RunProgress, plan_runs, train_in_process, train_through_ray
    from strategies.loop import resolve_threads

    through_ray = uses_ray(args, len(configs) * len(seeds))
    # The one thread rule (strategies/loop.py:resolve_threads): through Ray a run
    # uses the CPUs Ray gives it; in this process, one run at a time, every CPU
    # given to the process (or --threads). Decided before the reuse check,
    # which compares thread counts.
    threads = threads_of(cpus_per_run(args)) if through_ray else resolve_threads(configs[0][3].threads)
    runs, kept = plan_runs(configs, seeds, stream, threads)
    records = dict(kept)
    todo = [r for r in runs if r.path not in kept]
    progress = RunProgress(len(runs), len(kept))

    def write(run, record: dict[str, Any]) -> None:
        write_json_atomic(run.path, record)
        if record.get("status") == "completed":
            records[run.path] = record

    if not todo:
        progress.line(f"all {len(runs)} run(s) finished earlier and are kept: nothing to train")
        return records, []
    if through_ray:
        failures = train_through_ray(todo, stream, progress, write, address=args.address, cpus=cpus_per_run(args),
                                     gpus=args.gpus_per_run, device=configs[0][3].device,
                                     strategy_modules=args.strategy_modules)
    else:
        progress.line(f"{len(todo)} run(s) to train in this process, one at a time, {threads} "
                      f"thread{'s' if threads > 1 else ''} each")
        failures = train_in_process(todo, stream, progress, write, log=None if args.quiet else _log)
    return records, failures


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def print_result(d: dict[str, Any]) -> None:
    seed = d["protocol"]["seed"]
    print(f"\n== {d['method']} seed {seed} on {d['stream']['name']} ({d['eval_split']} split), "
          f"{d['train_time_s']:.1f} s, memory {d['memory_size']}, {d['num_params']} parameters")
    if not d["task_incremental_only"]:
        print("class-incremental accuracy matrix (%; row = after task i, column = task j):")
        print(format_matrix(d["acc_class_il"]))
        print("class-incremental metrics:")
        print(format_metrics(d["metrics"]["class_il"]))
    print("task-incremental accuracy matrix (%):")
    print(format_matrix(d["acc_task_il"]))
    print("task-incremental metrics:")
    print(format_metrics(d["metrics"]["task_il"]))


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="search/rerun.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir", nargs="?", help="a search's results folder: rerun its chosen configs")
    p.add_argument("--pick", nargs="+", default=["front"], help="with RESULTS_DIR: 'front' or trial numbers/ids")
    p.add_argument("--no-baselines", action="store_true", help="with RESULTS_DIR: skip finetune and joint")
    p.add_argument("--method", help="strategy to run directly (see --list)")
    p.add_argument("--strategy-module", action="append", metavar="PATH_OR_MODULE",
                   help="import a .py file or module that registers a strategy with @register (repeatable; "
                        "also $CLSEARCH_STRATEGY_MODULES; default with RESULTS_DIR: the search's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="config value, repeatable")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (seed, seed+1, ...)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--eval", default="test", choices=("test", "val"),
                   help="test: train on train+val and evaluate on test (default); val: keep the validation split")
    p.add_argument("--out", default=None, help="output folder (default ./results/direct-METHOD-TIME, under the working directory)")
    p.add_argument("--list", action="store_true", help="list the methods and their config keys, then exit")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress lines (runs in this process)")
    g = p.add_argument_group("scheduling (README, Rerun)")
    g.add_argument("--cpus-per-run", type=float, default=None,
                   help="CPUs of each run through Ray; its torch threads follow (default: --threads if given, else 1)")
    g.add_argument("--gpus-per-run", type=float, default=None,
                   help="GPUs of each run through Ray, fractional to share a GPU (default 0.25 when a GPU is visible "
                        "and --device is not cpu, else 0)")
    g.add_argument("--address", default=None, help="address of an existing Ray cluster (e.g. 10.0.0.1:6379 or auto)")
    g.add_argument("--sequential", action="store_true",
                   help="train the runs one after another in this process, without Ray (debugging; a single run "
                        "always does)")
    add_protocol_args(p)
    return p


def list_methods() -> None:
    """Each method, where its defaults come from and what they scored when
    measured (search/defaults.py), then its config keys with their defaults."""
    import strategies
    from search.defaults import measured_lines, read_record
    from search.spaces import method_loop_defaults
    from core.config import config_help

    record = read_record()
    for name, cls in sorted(strategies.STRATEGIES.items()):
        kind = "task-incremental" if cls.task_incremental_only else "class-incremental"
        print(f"{name} ({kind}):")
        print(f"  defaults from: {cls.defaults_source or 'not stated by the strategy'}")
        if own_loop := method_loop_defaults(name):
            knobs = ", ".join(f"{k}={v}" for k, v in own_loop.items())
            print(f"  default loop knobs: {knobs} (instead of the dataset's; a flag, --set or --range overrides)")
        for line in measured_lines(name, record) or ["not measured (bench/strategy_table.sh, then search/defaults.py)"]:
            print(f"  {line}")
        for line in config_help(cls.config_class):
            print(f"  {line}")


def folder_after_pick(args) -> None:
    """``rerun.py --pick front RESULTS_DIR``: argparse hands the folder to
    ``--pick`` (it takes one or more values). A --pick value that is a folder
    is the RESULTS_DIR, wherever it was written."""
    if args.results_dir is not None:
        return
    folders = [v for v in args.pick if Path(v).is_dir()]
    if len(folders) == 1:
        args.results_dir = folders[0]
        args.pick = [v for v in args.pick if v != folders[0]] or ["front"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    folder_after_pick(args)
    from core.methods import check_method_early
    check_method_early(args.method, args.strategy_module, args.results_dir)  # before torch is imported
    from strategies.plugins import load_cli_modules
    # Recorded as Ray workers import them (absolute paths for files).
    args.strategy_modules = load_cli_modules(args.strategy_module, args.results_dir)
    if args.list:
        list_methods()
        return 0
    if args.seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {args.seeds}")
    check_run_args(args)
    if args.results_dir:
        if args.method or args.set:
            raise UsageError("give either RESULTS_DIR (rerun a search's configs) or --method/--set (a direct run), not both")
        return rerun_search(args)
    if not args.method:
        raise UsageError("give RESULTS_DIR to rerun a search, or --method METHOD for a direct run (see --list)")
    import strategies  # noqa: F401
    from core.knobs import split_params
    from search.spaces import check_knob, loop_flags_given, method_loop_defaults
    from strategies.loop import strategy_config, with_loop_knobs

    from datasets.protocol import load_stream

    strategy_config(args.method)  # fail fast on a bad method/key before loading data
    # --set takes loop knobs too (batch_size, augment, crop_padding, epochs; core/knobs.py),
    # and the method's own loop defaults join them unless a flag or --set gave the knob.
    sets = {k: check_knob(args.method, k, v) for k, v in parse_sets(args.set).items()}
    sets.update(method_loop_defaults(args.method, sets, loop_flags_given(args)))
    overrides, loop_knobs = split_params(sets)
    stream_protocol = stream_protocol_from_args(args)
    stream = load_stream(stream_protocol, val_fraction=0.0 if args.eval == "test" else None)
    # imagefolder/npz: defaults that follow the images, for what no flag set; a --set
    # loop knob or the method's own default is applied after them and wins, as in a
    # search's trials
    loop = loop_config_from_args(args, seed=args.seed, eval_split=args.eval)
    loop = with_loop_knobs(resolve_data_defaults(args, loop, stream), loop_knobs)
    from strategies.loop import check_eval_split
    check_eval_split(stream, args.eval)
    check_device(args, loop)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.out) if args.out else Path("results") / f"direct-{args.method}-{stamp}"
    seeds = list(range(args.seed, args.seed + args.seeds))
    with output_folder(out_dir):
        records, failures = train_configs(args, [(args.method, args.method, overrides, loop, out_dir)], seeds, stream)
    results = [records[p] for p in (out_dir / f"seed{s}" / "result.json" for s in seeds) if p in records]
    for d in results:
        print_result(d)
    if len(results) > 1:
        print_seed_summary(results)
    print(f"\nresults written to {out_dir}")
    from search.rerun_ray import raise_if_failed
    raise_if_failed(failures, len(seeds))
    return 0


def hardware_overrides(args) -> dict[str, Any]:
    """The hardware flags given on a rerun of a search: they replace the search's
    own (where and how to run, not what is measured). A flag left at its default
    keeps the search's value; ``--precision fp32`` given explicitly turns a bf16
    search's reruns to fp32 (its default is None for that reason)."""
    return {key: getattr(args, key) for key in ("device", "threads", "precision")
            if getattr(args, key) not in (None, "auto", 0)}


def check_device(args, loop) -> None:
    """A CUDA device this machine does not have is refused before anything
    trains, and bf16 that this CPU would emulate is warned of, except on a
    cluster (--address): there the workers' hardware is checked once Ray is
    connected (search/run.py: ray_resources)."""
    if args.address is None or args.sequential:
        from strategies.loop import resolve_device
        resolve_device(loop.device)
        warn_if_bf16_emulated(loop)


# Options that a rerun of a search takes from its search.json: given next to
# RESULTS_DIR they would be silently ignored, so they are refused. (--data-dir,
# --device, --threads and --precision say where and how to run, and apply.)
FIXED_BY_SEARCH = ("dataset", "folders", "image_size", "download", "classes", "tasks", "task_sizes", "class_order",
                   "stream_seed", "val_fraction", "epochs", "batch_size", "backbone", "pretrained", "augment", "eval")


def check_no_protocol_options(args) -> None:
    defaults = build_parser()
    for dest in FIXED_BY_SEARCH:
        if getattr(args, dest) != defaults.get_default(dest):
            flag = "--" + dest.replace("_", "-")
            raise UsageError(f"{flag} cannot be changed when rerunning the search in {args.results_dir}: "
                             f"its search.json fixes the protocol (drop {flag})")


class output_folder:
    """The lock of the folder a rerun writes into (core/lock.py), taken before any
    training: a folder another process writes into, a file in the way, a
    read-only or missing disk are refused in one line, not after hours of work.
    A folder it created and left empty is removed."""

    def __init__(self, folder: Path) -> None:
        from core.lock import FolderLock

        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise UsageError(f"--out {self.folder} is a file, not a folder")
        self.created = not self.folder.exists()
        self.lock = FolderLock(self.folder, "rerun")

    def __enter__(self) -> "output_folder":
        stale = self.lock.acquire()
        if stale:
            print(f"{self.folder}: {stale}", file=sys.stderr)
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()
        if self.created and self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()


def pick_trials(results, picks: list[str]):
    """Rows of the trials table chosen by ``--pick`` (front, numbers or ids)."""
    from analysis.pareto import pareto_table
    from core.result import TRIAL_NUMBER_KEY

    df = results.trials
    # Completed trials of the search itself: a confirmation trial (another seed of
    # a front candidate, search/confirm.py) is no point of its own.
    eligible = results.eligible
    if picks == ["front"]:
        table = pareto_table(df, results.objective_columns, eligible=eligible)
        chosen = table[table["on_front"]]
        if chosen.empty:
            raise UsageError(f"{results.path}: no completed trial, so there is no front to rerun")
        from analysis.confirm import confirmed_front
        confirmed = confirmed_front(results)
        if confirmed is not None:
            # The search confirmed its front with more seeds: rerun the candidates
            # whose seed means are still non-dominated (analysis/confirm.py).
            keep = set(confirmed.loc[confirmed["front_after"], "trial_id"])
            chosen = chosen[chosen["trial_id"].isin(keep)]
        return chosen
    rows = []
    for pick in picks:
        # A trial number (as the live log, trials.csv and the report show it) or a trial id.
        numbers = df[TRIAL_NUMBER_KEY].astype("string") if TRIAL_NUMBER_KEY in df.columns else None
        match = df[(df["trial_id"] == pick) | ((numbers == pick.lstrip("#")).fillna(False)
                                                 if numbers is not None else False)]
        if match.empty:
            raise UsageError(f"--pick {pick!r}: no such trial in {results.path / 'trials.csv'}")
        if match.iloc[0]["status"] != "completed":
            raise UsageError(f"--pick {pick!r}: trial status is {match.iloc[0]['status']}, not completed")
        rows.append(match.iloc[0])
    import pandas as pd
    return pd.DataFrame(rows)


def _is_missing(v: Any) -> bool:
    import pandas as pd
    return v is None or bool(pd.isna(v))


def row_method(row, methods: list[str]) -> str:
    """The method of a trials-table row: its ``method`` cell (each row of a search
    across methods names its own), else the search's one method."""
    cell = row.get("method")
    if not _is_missing(cell) and str(cell):
        if str(cell) not in methods:
            raise UsageError(f"trial {row.get('trial_id')}: method {cell!r} is not one of the search's "
                             f"({', '.join(methods)})")
        return str(cell)
    if len(methods) != 1:
        raise UsageError(f"trial {row.get('trial_id')}: no method in trials.csv, and the search has several")
    return methods[0]


def trial_params(row) -> dict[str, Any]:
    import math
    params = {}
    for col, value in row.items():
        if not col.startswith("param.") or value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        params[col[len("param."):]] = value.item() if hasattr(value, "item") else value
    return params


def rerun_search(args) -> int:
    import strategies  # noqa: F401
    from analysis.final_table import build_final_table, write_final_table
    from analysis.results import load_search
    from core.knobs import split_params
    from strategies.loop import strategy_config, with_loop_knobs

    results = load_search(Path(args.results_dir))
    check_no_protocol_options(args)
    spec = results.spec
    methods = results.methods  # several for a search across methods: each row names its own
    chosen = pick_trials(results, args.pick)
    # label -> (method, strategy params, loop knobs): a trial that sampled (or
    # was fixed to) loop knobs -- batch size, augmentation, epochs -- is retrained
    # with them, so the final table trains exactly what the trial trained.
    configs: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {}
    # label -> the run folder's name (by trial id: stable, so an interrupted
    # rerun finds its finished seeds whatever the labels look like).
    folders: dict[str, str] = {}
    from core.result import TRIAL_NUMBER_KEY
    for _, row in chosen.iterrows():
        method = row_method(row, methods)
        params, loop_knobs = split_params(trial_params(row))
        strategy_config(method, params)  # still a valid config for this version
        number = row.get(TRIAL_NUMBER_KEY)
        label = f"{method} {row['trial_id']}" if _is_missing(number) else f"{method} #{int(number)} ({row['trial_id']})"
        configs[label] = (method, params, loop_knobs)
        folders[label] = f"{method}-{row['trial_id']}"
    if not args.no_baselines:
        for baseline in ("finetune", "joint"):
            if baseline not in methods:
                configs[baseline] = (baseline, {}, {})
                folders[baseline] = baseline
    import dataclasses

    from core.protocol import StreamProtocol
    from datasets.protocol import load_stream

    stream_protocol = StreamProtocol.from_dict(spec["stream_protocol"], owner=f"{results.path}/search.json")
    if args.data_dir:
        stream_protocol = dataclasses.replace(stream_protocol, data_dir=args.data_dir).with_absolute_paths()
    loop = loop_config_from_dict(spec["loop"], eval_split="test", **hardware_overrides(args))
    # Train on train + validation, evaluate on test: the only place test is used.
    stream = load_stream(stream_protocol, val_fraction=0.0)
    from strategies.loop import check_eval_split
    check_eval_split(stream, "test")
    check_device(args, loop)
    out_dir = Path(args.out) if args.out else results.path
    seeds = list(range(args.seed, args.seed + args.seeds))
    runs: dict[str, list[Path]] = {}
    plan = []
    for label, (m, params, loop_knobs) in configs.items():
        run_dir = out_dir / "rerun" / folders[label]
        plan.append((label, m, params, with_loop_knobs(loop, loop_knobs), run_dir))
        runs[label] = [run_dir / f"seed{s}" / "result.json" for s in seeds]
    with output_folder(out_dir):
        for label, (_, params, loop_knobs) in configs.items():
            print(f"rerun {label} {({**params, **loop_knobs})} on test, seeds {seeds}", flush=True)
        _, failures = train_configs(args, plan, seeds, stream)
        from search.rerun_ray import raise_if_failed
        raise_if_failed(failures, len(plan) * len(seeds))
        table = build_final_table(runs)
        notes = [f"search: {results.path}", f"protocol: {stream.name}, {stream.num_tasks} tasks, "
                 f"{stream.num_classes} classes, {loop.epochs} epochs/task, {loop.backbone}; trained on "
                 "train+validation, evaluated on test", f"seeds: {seeds}"]
        baselines = [b for b in ("finetune", "joint") if b in configs]
        if baselines:  # none with --no-baselines (or when they are the methods searched)
            notes.append(f"{' and '.join(baselines)} use{'s' if len(baselines) == 1 else ''} "
                         f"{'its' if len(baselines) == 1 else 'their'} default config"
                         f"{'' if len(baselines) == 1 else 's'} under the same protocol")
        per_config = {label: knobs for label, (_, _, knobs) in configs.items() if knobs}
        if per_config:
            notes.append("loop knobs of the trials, applied to their reruns: "
                         + "; ".join(f"{label}: " + ", ".join(f"{k}={v}" for k, v in knobs.items())
                                     for label, knobs in per_config.items()))
        csv_path, md_path = write_final_table(table, out_dir, f"Final table: {', '.join(methods)}", notes)
    print(md_path.read_text())
    print(f"final table written to {md_path} and {csv_path}")
    if out_dir == results.path:  # the report shows the table and draws finetune/joint once rebuilt
        print(f"to add it to the report: python analysis/report.py {results.path}")
    return 0


def print_seed_summary(results: list[dict[str, Any]]) -> None:
    import numpy as np

    from core.result import metrics_key

    key = metrics_key(results[0]["task_incremental_only"])
    print(f"\nmean ± std over {len(results)} seeds ({key}):")
    for metric in ("final_acc", "avg_inc_acc", "forgetting", "bwt", "plasticity"):
        vals = np.array([r["metrics"][key][metric] for r in results]) * 100
        print(f"  {metric:12s} {vals.mean():6.2f} ± {vals.std(ddof=1):5.2f} %")


def entry() -> None:
    """The installed console command (pyproject.toml [project.scripts])."""
    sys.exit(cli_main(main))


if __name__ == "__main__":
    sys.exit(cli_main(main))
