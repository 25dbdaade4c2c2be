"""Running a benchmark's grid of independent runs: on this machine (the default), or as tasks on a Ray cluster.

Every benchmark builds its grid as :class:`GridRun` items and hands them to :func:`run_grid`, with the options
:func:`add_executor_args` puts on its command line::

    --executor local               # the default: a pool of --jobs processes (or threads), no new dependency
    --executor ray --address auto  # each run one Ray task (``pip install -e ".[ray]"``); ray://HOST:10001 too

A run is a function ``fn(folder, **kwargs)`` that writes only inside its run folder and returns its result
(plain values and NumPy arrays). **The run folder is the unit of resumption**: when ``fn`` returns, the
executor stores its result in ``folder/grid-result.json`` (JSON; arrays tagged with their dtype and shape, so
reading it back runs nothing) with the run's configuration (:meth:`GridRun.config`); a grid started again,
on either executor, returns those results (or refuses a folder stored by another configuration, naming what
differs) and runs only the others, each ``fn`` resuming from what its folder holds (the trainers' ``last.pt``
/ ``last.zip``).

On Ray no shared file system is assumed. The driver packs the run folder as it stands (an unfinished run's
checkpoints) and every file the run reads that is named by an :class:`Input` (a backend checkpoint, say)
into the task's arguments, so they travel as Ray objects; the task unpacks them in a temporary folder on the
worker, runs ``fn`` there with each :class:`Input` replaced by its copy, and returns the result with the
folder packed again, which the driver puts in place of the local folder (the new one is unpacked beside it,
then swapped in). Anything else a run reads is rebuilt on the worker as it is here: the embedded kanji data
and shipped checkpoints come with the package, feature caches are recomputed and cached in the worker's own
cache, keyed as on this machine, and a dataset read from disk (``--root``) must lie at the same path on
every node. A worker that dies mid-run has its task retried by Ray (``--retries``, default 3) from the same
packed folder: what the killed attempt wrote on its worker is never seen by the driver.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sketch_env.cache import write_text
from sketch_env.errors import DataFormatError

__all__ = ["EXECUTORS", "GridRun", "Input", "ExecutorOptions", "add_executor_args", "executor_options",
           "run_grid", "read_result", "function_name", "RESULT_FILE", "MAX_RESULT_BYTES"]

EXECUTORS = ("local", "ray")
RESULT_FILE = "grid-result.json"
#: a stored result larger than this is refused when read back (a run's result is a table row and its curves)
MAX_RESULT_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Input:
    """A file or folder a run reads, by its path on the driver: shipped to a Ray worker with the task."""

    path: str

    def __fspath__(self) -> str:
        return self.path


@dataclass
class GridRun:
    """One run of a grid: ``fn(folder, **kwargs)``, ``folder`` its run folder here.

    ``fn`` must be a module-level function (Ray sends it by reference) and write only inside the folder it is
    given. ``cpus`` and ``gpus`` are the resources a Ray task of it declares (the local pool runs ``--jobs`` at
    once, whatever they say)."""

    key: str
    folder: Path
    fn: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    cpus: float = 1.0
    gpus: float = 0.0
    ignore: tuple[str, ...] = ()  # further configuration keys (dotted) that do not change this run's result

    def config(self) -> dict[str, Any]:
        """What defines the run's result: ``fn`` and ``kwargs`` as plain JSON (an ``argparse.Namespace`` as its
        fields), less how the grid is run (:data:`NOT_CONFIG`) and ``ignore``."""
        from sketch_env.backend import flatten_mapping
        from sketch_env.runs import plain

        flat = flatten_mapping(plain({"fn": function_name(self.fn), "kwargs": self.kwargs}, default=_config_value))
        skip = {f"kwargs.{k}" for k in (*NOT_CONFIG, *self.ignore)}
        return {k: v for k, v in flat.items() if not any(k == s or k.startswith(s + ".") for s in skip)}


#: keys of a run's kwargs (dotted) that say how or where the grid runs, not what a run computes: the
#: executor's options, threads, folders, progress output, and which runs make up the grid
NOT_CONFIG = tuple(f"args.{k}" for k in ("jobs", "executor", "address", "retries", "threads", "argv", "out", "runs",
                                         "no_progress", "progress", "seeds", "methods", "schemes", "variants"))


_SCRIPT_MODULES = ("__main__", "__mp_main__")  # a script's module in the driver, and in a spawned worker


def function_name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of ``fn``, the module by its import name even when it runs as the script
    (``python -m benchmarks.recipe`` makes it ``__main__`` in the driver and ``__mp_main__`` in a spawned
    worker: the same run must have one name wherever its configuration is computed)."""
    module = fn.__module__
    if module in _SCRIPT_MODULES:
        spec = getattr(sys.modules.get(module), "__spec__", None)
        module = spec.name if spec is not None and spec.name else module
    return f"{module}.{fn.__qualname__}"


