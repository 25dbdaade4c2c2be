"""benchmarks.executor: a grid of runs on the local pool and on a real local Ray cluster, resumed by run
folder, with a worker killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.executor import (
    RESULT_FILE,
    ExecutorOptions,
    GridRun,
    Input,
    read_result,
    run_grid,
)
from sketch_env.errors import DataFormatError
from sketch_env.runs import RunConfigError

# -- runs (module-level: Ray sends them to its workers by reference) -------------------------------------------


def square_run(folder: Path, x: int, data: Path | None = None) -> dict:
    """Writes a file in its folder, counts its calls there, reads an input file when given one."""
    calls = folder / "calls.txt"
    calls.write_text(str(int(calls.read_text()) + 1 if calls.exists() else 1))
    (folder / "out.txt").write_text(f"{x * x}\n")
    extra = float(np.load(data)["w"].sum()) if data is not None else 0.0
    return {"x": x, "square": x * x, "extra": extra, "ranks": np.arange(x, dtype=np.int64)}


def killed_once_run(folder: Path, shared: str) -> dict:
    """First attempt: writes a partial file, says its pid, waits to be killed; the retry finishes."""
    marker = Path(shared) / "attempts"
    attempt = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(attempt))
    if attempt == 1:
        (folder / "partial-from-the-killed-attempt.txt").write_text("half a run")
        (Path(shared) / "pid").write_text(str(os.getpid()))
        time.sleep(120)
    (folder / "result.txt").write_text(f"attempt {attempt}")
    return {"attempt": attempt}


def _grid(tmp: Path, xs=(1, 2, 3), **kwargs) -> list[GridRun]:
    return [GridRun(key=f"x{x}", folder=tmp / f"x{x}", fn=square_run, kwargs={"x": x, **kwargs}) for x in xs]


# -- the local pool ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_local_grid_runs_each_run_in_its_folder_and_stores_its_result(tmp_path, jobs):
    results = run_grid(_grid(tmp_path), ExecutorOptions(jobs=jobs), quiet=True)
    assert [r["square"] for r in results] == [1, 4, 9]
    assert (tmp_path / "x3" / "out.txt").read_text() == "9\n"
    done, stored = read_result(tmp_path / "x2", "x2")
    assert done and stored["square"] == 4 and stored["ranks"].dtype == np.int64 and stored["ranks"].tolist() == [0, 1]


def test_a_restarted_grid_skips_finished_runs_and_redoes_unfinished_ones(tmp_path):
    run_grid(_grid(tmp_path, xs=(1, 2)), quiet=True)
    (tmp_path / "x2" / RESULT_FILE).unlink()  # x2 stopped before it finished
    results = run_grid(_grid(tmp_path, xs=(1, 2, 3)), quiet=True)
    assert [r["square"] for r in results] == [1, 4, 9]
    calls = {x: int((tmp_path / f"x{x}" / "calls.txt").read_text()) for x in (1, 2, 3)}
    assert calls == {1: 1, 2: 2, 3: 1}


GRID_SCRIPT = """
import sys
from pathlib import Path

from benchmarks.executor import ExecutorOptions, GridRun, run_grid


def count_run(folder, x):
    calls = folder / "calls.txt"
    calls.write_text(str(int(calls.read_text()) + 1 if calls.exists() else 1))
    return {"x": x}


if __name__ == "__main__":
    out, jobs = Path(sys.argv[1]), int(sys.argv[2])
    runs = [GridRun(key=f"x{x}", folder=out / f"x{x}", fn=count_run, kwargs={"x": x}) for x in (1, 2)]
    print(run_grid(runs, ExecutorOptions(jobs=jobs, processes=True), quiet=True))
