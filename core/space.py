"""Search distributions: what a strategy declares as its search space.

A ``Dist`` is a one-dimensional distribution over one field of a typed config:
``F(low, high, log)`` a float, ``I(low, high, log)`` an int, ``C(a, b, ...)`` a
categorical. It serialises to JSON (``search.json`` stores the space searched)
and ``search.spaces.to_optuna`` converts it to the matching Optuna distribution
(defining a space needs no Optuna).
"""
from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Dist:
    """A one-dimensional search distribution: float, int or categorical."""

    type: str  # "float" | "int" | "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None

    def to_json(self) -> dict[str, Any]:
        if self.type == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        return {"type": self.type, "low": self.low, "high": self.high, "log": self.log}


def F(low: float, high: float, log: bool = False) -> Dist:
    return Dist("float", low, high, log)


def I(low: int, high: int, log: bool = False) -> Dist:
    return Dist("int", low, high, log)


def C(*choices: Any) -> Dist:
    return Dist("categorical", choices=tuple(choices))
