"""The fuzz suite's bounded profile (``benchmarks.fuzz``): every reader of a file from someone else, the CLI's
run configurations, the env's arguments and actions, fed their valid seeds, their crafted attacks and a few
fuzzed inputs each. Every input loads or is refused with the package's error; none raises anything else or
allocates beyond the bound. ``python -m benchmarks.fuzz`` runs the long profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.fuzz import MEMORY_BOUND, TARGETS, main, run_target

pytestmark = pytest.mark.usefixtures("env_cache")

#: fuzzed inputs per target in CI (seconds in all); the attacks and seeds come on top
CI_EXAMPLES = {"store": 4, "agent": 8, "checkpoint": 10}


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_input_loads_or_is_refused_by_the_package(name, tmp_path):
    import tracemalloc

    tracemalloc.start()
    try:
        outcomes = run_target(TARGETS[name], CI_EXAMPLES.get(name, 25), Path(tmp_path))
    finally:
        tracemalloc.stop()
    violations = {k: v for k, v in outcomes.items() if k[1].startswith("VIOLATION")}
    assert not violations, violations
    seeds = [o for (kind, o), _ in outcomes.items() if kind == "valid seed"]
    assert seeds and all(o == "loaded" for o in seeds)  # the harness does load valid input
    for (kind, outcome), _ in outcomes.items():
        if kind == "attack: empty array, protocol 2":  # once a false alarm: it is no unsafe pickle
            assert outcome != "refused: UnsafePickleError"
        elif kind.startswith("attack"):
            assert outcome.startswith("refused"), (kind, outcome)
    assert MEMORY_BOUND <= 256 << 20


def test_the_command_writes_its_report(tmp_path):
    """``python -m benchmarks.fuzz --out DIR`` writes the table and the report (README.md) there."""
    assert main(["--examples", "2", "--targets", "yaml", "action", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "README.md").read_text()
    assert "`python -m benchmarks.fuzz --examples 2 --targets yaml action" in report
    assert "| yaml |" in report and "| action |" in report and "0 violations" in report
    assert (tmp_path / "fuzz.md").is_file()
