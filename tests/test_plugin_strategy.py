"""A strategy is one file: its config, its search space and ``@register``.

- fast: ``register`` refuses a strategy class that could not be searched (no
  space of its own, a space over unknown or wrongly typed fields, bounds its
  config rejects, a name already taken), with a message that says what to fix.
"""
from __future__ import annotations

import dataclasses

import pytest

import strategies  # noqa: F401  (the built-in strategies, for the name clash)
from core import space
from core.config import bounded
from strategies.base import STRATEGIES, Strategy, StrategyConfig, StrategyDefinitionError, register
from strategies.finetune import Finetune


@dataclasses.dataclass
class KnobConfig(StrategyConfig):
    smoothing: float = bounded(0.1, min=0.0, max=0.5, help="a test knob")
    width: int = bounded(4, min=1, max=64, help="another test knob")


def _define(name="registry-test", base=Strategy, config=KnobConfig, **attrs):
    return type("Defined", (base,), {"name": name, "config_class": config, "__module__": __name__, **attrs})


@pytest.mark.parametrize("attrs, base, message", [
    ({}, Strategy, "declares no search_space"),
    ({}, Finetune, "declares no search_space"),  # an inherited space is not enough: the class must state its own
    ({"search_space": {}}, Strategy, "non-empty dict"),
    ({"search_space": {"lr": space.F(1e-3, 1.0, log=True), "smoothnig": space.F(0.0, 0.3)}}, Strategy,
     r"search_space names 'smoothnig', not fields of KnobConfig"),
    ({"search_space": {"smoothing": (0.0, 0.3)}}, Strategy, "must be a core.space"),
    ({"search_space": {"smoothing": space.F(0.0, 0.9)}}, Strategy, "above its maximum 0.5"),
    ({"search_space": {"width": space.F(1.0, 8.0)}}, Strategy, "float range over an int field"),
    ({"search_space": {"smoothing": space.F(0.0, 0.3, log=True)}}, Strategy, "log scale, low must be > 0"),
    ({"search_space": {"smoothing": space.F(0.3, 0.1)}}, Strategy, "low must be below high"),
    ({"search_space": {"lr_schedule": space.C("cosine")}}, Strategy, "at least two distinct choices"),
])
def test_register_refuses_a_strategy_without_a_valid_space_of_its_own(attrs, base, message):
    cls = _define(base=base, **attrs)
    with pytest.raises(StrategyDefinitionError, match=message):
        register(cls)
    assert "registry-test" not in STRATEGIES


def test_register_refuses_a_name_another_class_holds_and_accepts_a_valid_strategy():
    with pytest.raises(StrategyDefinitionError, match="'replay' is already registered by strategies.replay.Replay"):
        register(_define(name="replay", search_space={"smoothing": space.F(0.0, 0.3)}))
    assert STRATEGIES["replay"].__module__ == "strategies.replay"
    cls = _define(search_space={"smoothing": space.F(0.0, 0.3), "width": space.I(1, 8, log=True)})
    try:
        assert register(cls) is cls and STRATEGIES["registry-test"] is cls
        from search.spaces import method_space
        assert method_space("registry-test") == {"smoothing": space.F(0.0, 0.3), "width": space.I(1, 8, log=True)}
    finally:
        STRATEGIES.pop("registry-test", None)

