"""Continual-learning strategies, the networks and the one training loop.

Importing the package registers every strategy in ``STRATEGIES`` (name -> class):
the import list below is the project's one registry. A strategy kept outside the
project registers when its module is imported (``strategies/plugins.py``,
``--strategy-module`` on the command-line tools).
"""
from strategies.base import STRATEGIES, RunContext, Strategy, StrategyConfig  # noqa: F401
from strategies import finetune, joint, replay, icarl, lwf, ewc, gdumb, packnet, gem, der  # noqa: F401  (registration)
