"""Scripts that reproduce the papers' tables and plots on this package: ``python -m benchmarks.NAME``.

Each module is one benchmark (its docstring gives the command and what it writes under
``benchmarks/results/NAME/``); :mod:`benchmarks.common` holds what they share: intervals, the job runner,
thread settings for child processes.
"""
