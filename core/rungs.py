"""Where an early-stopping scheduler compares its trials (successive halving,
Jamieson & Talwalkar 2016; ASHA, Li et al. 2020): after ``grace``,
``grace * factor``, ``grace * factor**2``, ... tasks, below the stream's last
task. Used by the scheduler (search/mo_asha.py) and by the report, which draws
the same rungs; it lives here so neither has to import the other.
"""
from __future__ import annotations


def rung_tasks(num_tasks: int, grace: int, factor: int) -> list[int]:
    """Tasks done at each rung, for a stream of ``num_tasks`` tasks."""
    if grace < 1 or factor < 2:
        raise ValueError(f"need grace >= 1 and reduction factor >= 2, got {grace} and {factor}")
    rungs, t = [], grace
    while t < num_tasks:
        rungs.append(t)
        t *= factor
    return rungs
