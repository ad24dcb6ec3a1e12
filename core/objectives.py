"""The one table of the metrics a run reports and a search can optimise.

Each metric is defined in ``core.metrics`` (papers and equations there); this
table says, once, how the rest of the project treats it: the direction a search
optimises it in, its worst possible value (the reference corner of a front's
hypervolume, so fronts of different searches compare against the same point),
its label in reports and whether it is a fraction shown as a percentage.
Everything that lists metrics (the trials table, Tune reports, the final table,
the CLI's printout, the report's axes) iterates over this table.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    direction: str      # "max" or "min": what a search optimises
    worst: float | None  # worst possible value (hypervolume reference); None: unbounded
    label: str
    percent: bool       # a fraction in [0, 1], shown as a percentage


# The summary metrics of one accuracy matrix (``core.metrics.summarize``), in order.
SUMMARY_METRICS: tuple[Metric, ...] = (
    Metric("final_acc", "max", 0.0, "final accuracy (macro)", True),
    Metric("final_acc_pooled", "max", 0.0, "final accuracy (pooled)", True),
    Metric("avg_inc_acc", "max", 0.0, "average incremental accuracy", True),
    Metric("forgetting", "min", 1.0, "average forgetting", True),
    Metric("bwt", "max", -1.0, "backward transfer", True),
    Metric("plasticity", "max", 0.0, "plasticity", True),
)

# Objectives a search can use: the summary metrics plus the memory budget.
MEMORY = Metric("memory", "min", None, "memory (exemplars)", False)
OBJECTIVES: dict[str, Metric] = {m.name: m for m in (*SUMMARY_METRICS, MEMORY)}

SUMMARY_KEYS: tuple[str, ...] = tuple(m.name for m in SUMMARY_METRICS)
DIRECTIONS: dict[str, str] = {name: m.direction for name, m in OBJECTIVES.items()}
WORST_VALUE: dict[str, float] = {m.name: m.worst for m in SUMMARY_METRICS}
LABELS: dict[str, str] = {name: m.label for name, m in OBJECTIVES.items()}
