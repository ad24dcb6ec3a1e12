"""The leaf package: what datasets/, strategies/, search/ and analysis/ all share.

Nothing here imports another package of the project, and nothing here imports
torch or Ray, so the command-line front ends can validate their arguments with it
before any heavy import. Imports run one way (docs/ARCHITECTURE.md):

    datasets, strategies, search, analysis  ->  core
    strategies -> datasets;  search -> strategies, datasets, analysis

- ``core.errors``: ``UserError``, the base of every one-line user-facing error;
- ``core.config``: typed dataclass configs with ``bounded()`` validation;
- ``core.metrics``: the continual-learning metrics of an accuracy matrix;
- ``core.objectives``: the one table of metrics/objectives (direction, worst
  value, label);
- ``core.result``: the result record of one run and the file-format tags;
- ``core.files``: atomic writes;
- ``core.space``: search distributions (a strategy declares its space with them);
- ``core.rungs``: where early-stopping schedulers compare trials;
- ``core.cli``: the command-line error printer (one line, exit 2).
"""