def _config_value(value: Any) -> Any:
    """What JSON cannot hold, in a run's configuration: a Namespace as its fields, an Input as its path."""
    if isinstance(value, argparse.Namespace):
        return vars(value)
    if isinstance(value, Input):
        return value.path
    return str(value)


@dataclass(frozen=True)
class ExecutorOptions:
    executor: str = "local"
    jobs: int = 1
    address: str | None = None
    retries: int = 3
    processes: bool = False  # local: worker processes (True) or threads that start their own processes


def add_executor_args(p: argparse.ArgumentParser, jobs_help: str = "runs at once (each in its own threads)") -> None:
    """``--executor``, ``--address``, ``--retries`` and ``--jobs`` on a benchmark's parser."""
    p.add_argument("--jobs", type=int, default=1, help=jobs_help + "; with --executor ray: CPUs a run asks for "
                   "are the machine's CPUs / jobs")
    p.add_argument("--executor", default="local", choices=EXECUTORS,
                   help="local: a pool on this machine (default); ray: each run a Ray task (the ray extra)")
    p.add_argument("--address", default=None, help="with --executor ray: the cluster (auto, ray://HOST:10001); "
                   "default: a Ray instance started on this machine")
    p.add_argument("--retries", type=int, default=3, help="with --executor ray: times a run whose worker died is "
                   "retried")


def executor_options(args: argparse.Namespace, processes: bool = False) -> ExecutorOptions:
    return ExecutorOptions(executor=getattr(args, "executor", "local"), jobs=max(1, int(getattr(args, "jobs", 1))),
                           address=getattr(args, "address", None), retries=int(getattr(args, "retries", 3)),
                           processes=processes)