"""


def test_a_grid_run_as_a_script_resumes_with_another_jobs_count(tmp_path):
    # run as ``python -m``, the runs' module is __main__ in the driver and __mp_main__ in a spawned worker,
    # which stores the result: the stored configuration must still match on the next call
    import subprocess
    import sys

    (tmp_path / "gridscript.py").write_text(GRID_SCRIPT)
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).parents[2])])}
    for jobs in (2, 1):
        done = subprocess.run([sys.executable, "-m", "gridscript", str(tmp_path / "grid"), str(jobs)], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "[{'x': 1}, {'x': 2}]" in done.stdout
    assert [(tmp_path / "grid" / f"x{x}" / "calls.txt").read_text() for x in (1, 2)] == ["1", "1"]
    stored = json.loads((tmp_path / "grid" / "x1" / RESULT_FILE).read_text())
    assert stored["config"]["fn"] == "gridscript.count_run"


def test_a_result_stored_under_the_script_module_name_still_matches(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    config = {"fn": "benchmarks.recipe.variant_run", "kwargs.seed": 0}
    (folder / RESULT_FILE).write_text(json.dumps({"key": "r", "result": 1,
                                                  "config": config | {"fn": "__mp_main__.variant_run"}}))
    assert read_result(folder, "r", config) == (True, 1)
    with pytest.raises(RunConfigError, match="fn"):
        read_result(folder, "r", config | {"fn": "benchmarks.recipe.other_run"})


def test_a_stored_result_is_read_without_running_code_and_checked(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / RESULT_FILE).write_text(json.dumps({"key": "other", "result": 1}))
    with pytest.raises(DataFormatError, match="holds the result of 'other'"):
        read_result(folder, "r")
    (folder / RESULT_FILE).write_text(json.dumps({"key": "r", "result": {"__ndarray__": [1], "dtype": "|O",
                                                                           "shape": [1]}}))
    with pytest.raises(DataFormatError, match="dtype object"):
        read_result(folder, "r")
    (folder / RESULT_FILE).write_text("{not json")
    with pytest.raises(DataFormatError, match="not a stored grid result"):
        read_result(folder, "r")


def test_a_finished_run_of_another_configuration_is_refused_not_reused(tmp_path):
    import argparse

    from sketch_env.runs import RunConfigError

    def grid(steps: int, jobs: int) -> list[GridRun]:
        args = argparse.Namespace(steps=steps, jobs=jobs, seeds=[0, 1])
        return [GridRun(key="x3", folder=tmp_path / "x3", fn=_square_with_args,
                        kwargs={"x": 3, "data": None, "args": args})]

    run_grid(grid(10, 1), quiet=True)
    # another --jobs says how the grid runs, not what the run computes: the stored result is read back
    assert run_grid(grid(10, 2), quiet=True)[0]["square"] == 9
    with pytest.raises(RunConfigError, match="kwargs.args.steps: 10 there, 20 now"):
        run_grid(grid(20, 1), quiet=True)


def _square_with_args(folder: Path, x: int, data: Path | None, args) -> dict:  # noqa: ARG001 - args: its config
    return square_run(folder, x, data)


def test_grid_keys_must_be_unique(tmp_path):
    grid = _grid(tmp_path, xs=(1,)) * 2
    with pytest.raises(ValueError, match="unique"):
        run_grid(grid, quiet=True)


# -- Ray ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    try:
        import ray
    except ImportError:
        if os.environ.get("SKETCH_ENV_REQUIRE_RAY"):
            pytest.fail("SKETCH_ENV_REQUIRE_RAY is set, but ray is not installed")
        pytest.skip("ray is not installed (pip install -e '.[ray]')")
    os.environ.setdefault("RAY_worker_niceness", "0")  # as benchmarks.executor starts a local instance
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_a_ray_grid_gives_the_local_results_and_brings_the_folders_back(ray_cluster, tmp_path):
    data = tmp_path / "inputs" / "weights.npz"
    data.parent.mkdir()
    np.savez(data, w=np.arange(4.0))
    local = run_grid(_grid(tmp_path / "local", data=Input(str(data))), quiet=True)
    remote = run_grid(_grid(tmp_path / "ray", data=Input(str(data))), ExecutorOptions(executor="ray"), quiet=True)
    assert [(r["square"], r["extra"], r["ranks"].tolist()) for r in remote] == [
        (r["square"], r["extra"], r["ranks"].tolist()) for r in local]
    assert remote[0]["extra"] == 6.0  # the input file reached the worker
    for x in (1, 2, 3):
        assert (tmp_path / "ray" / f"x{x}" / "out.txt").read_text() == f"{x * x}\n"
        assert read_result(tmp_path / "ray" / f"x{x}", f"x{x}")[0]
    # stopped and restarted on the other executor: nothing runs again
    again = run_grid(_grid(tmp_path / "ray", data=Input(str(data))), quiet=True)
    assert [r["square"] for r in again] == [1, 4, 9]
    assert (tmp_path / "ray" / "x1" / "calls.txt").read_text() == "1"


def test_an_unfinished_run_resumes_on_ray_from_its_folder(ray_cluster, tmp_path):
    folder = tmp_path / "x5"
    folder.mkdir()
    (folder / "calls.txt").write_text("4")  # what an earlier, stopped attempt left
    (result,) = run_grid(_grid(tmp_path, xs=(5,)), ExecutorOptions(executor="ray"), quiet=True)
    assert result["square"] == 25 and (folder / "calls.txt").read_text() == "5"


def test_a_worker_killed_mid_run_is_retried_and_nothing_of_it_is_kept(ray_cluster, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()

    def kill_when_ready() -> None:
        pid = shared / "pid"
        deadline = time.monotonic() + 60
        while not pid.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        os.kill(int(pid.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_when_ready, daemon=True)
    killer.start()
    grid = [GridRun(key="victim", folder=tmp_path / "victim", fn=killed_once_run, kwargs={"shared": str(shared)}),
            *_grid(tmp_path, xs=(2,))]
    results = run_grid(grid, ExecutorOptions(executor="ray", retries=2), quiet=True)
    killer.join(5)
    assert results[0] == {"attempt": 2} and results[1]["square"] == 4
    files = sorted(p.name for p in (tmp_path / "victim").iterdir())
    assert files == [RESULT_FILE, "result.txt"]  # the killed attempt's partial file never came back


def test_rl_methods_on_ray_gives_the_same_table_as_the_local_pool(ray_cluster, tmp_path, synthetic_checkpoint):
    """A real grid: `benchmarks.rl_methods`, one method x two seeds of tiny runs on synthetic data, on each
    executor; the per-run figures agree."""
    import csv

    from benchmarks.rl_methods import main

    def run(executor: str) -> dict:
        out = tmp_path / executor
        code = main(["--dataset", "synthetic", "--backend", synthetic_checkpoint, "--methods", "ppo-a-clip",
                     "--seeds", "0", "1", "--timesteps", "320", "--eval-every", "320", "--hp", "n_envs=8",
                     "--hp", "batch_size=40", "--jobs", "2", "--executor", executor,
                     "--runs", str(out / "runs"), "--out", str(out / "report")])
        assert code == 0
        with open(out / "report" / "rl_methods.csv") as f:
            return {r["seed"]: {k: r[k] for k in ("m@A", "m@B", "A@5", "A@10", "env_steps")} for r in csv.DictReader(f)}

    local, remote = run("local"), run("ray")
    assert set(local) == {"0", "1"} and remote == local
