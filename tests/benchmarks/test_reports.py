"""Every benchmark report agrees with the data beside it.

Each ``benchmarks/results/NAME/README.md`` names the command that made it, links only files that exist, and
every row of its tables that names a row of a CSV in the same folder shows that CSV's figures: the value
itself (one run), or the mean and the 95 % Student-t half-width over the seeds (several runs), at the
precision the table prints.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
REPORTS = sorted(RESULTS.rglob("README.md"))
NUMBER = re.compile(r"^([+-]?[\d,]*\.?\d+)(?:\s*±\s*([\d,]*\.?\d+))?$")
LABEL_COLUMNS = ("method", "run", "variant", "algo", "order")
#: a table's column name -> the CSV's, where a report prints a friendlier heading
ALIASES = {"env-steps/s": ("value", "steps_per_s"), "x SB3": ("ratio_to_sb3",),
           "env-steps per CPU-s": ("steps_per_cpu_s",)}
#: a pivoted heading such as "k=5 A@1": the CSV's key column, then the figure's column
PIVOT = re.compile(r"^k=(\d+) (.+)$")
PIVOT_KEY = "shots"
#: a "run" cell naming one repeat of one seed
RUN = re.compile(r"^seed (\d+), run (\d+)$")


def _tables(text: str) -> list[list[list[str]]]:
    """The markdown tables of ``text``: a list of rows (header first, separator dropped) of stripped cells."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def _csvs(folder: Path) -> list[list[dict[str, str]]]:
    out = []
    for path in sorted(folder.glob("*.csv")):
        with open(path, newline="") as f:
            out.append(list(csv.DictReader(f)))
    return [rows for rows in out if rows]


def _number(cell: str) -> tuple[float, float | None, int] | None:
    """(value, half-width or None, decimals printed) of a cell like ``91.4 ± 0.2``, ``+3.7``, ``3,506``."""
    m = NUMBER.match(cell.strip())
    if not m:
        return None
    value = m.group(1).replace(",", "")
    decimals = len(value.split(".")[1]) if "." in value else 0
    half = float(m.group(2).replace(",", "")) if m.group(2) else None
    return float(value), half, decimals


def _labels(cell: str) -> set[str]:
    """The names a table's first cell may give a CSV row: the cell, and every name in backticks in it."""
    return {cell, *re.findall(r"`([^`]+)`", cell)}


def _summary(values: list[float]) -> tuple[float, float]:
    """Mean and 95 % t half-width over seeds (0 for one value)."""
    a = np.asarray(values, dtype=float)
    if a.size < 2:
        return float(a.mean()), 0.0
    return float(a.mean()), float(stats.t.ppf(0.975, a.size - 1) * a.std(ddof=1) / np.sqrt(a.size))


def _agrees(shown: tuple[float, float | None, int], value: float, half: float) -> bool:
    number, shown_half, decimals = shown
    tol = 0.5 * 10 ** -decimals + 1e-9  # the table rounds to what it prints
    if abs(number - value) > tol:
        return False
    return shown_half is None or abs(shown_half - half) <= tol


def _check_table(table: list[list[str]], rows: list[dict[str, str]]) -> tuple[int, list[str]]:
    """(rows checked, disagreements) of one README table against one CSV."""
    header, body = table[0], table[1:]
    label_key = next((k for k in LABEL_COLUMNS if k in rows[0]), next(iter(rows[0])))
    # each heading -> (its CSV column, extra key filters); the rest of the table's columns are not in the CSV
    columns: dict[str, tuple[str, dict[str, str]]] = {}
    for c in header[1:]:
        pivot = PIVOT.match(c)
        if pivot and PIVOT_KEY in rows[0] and pivot.group(2) in rows[0]:
            columns[c] = (pivot.group(2), {PIVOT_KEY: pivot.group(1)})
        elif c not in LABEL_COLUMNS:
            column = next((a for a in (c, *ALIASES.get(c, ())) if a in rows[0]), None)
            if column is not None:
                columns[c] = (column, {})
    numeric = {c: v for c, v in columns.items() if _number(rows[0][v[0]]) is not None and v[0] != "seed"}
    if not numeric:
        return 0, []
    # further key columns a table prints beside the label (the gallery size, the path, the retriever)
    keys = [c for c in columns if c not in numeric or c in ("gallery_size", "N", "P")]
    # the label is the table's column named like the CSV's label column, else its first column
    label_at = header.index(label_key) if label_key in header else 0
    checked, bad = 0, []
    for line in body:
        if len(line) != len(header):
            continue
        cells = dict(zip(header, line))
        names = _labels(line[label_at])
        run = RUN.match(cells.get("run", ""))  # "seed 0, run 2": one repeat of one seed
        if "run" in cells and label_at != 0 and not run:
            continue  # a summary row over the runs
        row_keys = {"seed": run.group(1), "repeat": str(int(run.group(2)) - 1)} if run else {}
        matched = False
        for c, (column, extra) in numeric.items():
            if c in keys or _number(cells[c]) is None:
                continue
            group = [r for r in rows if r[label_key] in names
                     and all(_same(r[columns[k][0]], cells[k]) for k in keys)
                     and all(_same(r[k], v) for k, v in (extra | row_keys).items() if k in r)]
            # one row per seed, or one row: a CSV with further keys (e.g. per sketch fraction) is not this table
            if not group or len({r.get("seed", i) for i, r in enumerate(group)}) != len(group) or (
                    "seed" not in group[0] and len(group) > 1):
                continue
            values = [float(r[column]) for r in group if r[column] not in ("", "nan")]
            if not values:
                continue
            matched = True
            ci = f"{column}_ci95"
            mean, half = (values[0], float(group[0][ci])) if len(group) == 1 and ci in group[0] else _summary(values)
            if not _agrees(_number(cells[c]), mean, half):
                bad.append(f"{line[label_at]!r} {c}: the table shows {cells[c]!r}, the CSV gives {mean:.4f} ± "
                           f"{half:.4f} over {len(values)} row(s)")
        checked += matched
    return checked, bad


