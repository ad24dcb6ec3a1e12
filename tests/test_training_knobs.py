"""Training knobs are searchable: optimiser, schedule, weight decay, batch size,
augmentation (and epochs, on request) through ``--set`` / ``--range``.

The fast tests follow a knob from the command-line form (``resolve_space``)
through a trial's split of its params (``search.trainable.trial_configs``) to
what training actually uses: the optimiser ``make_optimizer`` built (its class,
lr, weight decay, momentum or betas, the multistep schedule's lr at every step)
and the batches the strategy receives. The slow one runs a real 2-trial search
(Ray + Optuna, subprocess) and reruns one of its trials.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import strategies  # noqa: F401  (registers the strategies)
from core.config import ConfigError, check_value
from core.knobs import split_params
from search.spaces import knob_kinds, resolve_space
from search.trainable import trial_configs
from strategies.base import StrategyConfig
from strategies.loop import LoopConfig, crop_padding, make_strategy, run

ROOT = Path(__file__).resolve().parent.parent
# What search/run.py stores as search.json "loop" for a tiny search.
SEARCH_LOOP = dataclasses.asdict(LoopConfig(epochs=2, batch_size=32, augment="none", seed=0))


def _spy(strategy) -> list[dict]:
    """Record, at every optimiser step, the optimiser and the batch the strategy got."""
    seen: list[dict] = []
    real_step = strategy.train_step

    def train_step(x, y):
        opt = strategy.optimizer
        group = opt.param_groups[0]
        seen.append({"task": len(strategy.tasks) - 1, "opt": type(opt), "lr": group["lr"],
                     "weight_decay": group["weight_decay"], "momentum": group.get("momentum"),
                     "betas": group.get("betas"), "scheduler": strategy.scheduler, "batch": len(y)})
        return real_step(x, y)

    strategy.train_step = train_step
    return seen


def _trial(method: str, params: dict, stream):
    """Build and run one trial's strategy as search/trainable.py does; return
    (loop config, strategy, per-step records)."""
    strategy_params, cfg = trial_configs(params, SEARCH_LOOP, threads=1, device="cpu")
    strategy = make_strategy(method, strategy_params, stream, cfg)
    seen = _spy(strategy)
    assert run(strategy, stream, cfg, log=None).status == "completed"
    return cfg, strategy, seen


# -- --set: fixed knobs reach the built optimiser and the batches -----------------------

def test_set_knobs_reach_the_built_optimizer_and_the_batches(tiny_stream):
    space, fixed = resolve_space("icarl", None, {
        "memory": "20", "batch_size": "16", "optimizer": "adam", "weight_decay": "0.001",
        "adam_beta1": "0.8", "adam_beta2": "0.99", "lr_schedule": "constant"})
    assert fixed["batch_size"] == 16 and fixed["optimizer"] == "adam"  # typed: int, checked choice
    assert set(space) == {"lr"}  # iCaRL's default space, less the fixed knobs
    cfg, strategy, seen = _trial("icarl", {**fixed, "lr": 0.002}, tiny_stream)  # lr as if sampled
    assert cfg.batch_size == 16 and strategy.ctx.batch_size == 16
    for rec in seen:
        assert rec["opt"] is torch.optim.Adam and rec["lr"] == 0.002 and rec["weight_decay"] == 0.001
        assert rec["betas"] == (0.8, 0.99) and rec["scheduler"] is None
    # Task 0 (no memory yet): full batches of 16 and the rest, every epoch; no batch above 16.
    n = len(tiny_stream.tasks[0].train)
    epoch = [16] * (n // 16) + ([n % 16] if n % 16 > 1 else [])
    assert [r["batch"] for r in seen if r["task"] == 0] == epoch * cfg.epochs
    assert max(r["batch"] for r in seen) == 16


def test_sgd_momentum_and_adamw_decoupled_decay_are_built_as_asked(tiny_stream):
    cfg, strategy, seen = _trial("finetune", {"optimizer": "sgd", "momentum": 0.5, "weight_decay": 0.01,
                                              "lr_schedule": "constant", "lr": 0.03}, tiny_stream)
    assert {(r["opt"], r["lr"], r["momentum"], r["weight_decay"]) for r in seen} == {
        (torch.optim.SGD, 0.03, 0.5, 0.01)}
    _, _, seen = _trial("finetune", {"optimizer": "adamw", "weight_decay": 0.05, "lr": 0.001}, tiny_stream)
    assert {r["opt"] for r in seen} == {torch.optim.AdamW} and {r["weight_decay"] for r in seen} == {0.05}
    assert {r["betas"] for r in seen} == {(0.9, 0.999)}  # Kingma & Ba's defaults


def test_defaults_keep_sgd_momentum_cosine_and_the_protocols_batch_size(tiny_stream):
    cfg, strategy, seen = _trial("finetune", {}, tiny_stream)
    assert cfg == LoopConfig(**{**SEARCH_LOOP, "eval_split": "val", "threads": 1, "device": "cpu"})
    assert {r["opt"] for r in seen} == {torch.optim.SGD} and {r["momentum"] for r in seen} == {0.9}
    assert all(isinstance(r["scheduler"], torch.optim.lr_scheduler.CosineAnnealingLR) for r in seen)
    assert max(r["batch"] for r in seen) == 32


# -- --range: sampled loop knobs reach the trial ---------------------------------------

def test_ranged_loop_and_optimizer_knobs_reach_each_sampled_trial(tiny_stream):
    space, fixed = resolve_space("finetune", ["batch_size=16,32", "optimizer=sgd,adam", "augment=none,crop",
                                              "crop_padding=1:3"], {"lr_schedule": "constant"})
    assert space["batch_size"].choices == (16, 32) and space["optimizer"].choices == ("sgd", "adam")
    assert space["crop_padding"].type == "int"
    for bs, opt in itertools.product(space["batch_size"].choices, space["optimizer"].choices):
        sampled = {"lr": 0.01, "batch_size": bs, "optimizer": opt, "augment": "crop", "crop_padding": 2}
        strategy_params, loop_params = split_params({**fixed, **sampled})
        assert set(loop_params) == {"batch_size", "augment", "crop_padding"}
        cfg, strategy, seen = _trial("finetune", {**fixed, **sampled}, tiny_stream)
        assert (cfg.batch_size, cfg.augment, crop_padding(cfg, strategy.ctx.image_shape)) == (bs, "crop", 2)
        assert strategy.config.optimizer == opt and not hasattr(strategy.config, "batch_size")
        assert {r["opt"] for r in seen} == {torch.optim.SGD if opt == "sgd" else torch.optim.Adam}
        assert max(r["batch"] for r in seen) == bs


def test_multistep_schedule_multiplies_the_lr_by_gamma_at_the_milestone_fractions(tiny_stream):
    """iCaRL's schedule (Rebuffi et al. 2017 §4) as fractions of the phase's steps."""
    space, fixed = resolve_space("finetune", ["lr_gamma=0.05:0.5"], {
        "lr_schedule": "multistep", "lr_milestones": "0.5,0.75", "lr": "0.4", "batch_size": "16"})
    assert fixed["lr_milestones"] == (0.5, 0.75) and set(space) == {"lr_gamma"}
    cfg, strategy, seen = _trial("finetune", {**fixed, "lr_gamma": 0.1}, tiny_stream)  # gamma as if sampled
    for task in range(tiny_stream.num_tasks):
        lrs = [r["lr"] for r in seen if r["task"] == task]
        steps = len(lrs)  # epochs x batches of the task's phase
        assert steps == cfg.epochs * -(-len(tiny_stream.tasks[task].train) // 16)
        m1, m2 = round(0.5 * steps), round(0.75 * steps)
        assert lrs == pytest.approx([0.4] * m1 + [0.04] * (m2 - m1) + [0.004] * (steps - m2))
        assert isinstance(seen[-1]["scheduler"], torch.optim.lr_scheduler.MultiStepLR)


def test_icarl_default_milestones_are_49_and_63_of_70_epochs():
    cfg = StrategyConfig()
    assert [round(f * 70) for f in cfg.lr_milestones] == [49, 63] and cfg.lr_gamma == pytest.approx(1 / 5)


# -- the side phases with Adam chosen ---------------------------------------------------

def test_der_rebalancing_keeps_sgd_and_packnet_retraining_follows_adam(tiny_stream):
    phases: dict[str, list] = {}
    for method, overrides in (("der", {"optimizer": "adam", "lr": 0.001, "balance_epochs": 1}),
                              ("packnet", {"optimizer": "adam", "lr": 0.002, "retrain_lr_scale": 0.5})):
        strategy_params, cfg = trial_configs(overrides, {**SEARCH_LOOP, "epochs": 1})
        strategy = make_strategy(method, strategy_params, tiny_stream, cfg)
        real = strategy.make_optimizer

        def make_optimizer(params, steps, lr=None, schedule=None, optimizer=None, real=real, method=method,
                           strategy=strategy):
            opt = real(params, steps, lr, schedule, optimizer)
            phases.setdefault(method, []).append((type(opt), opt.param_groups[0]["lr"], strategy.scheduler))
            return opt

        strategy.make_optimizer = make_optimizer
        result = run(strategy, tiny_stream, cfg, log=None)
        assert result.status == "completed"
    # DER: every main phase Adam at lr (cosine); every re-balancing SGD at balance_lr, constant.
    assert (torch.optim.Adam, 0.001) in {(o, lr) for o, lr, _ in phases["der"]}
    assert {(o, lr, s) for o, lr, s in phases["der"] if o is not torch.optim.Adam} == {(torch.optim.SGD, 0.01, None)}
    # PackNet: main phases and retraining all Adam; the retraining at lr x scale, constant.
    assert {o for o, _, _ in phases["packnet"]} == {torch.optim.Adam}
    assert (torch.optim.Adam, 0.001, None) in set(phases["packnet"])


# -- the protocol line --------------------------------------------------------------------

def test_epochs_is_protocol_and_needs_search_protocol():
    for ranges, fixed, flag in ((["epochs=2:10"], {}, "--range"), ([], {"epochs": "3"}, "--set")):
        with pytest.raises(ConfigError, match=f"^{flag} epochs: .*add --search-protocol epochs to search it$"):
            resolve_space("icarl", ranges, fixed)
    space, _ = resolve_space("icarl", ["epochs=2:10"], {}, ("epochs",))
    assert (space["epochs"].type, space["epochs"].low, space["epochs"].high) == ("int", 2, 10)
    assert knob_kinds(["epochs", "batch_size", "optimizer", "lr", "memory", "augment"]) == {
        "epochs": "protocol", "batch_size": "training", "optimizer": "training", "lr": "training",
        "memory": "strategy", "augment": "training"}


@pytest.mark.parametrize("ranges, fixed, message", [
    ([], {"optimizer": "rmsprop"}, "icarl: optimizer='rmsprop' must be one of sgd, adam, adamw"),
    ([], {"batch_size": "0"}, "loop: batch_size=0 is below its minimum 2"),
    (["batch_size=0,32"], {}, "loop: batch_size=0 is below its minimum 2"),
    (["augment=none,blur"], {}, "loop: augment='blur' must be one of none, crop, crop\\+flip"),
    (["lr_schedule=cosine,poly"], {}, "lr_schedule='poly' must be one of"),
    (["lr_milestones=0.5,0.7"], {}, "a list knob is not searched"),
    ([], {"lr_milestones": "0.5,1.5"}, "lr_milestones=1.5 is above its maximum 1.0"),
    ([], {"batchsize": "16"}, "unknown key 'batchsize' \\(did you mean 'batch_size'\\?\\)"),
])
def test_bad_knob_values_are_one_line_config_errors(ranges, fixed, message):
    with pytest.raises(ConfigError, match=message):
        resolve_space("icarl", ranges, fixed)


def test_a_config_field_named_like_a_loop_knob_is_refused_at_registration():
    from core import space
    from core.config import bounded
    from strategies.base import Strategy, StrategyDefinitionError, register

    @dataclasses.dataclass
    class ClashConfig(StrategyConfig):
        batch_size: int = bounded(8, min=1, max=64)

    with pytest.raises(StrategyDefinitionError, match="'batch_size' clash with the loop knobs"):
        register(type("Clash", (Strategy,), {"name": "clash-knob", "config_class": ClashConfig,
                                              "search_space": {"lr": space.F(0.01, 0.1)}}))


def test_a_list_knob_reads_back_from_its_trials_csv_form():
    assert check_value(StrategyConfig, "lr_milestones", "[0.5, 0.75]") == (0.5, 0.75)
    with pytest.raises(ConfigError, match="is not a valid list"):
        check_value(StrategyConfig, "lr_milestones", "[0.5,")


# -- rerun.py direct runs take loop knobs ---------------------------------------------------

def test_rerun_direct_run_applies_loop_and_optimizer_knobs(tmp_path, monkeypatch):
    from search import rerun

    monkeypatch.delenv("CL_DATA_DIR", raising=False)
    assert rerun.main(["--method", "finetune", "--dataset", "synthetic", "--epochs", "1", "--threads", "1",
                       "--quiet", "--out", str(tmp_path), "--set", "batch_size=64", "--set", "optimizer=adam",
                       "--set", "lr=0.001"]) == 0
    d = json.loads((tmp_path / "seed0" / "result.json").read_text())
    assert d["status"] == "completed" and d["protocol"]["batch_size"] == 64
    assert d["config"]["optimizer"] == "adam" and "batch_size" not in d["config"]


# -- a method's own default loop knobs (Strategy.loop_defaults) ------------------------------

@pytest.fixture
def finetune_with_batch_16(monkeypatch):
    monkeypatch.setattr(strategies.STRATEGIES["finetune"], "loop_defaults", {"batch_size": 16})


def test_a_method_s_loop_defaults_are_fixed_unless_the_user_sets_ranges_or_flags_them(finetune_with_batch_16):
    from search.spaces import resolve_spaces

    assert resolve_space("finetune", [], {})[1] == {"batch_size": 16}
    assert resolve_space("finetune", [], {"batch_size": "64"})[1] == {"batch_size": 64}
    space, fixed = resolve_space("finetune", ["batch_size=16,64"], {})
    assert fixed == {} and list(space["batch_size"].choices) == [16, 64]
    assert resolve_space("finetune", [], {}, flags_given=("batch_size",))[1] == {}  # --batch-size was given
    spaces, common, own = resolve_spaces(["finetune", "replay"], [], {})
    assert own == {"finetune": {"batch_size": 16}, "replay": {}} and common == {}
    # the trial's split sends it to the loop, where training uses it
    strategy_params, cfg = trial_configs({"lr": 0.05, **own["finetune"]}, SEARCH_LOOP, threads=1, device="cpu")
    assert cfg.batch_size == 16 and "batch_size" not in strategy_params


def test_a_direct_run_uses_the_method_s_loop_defaults_and_a_flag_wins(tmp_path, monkeypatch, finetune_with_batch_16):
    from search import rerun

    monkeypatch.delenv("CL_DATA_DIR", raising=False)
    common = ["--method", "finetune", "--dataset", "synthetic", "--epochs", "1", "--threads", "1", "--quiet"]
    assert rerun.main(common + ["--out", str(tmp_path / "own")]) == 0
    assert rerun.main(common + ["--batch-size", "64", "--out", str(tmp_path / "flag")]) == 0
    own, flag = (json.loads((tmp_path / d / "seed0" / "result.json").read_text()) for d in ("own", "flag"))
    assert own["protocol"]["batch_size"] == 16 and flag["protocol"]["batch_size"] == 64


def test_icarl_searches_without_augmentation_unless_asked_and_the_dry_run_says_why(tmp_path, capsys):
    from search.run import main

    common = ["--method", "icarl", "--trials", "2", "--results-root", str(tmp_path), "--dry-run"]
    assert main(common) == 0  # digits: the protocol's augmentation is crop
    assert "\nfixed: augment=none (icarl's default, instead of crop)\n" in capsys.readouterr().out
    assert main(common + ["--augment", "crop"]) == 0
    assert "\nfixed: nothing (method defaults)\n" in capsys.readouterr().out


@pytest.mark.parametrize("defaults, message", [
    ({"epochs": 3}, "may set only the training loop knobs batch_size, augment, crop_padding"),
    ({"augment": "flip"}, r"loop_defaults\['augment'\]"),
])
def test_loop_defaults_beyond_the_training_loop_knobs_are_refused_at_registration(defaults, message):
    from core import space
    from strategies.base import Strategy, StrategyDefinitionError, register

    with pytest.raises(StrategyDefinitionError, match=message):
        register(type("LoopDefaults", (Strategy,), {"name": "loop-defaults", "config_class": StrategyConfig,
                                                    "search_space": {"lr": space.F(0.01, 0.1)},
                                                    "loop_defaults": defaults}))
    assert "loop-defaults" not in strategies.STRATEGIES


# -- a real search ---------------------------------------------------------------------------

@pytest.mark.slow
def test_tiny_search_samples_loop_knobs_and_rerun_trains_what_the_trial_trained(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("CL_DATA_DIR", None)
    cmd = [sys.executable, str(ROOT / "search" / "run.py"), "--dataset", "synthetic", "--epochs", "1",
           "--cpus-per-trial", "1", "--results-root", str(tmp_path), "--name", "knobs", "--method", "icarl",
           "--trials", "2", "--set", "memory=20", "--range", "batch_size=16,32", "--range", "optimizer=sgd,adam",
           # Off: whether a 1-epoch synthetic trial learns is not what this checks, and --pick needs a completed one.
           "--min-plasticity-margin", "0", "--confirm-seeds", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = tmp_path / "knobs"
    spec = json.loads((out / "search.json").read_text())
    assert spec["space"]["batch_size"] == {"type": "categorical", "choices": [16, 32]}
    assert spec["knob_kinds"]["batch_size"] == "training" and spec["knob_kinds"]["memory"] == "strategy"
    assert spec["search_protocol"] == [] and spec["loop"]["batch_size"] == 32  # the synthetic default
    trials = sorted((out / "trials").glob("*/result.json"))
    assert len(trials) == 2
    for path in trials:
        r = json.loads(path.read_text())
        assert r["status"] == "completed"
        assert r["params"]["batch_size"] in (16, 32) and r["params"]["optimizer"] in ("sgd", "adam")
        assert r["protocol"]["batch_size"] == r["params"]["batch_size"]  # the trial's loop config
        assert r["config"]["optimizer"] == r["params"]["optimizer"] and r["config"]["memory"] == 20
        assert r["timings"][0]["images_trained"] > 0
    report = (out / "report.md").read_text() if (out / "report.md").exists() else (out / "report.html").read_text()
    assert "protocol (fixed): dataset synthetic" in report and "searched training knobs:" in report
    # The rerun of a trial trains with that trial's batch size and optimiser.
    trial = json.loads(trials[0].read_text())
    rerun = subprocess.run([sys.executable, str(ROOT / "search" / "rerun.py"), str(out), "--pick", trial["trial_id"],
                            "--seeds", "1", "--no-baselines", "--threads", "1", "--quiet", "--out", str(tmp_path / "rr")],
                           capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    (again,) = (tmp_path / "rr" / "rerun").glob("*/seed0/result.json")
    d = json.loads(again.read_text())
    assert d["protocol"]["batch_size"] == trial["params"]["batch_size"] and d["eval_split"] == "test"
    assert d["config"]["optimizer"] == trial["params"]["optimizer"]
