"""Progressive rendering speed on the embedded kanji sketches, against a naive per-step redraw.

Usage::

    python -m benchmarks.render [--limit N] [--sizes 64 256] [--steps 20] [--naive-limit 300] [--out DIR]

For every sketch (train + test of the kanji ``instance`` split, or the first ``--limit``) it renders all
S partial rasters of the point schedule two ways, with the same :class:`~sketch_env.render.RenderConfig`
(the defaults: 8-connected lines, ``thicken="dilate"``, i.e. 1-px lines then a square dilation to the
line width, as the authors' code does):

* **fast**: :func:`sketch_env.render.render_progressive_batch` (one pass, the canvas kept between steps);
* **naive**: for each step, a new zero canvas, one ``cv2.line`` call per segment of the prefix, and
  the same dilation.

The naive path is slow, so by default it is timed on ``--naive-limit`` sketches spread evenly over all; the
fast path is timed on that same subset (for the speed-up) and on all sketches. Both outputs are checked
to be identical on a few sketches (untimed). It also times building the kanji dataset cold (in a fresh
cache folder) and warm (a second construction plus ``.sketches("train")``, read from that cache).

Prints the tables and writes them, with the command, machine and date, to ``--out``/``README.md`` (default
``benchmarks/results/render/``).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bar in the middle of the table


import cv2
import numpy as np

from benchmarks.common import command_line, write_readme
from sketch_env.device import machine_name
from sketch_env.render import RenderConfig, render_progressive_batch
from sketch_env.schedule import PointSchedule
from sketch_env.sketch import Sketch

_SHIFT = 4  # the same 1/16-px sub-pixel precision as sketch_env.render


def naive_progressive(sketch: Sketch, cuts: np.ndarray, config: RenderConfig, out: np.ndarray) -> None:
    """The baseline: each step redrawn from scratch, one ``cv2.line`` per segment of the prefix."""
    span = config.size - 1 - 2 * config.margin
    pix = np.round((sketch.points * span + config.margin) * (1 << _SHIFT)).astype(np.int64)  # as render.py
    pts = [tuple(p) for p in pix.tolist()]
    is_start = np.zeros(sketch.num_points + 1, dtype=bool)
    is_start[sketch.stroke_starts] = True
    is_start[sketch.num_points] = True
    line_type = cv2.LINE_AA if config.antialias else cv2.LINE_8
    dilate = config.thicken == "dilate"
    width = 1 if dilate else config.width
    kernel = np.ones((config.width, config.width), np.uint8) if dilate and config.width > 1 else None
    for t, cut in enumerate(cuts.tolist()):
        canvas = out[t]
        canvas[...] = 0  # a new zero canvas
        for i in range(cut):
            if not is_start[i + 1] and i + 1 < cut:  # segment (i, i + 1) within one stroke
                cv2.line(canvas, pts[i], pts[i + 1], 255, width, line_type, _SHIFT)
            elif is_start[i] and (is_start[i + 1] or i + 1 >= cut):  # a stroke of one point so far: a dot
                cv2.line(canvas, pts[i], pts[i], 255, width, cv2.LINE_8, _SHIFT)
        if kernel is not None:
            cv2.dilate(canvas.copy(), kernel, dst=canvas)
        if config.polarity == "black_on_white":
            np.subtract(255, canvas, out=canvas)


def time_fast(sketches: list[Sketch], schedule: PointSchedule, config: RenderConfig) -> float:
    """Seconds to render all steps of ``sketches`` with render_progressive_batch, in memory-bounded chunks."""
    per_sketch = schedule.steps * config.size * config.size
    chunk = max(1, (64 << 20) // per_sketch)  # about 64 MiB of rasters per call
    t0 = time.perf_counter()
    for i in range(0, len(sketches), chunk):
        render_progressive_batch(sketches[i : i + chunk], schedule, config)
    return time.perf_counter() - t0


def time_naive(sketches: list[Sketch], schedule: PointSchedule, config: RenderConfig) -> float:
    out = np.empty((schedule.steps, config.size, config.size), dtype=np.uint8)
    t0 = time.perf_counter()
    for sk in sketches:
        naive_progressive(sk, schedule.cuts(sk), config, out)
    return time.perf_counter() - t0


def check_same(sketches: list[Sketch], schedule: PointSchedule, config: RenderConfig) -> int:
    """Number of sketches whose fast and naive rasters differ (untimed)."""
    fast = render_progressive_batch(sketches, schedule, config)
    out = np.empty(fast.shape[1:], dtype=np.uint8)
    bad = 0
    for i, sk in enumerate(sketches):
        naive_progressive(sk, schedule.cuts(sk), config, out)
        bad += not np.array_equal(out, fast[i])
    return bad


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="only the first N sketches (default: all)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256], help="canvas sizes in px")
    ap.add_argument("--steps", type=int, default=20, help="steps S of the point schedule")
    ap.add_argument(
        "--naive-limit",
        type=int,
        default=300,
        help="time the naive baseline on the first N sketches (0: all of them)",
    )
    ap.add_argument("--check", type=int, default=50, help="compare fast and naive outputs on N sketches")
    ap.add_argument("--out", default="benchmarks/results/render", help="folder of the report (README.md)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    lines: list[str] = []

    def emit(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    print("# Progressive rendering speed\n")
    emit(
        f"- machine: processor={machine_name()!r}, "
        f"cpu_count={os.cpu_count()}, {platform.platform()}"
    )
    emit(
        f"- python {platform.python_version()}, numpy {np.__version__}, opencv {cv2.__version__} "
        f"(cv2 threads: {cv2.getNumThreads()})"
    )

    # ------------------------------------------------------------------ dataset build, cold and warm
    from sketch_env.datasets.kanji import KanjiDataset

    old_cache = os.environ.get("SKETCH_ENV_CACHE")
    tmp = tempfile.mkdtemp(prefix="sketch-env-bench-")
    os.environ["SKETCH_ENV_CACHE"] = tmp
    try:
        t0 = time.perf_counter()
        cold = KanjiDataset("instance")
        cold.sketches("train")
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = KanjiDataset("instance")
        train = warm.sketches("train")
        t_warm = time.perf_counter() - t0
        test = warm.sketches("test")
    finally:
        if old_cache is None:
            os.environ.pop("SKETCH_ENV_CACHE", None)
        else:
            os.environ["SKETCH_ENV_CACHE"] = old_cache
        shutil.rmtree(tmp, ignore_errors=True)

    records = train + test
    sketches = [r.sketch for r in records][: args.limit]
    n_naive = len(sketches) if args.naive_limit <= 0 else min(args.naive_limit, len(sketches))
    subset = [sketches[i] for i in np.linspace(0, len(sketches) - 1, n_naive).astype(int)]
    points = np.array([s.num_points for s in sketches])
    emit(
        f"- kanji instance split: {len(train)} train + {len(test)} test sketches; benchmarked "
        f"{len(sketches)} (points per sketch: median {np.median(points):.0f}, max {points.max()})"
    )
    emit(
        f"- schedule: PointSchedule(steps={args.steps}); naive baseline timed on {n_naive} sketches spread "
        f"evenly over all (points per sketch: median {np.median([s.num_points for s in subset]):.0f}); "
        f"the speed-up compares fast and naive on that same subset\n"
    )

    emit("## Building the kanji dataset\n")
    emit("| build | what | time (s) |")
    emit("|---|---|---:|")
    emit(f"| cold | fresh SKETCH_ENV_CACHE: parse all KanjiVG SVGs, write the cache, split | {t_cold:.2f} |")
    emit(
        f"| warm | second `KanjiDataset('instance')` + `.sketches('train')` from the cache | {t_warm:.3f} |"
    )
    emit()

    schedule = PointSchedule(steps=args.steps)
    rows, ratios = [], []
    for size in args.sizes:
        config = RenderConfig(size=size)
        time_fast(sketches[:10], schedule, config)  # warm-up (imports, allocator)
        mismatched = check_same(subset[: args.check], schedule, config)
        t_all = time_fast(sketches, schedule, config)
        t_fast_sub = time_fast(subset, schedule, config)
        t_naive_sub = time_naive(subset, schedule, config)
        r_all = len(sketches) * args.steps / t_all
        r_fast = n_naive * args.steps / t_fast_sub
        r_naive = n_naive * args.steps / t_naive_sub
        width = config.width
        rows.append(
            (size, width, "fast `render_progressive_batch`, ALL sketches", len(sketches), t_all, r_all)
        )
        rows.append(
            (
                size,
                width,
                f"fast `render_progressive_batch`, subset (every k-th, {n_naive})",
                n_naive,
                t_fast_sub,
                r_fast,
            )
        )
        rows.append(
            (
                size,
                width,
                f"naive `cv2.line` per segment, redraw each step, subset (every k-th, {n_naive})",
                n_naive,
                t_naive_sub,
                r_naive,
            )
        )
        ratios.append((size, width, r_fast, r_naive, r_fast / r_naive, mismatched, min(args.check, n_naive)))

    emit(f"## Partial rasters per second (S = {args.steps}, LINE_8, thicken='dilate', white on black)\n")
    emit("| size (px) | line width | path | sketches | rasters | time (s) | rasters/s |")
    emit("|---:|---:|---|---:|---:|---:|---:|")
    for size, width, name, n, t, r in rows:
        emit(f"| {size} | {width} | {name} | {n} | {n * args.steps} | {t:.3f} | {r:,.0f} |")
    emit()
    emit(f"## Speed-up on the same subset ({n_naive} sketches spread evenly over all)\n")
    emit("| size (px) | line width | fast rasters/s | naive rasters/s | speed-up | outputs identical |")
    emit("|---:|---:|---:|---:|---:|---|")
    for size, width, r_fast, r_naive, ratio, bad, checked in ratios:
        same = "yes" if bad == 0 else f"NO ({bad} differ)"
        emit(
            f"| {size} | {width} | {r_fast:,.0f} | {r_naive:,.0f} | {ratio:.1f}x "
            f"| {same} (checked {checked}) |"
        )
    path = write_readme(args.out, "Progressive rendering speed", command_line("render", argv), "\n".join(lines),
                        seconds=time.perf_counter() - t_start)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
