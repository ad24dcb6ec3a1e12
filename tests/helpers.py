"""Small helpers shared by the strategy tests (the fixtures are in conftest.py)."""
from __future__ import annotations

import math

from strategies.loop import LoopConfig


def tiny_loop_config(**overrides) -> LoopConfig:
    """The loop settings of the synthetic-stream tests: 2 epochs, batch 32, no
    augmentation, scored on the validation split, seed 0, one thread (tiny
    models train fastest on one, and results do not depend on the machine)."""
    base = dict(epochs=2, batch_size=32, augment="none", eval_split="val", seed=0, threads=1)
    base.update(overrides)
    return LoopConfig(**base)


def assert_lower_triangular(result, num_tasks: int) -> None:
    """A completed run's class-IL and task-IL matrices are num_tasks x num_tasks,
    accuracies in [0, 1] on and below the diagonal, None above it. A
    task-incremental-only strategy (PackNet) has NaN class-IL entries instead:
    it cannot be measured class-incrementally."""
    assert result.status == "completed"
    for matrix, name in ((result.acc_class_il, "class_il"), (result.acc_task_il, "task_il")):
        assert len(matrix) == num_tasks and all(len(row) == num_tasks for row in matrix)
        unmeasured = name == "class_il" and result.task_incremental_only
        for i in range(num_tasks):
            for j in range(num_tasks):
                if j > i:
                    assert matrix[i][j] is None
                elif unmeasured:
                    assert math.isnan(matrix[i][j])
                else:
                    assert 0.0 <= matrix[i][j] <= 1.0