# ------------------------------------------------------------------------ results, stored without pickle


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            dtype = np.dtype(value["dtype"])
            if dtype.kind not in "biuf":
                raise ValueError(f"array of dtype {dtype} in a stored result")
            return np.asarray(value["__ndarray__"], dtype=dtype).reshape(value["shape"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _store(folder: Path, key: str, config: dict[str, Any], result: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / RESULT_FILE, json.dumps({"key": key, "config": config, "result": _encode(result)}))


def read_result(folder: str | Path, key: str, config: dict[str, Any] | None = None) -> tuple[bool, Any]:
    """``(True, result)`` of a finished run folder, ``(False, None)`` of one without a stored result. A stored
    result of another key, or one that is not this format, is a :class:`DataFormatError`; with ``config``, one
    stored by another configuration is a :class:`~sketch_env.runs.RunConfigError` naming what differs."""
    from sketch_env.runs import check_resume

    path = Path(folder) / RESULT_FILE
    if not path.is_file():
        return False, None
    if path.stat().st_size > MAX_RESULT_BYTES:
        raise DataFormatError(path, f"larger than {MAX_RESULT_BYTES} bytes")
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("key") != key:
            raise DataFormatError(path, f"holds the result of {data.get('key')!r}, not {key!r}"
                                  if isinstance(data, dict) else "not a result object", item="key")
        result = _decode(data["result"])
        stored = data.get("config")
        if stored is not None and not isinstance(stored, dict):
            raise ValueError("its config is not an object")
    except DataFormatError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise DataFormatError(path, f"not a stored grid result ({type(exc).__name__}: {exc})") from None
    if config is not None:
        if stored is not None and str(stored.get("fn", "")).split(".", 1)[0] in _SCRIPT_MODULES:
            # stored before function_name: the script's module under its run-time name
            if str(config.get("fn", "")).rsplit(".", 1)[-1] == str(stored["fn"]).rsplit(".", 1)[-1]:
                stored = stored | {"fn": config["fn"]}
        check_resume(Path(folder), stored, config)
    return True, result


# ------------------------------------------------------------------------ the local pool


def _run_here(run: GridRun) -> Any:
    """Run ``run`` in its own folder (the local executor; also a process-pool worker's job)."""
    run.folder.mkdir(parents=True, exist_ok=True)
    kwargs = {k: Path(v.path) if isinstance(v, Input) else v for k, v in run.kwargs.items()}
    result = run.fn(run.folder, **kwargs)
    _store(run.folder, run.key, run.config(), result)
    return result


def _run_local(runs: list[GridRun], opts: ExecutorOptions, progress: Callable[[str], None]) -> list[Any]:
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    if opts.jobs <= 1:
        out = []
        for r in runs:
            out.append(_run_here(r))
            progress(r.key)
        return out
    if opts.processes:
        import multiprocessing as mp

        pool: Any = ProcessPoolExecutor(max_workers=opts.jobs, mp_context=mp.get_context("spawn"))
    else:
        pool = ThreadPoolExecutor(max_workers=opts.jobs)
    with pool:
        futures = [pool.submit(_run_here, r) for r in runs]
        out = []
        for r, fut in zip(runs, futures):
            out.append(fut.result())
            progress(r.key)
        return out


# ------------------------------------------------------------------------ Ray tasks


def _pack(folder: Path | None) -> bytes:
    """``folder``'s files as an uncompressed tar (b"" for none); links are refused (a run writes files)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        if folder is not None and folder.exists():
            if folder.is_file():
                tar.add(folder, arcname=folder.name)
            else:
                for path in sorted(folder.rglob("*")):
                    if path.is_symlink():
                        raise ValueError(f"{path}: a link in a run folder")
                    if path.is_file() and path.name not in (".lock", ".lock.owner"):
                        tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return buf.getvalue()


def _unpack(blob: bytes, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    if not blob:
        return
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
        tar.extractall(dest, filter="data")  # regular files inside dest only


def _task(fn: Callable[..., Any], kwargs: dict[str, Any], folder_blob: bytes,
          inputs: dict[str, tuple[bool, Any]], key: str, config: dict[str, Any]) -> tuple[Any, bytes]:
    """A Ray task: unpack the run folder and the inputs (``name -> (is a file, the packed file's object
    reference)``) on this worker, run ``fn`` there, pack the folder again."""
    import ray

    with tempfile.TemporaryDirectory(prefix="sketch-env-grid-") as tmp:
        work = Path(tmp) / "run"
        _unpack(folder_blob, work)
        given = {}
        for name, (is_file, ref) in inputs.items():
            dest = Path(tmp) / "inputs" / name
            _unpack(ray.get(ref), dest)  # a reference inside an argument is not resolved by Ray itself
            given[name] = dest / Path(kwargs[name].path).name if is_file else dest
        result = fn(work, **{k: given.get(k, v) for k, v in kwargs.items()})
        _store(work, key, config, result)
        return result, _pack(work)


def _replace_folder(folder: Path, blob: bytes) -> None:
    """Put the packed folder ``blob`` in place of ``folder``: unpacked beside it, then swapped in."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(prefix=f".{folder.name}.new-", dir=folder.parent))
    _unpack(blob, new)
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    new.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def _ray_init(opts: ExecutorOptions):
    try:
        import ray
    except ImportError:
        raise SystemExit("--executor ray needs ray: pip install -e '.[ray]'") from None
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
        if opts.address:
            # a cluster of other machines: the benchmarks package travels with the job (it is not installed)
            kwargs["runtime_env"] = {"py_modules": [str(Path(__file__).resolve().parent)],
                                     "excludes": ["results/", "__pycache__/"]}
            ray.init(address=opts.address, **kwargs)
        else:
            # a Ray instance on this machine: its workers at the driver's priority (Ray nices them to 15, which
            # starves the runs when anything else runs here)
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(**kwargs)
    return ray


def _run_ray(runs: list[GridRun], opts: ExecutorOptions, progress: Callable[[str], None]) -> list[Any]:
    ray = _ray_init(opts)
    task = ray.remote(_task)
    pending, packed = {}, {}
    for i, r in enumerate(runs):
        for v in r.kwargs.values():  # each file once in the object store, however many runs read it
            if isinstance(v, Input) and v.path not in packed:
                packed[v.path] = ray.put(_pack(Path(v.path)))
        inputs = {k: (Path(v.path).is_file(), packed[v.path]) for k, v in r.kwargs.items() if isinstance(v, Input)}
        ref = task.options(num_cpus=r.cpus, num_gpus=r.gpus, max_retries=opts.retries, retry_exceptions=False,
                           name=r.key).remote(r.fn, r.kwargs, ray.put(_pack(r.folder)), inputs, r.key,
                                                  r.config())
        pending[ref] = i
    out: list[Any] = [None] * len(runs)
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        i = pending.pop(done[0])
        result, blob = ray.get(done[0])
        _replace_folder(runs[i].folder, blob)
        out[i] = result
        progress(runs[i].key)
    return out


# ------------------------------------------------------------------------ the one entry point


def run_grid(runs: Iterable[GridRun], opts: ExecutorOptions = ExecutorOptions(), quiet: bool = False) -> list[Any]:
    """The results of ``runs``, in their order: finished ones read from their folders, the others run on
    ``opts.executor``. Keys must be unique."""
    runs = list(runs)
    keys = [r.key for r in runs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"grid keys must be unique: {sorted(k for k in set(keys) if keys.count(k) > 1)}")
    if opts.executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {opts.executor!r}")
    results: dict[int, Any] = {}
    todo = []
    for i, r in enumerate(runs):
        finished, result = read_result(r.folder, r.key, r.config())
        if finished:
            results[i] = result
        else:
            todo.append(i)
    t0 = time.perf_counter()
    count = [0]

    def progress(key: str) -> None:
        count[0] += 1
        if not quiet:
            print(f"[grid] {key} done ({count[0]}/{len(todo)} run, {len(runs) - len(todo)} were finished; "
                  f"{(time.perf_counter() - t0) / 60:.1f} min)", flush=True)

    if todo:
        run = _run_ray if opts.executor == "ray" else _run_local
        for i, result in zip(todo, run([runs[i] for i in todo], opts, progress)):
            results[i] = result
    return [results[i] for i in range(len(runs))]