def _same(csv_value: str, cell: str) -> bool:
    a, b = _number(csv_value), _number(cell)
    if a is not None and b is not None:
        return abs(a[0] - b[0]) < 1e-9
    return csv_value.strip() == cell.strip().strip("`")


def test_there_is_a_report_beside_every_result():
    folders = {p.parent for p in RESULTS.rglob("*") if p.is_file() and p.name != "README.md"}
    missing = [str(f.relative_to(RESULTS)) for f in folders if not (f / "README.md").exists()
               and not (f.parent / "README.md").exists()]
    assert not missing, f"result folders without a README.md: {missing}"
    assert len(REPORTS) >= 10


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: str(p.parent.relative_to(RESULTS)))
def test_report_names_its_command_and_links_only_files_that_exist(report: Path):
    text = report.read_text()
    assert text.startswith("# "), "a report starts with its title"
    assert re.search(r"`(python -m benchmarks\.\w+|sketch-env )[^`]*`", text), "a report names its command"
    for target in re.findall(r"\]\(([^)#\s]+)\)", text):
        if "://" in target:
            continue
        assert (report.parent / target).exists(), f"{report}: links {target}, which does not exist"
    for word in ("issue", "session"):
        assert not re.search(rf"\b{word}s?\b", text, re.IGNORECASE), f"{report}: speaks of {word}s"


@pytest.mark.parametrize("report", [r for r in REPORTS if any(r.parent.glob("*.csv"))],
                         ids=lambda p: str(p.parent.relative_to(RESULTS)))
def test_report_tables_show_the_figures_of_the_csv_beside_them(report: Path):
    tables, sources = _tables(report.read_text()), _csvs(report.parent)
    checked, bad = 0, []
    for table in tables:
        for rows in sources:
            n, errors = _check_table(table, rows)
            checked += n
            bad += errors
    assert not bad, f"{report}:\n" + "\n".join(bad)
    if any(len(t) > 1 for t in tables):
        assert checked, f"{report}: no table row could be matched to the CSV beside it"


def test_the_checker_catches_a_wrong_figure():
    rows = [{"run": "ppo", "seed": "0", "m@A": "90.0"}, {"run": "ppo", "seed": "1", "m@A": "92.0"}]
    mean, half = _summary([90.0, 92.0])
    good = [["method", "m@A"], ["PPO (`ppo`)", f"{mean:.1f} ± {half:.1f}"]]
    assert _check_table(good, rows) == (1, [])
    wrong = [["method", "m@A"], ["PPO (`ppo`)", f"{mean + 0.2:.1f} ± {half:.1f}"]]
    assert _check_table(wrong, rows)[1]
    narrow = [["method", "m@A"], ["PPO (`ppo`)", f"{mean:.1f} ± {half / 2:.1f}"]]
    assert _check_table(narrow, rows)[1]


def test_a_report_names_the_processor_it_ran_on(tmp_path, monkeypatch):
    """Training repeats bit for bit on one machine only, so the report header names the processor it ran on."""
    import io
    import os
    import platform

    from benchmarks import common
    from sketch_env.device import machine_name

    real_open = open

    def fake_open(path, *args, **kwargs):
        if str(path) == "/proc/cpuinfo":
            return io.StringIO("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD  EPYC 9R14\n")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    assert machine_name() == f"AMD EPYC 9R14 ({platform.machine()})"
    text = common.write_readme(tmp_path, "t", "python -m benchmarks.x", "body", seconds=60).read_text()
    assert f"AMD EPYC 9R14 ({platform.machine()}), {os.cpu_count()} CPUs" in text
