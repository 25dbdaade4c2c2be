"""How fast this machine is, and how fast the B1 sketch branch runs on it: the figures a report names its
machine by, and the side-by-side comparison behind the feature-caching settings. They compare days of one
machine, not machines: an Intel Xeon whose matrix product ran 1.9x as fast as an AMD EPYC's ran the
kanji main job 1.4x as slow (``benchmarks/results/main_job-kanji/``).

    python -m benchmarks.machine                 # all four parts
    python -m benchmarks.machine --parts matmul

* ``matmul``: fp32 (and bf16) matrix-product GFLOP/s with torch's threads, the machine's compute limit;
* ``forward``: rasters/s and GFLOP/s of the B1 sketch branch's forward pass (64 px, the feature caching of
  every (sketch, step)) for the variants measured side by side: batch sizes, ``channels_last``, bf16
  autocast, ``torch.compile``; each against the matmul limit;
* ``train``: seconds per B1 training step in fp32 and bf16 autocast, each in the default and the channels-last
  memory layout, taking turns (the side-by-side figures behind ``TrainConfig.channels_last``);
* ``busy``: a training step loop alone, then beside one other CPU-bound process, with the thread settings
  the package uses (``sketch_env.threads``) and with torch's defaults: a busy machine should slow a run
  proportionally (about 2x on 2 cores), not tenfold.

Writes ``benchmarks/results/machine/README.md`` (command, machine, tables).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

from sketch_env.cache import write_text
from sketch_env.device import machine_name

__all__ = ["main", "matmul_gflops", "forward_rates", "train_step_times", "TRAIN_VARIANTS"]

def matmul_gflops(dtype: str = "float32", n: int = 1024, seconds: float = 2.0) -> float:
    import torch

    dt = getattr(torch, dtype)
    a = torch.randn(n, n).to(dt)
    b = torch.randn(n, n).to(dt)
    for _ in range(3):
        a @ b
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - t0) / 1e9


def _b1_branch():
    import torch

    from embeddings.base import make_backend

    torch.manual_seed(0)
    return make_backend("b1").sketch_branches[0].eval()


def conv_flop(net, size: int = 64) -> float:
    """Multiply-adds x 2 of one forward pass of ``net`` on a ``size`` px raster (convolutions and linear
    layers), counted with forward hooks."""
    import torch

    total = [0.0]

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total[0] += 2.0 * k * output.numel()
        elif isinstance(module, torch.nn.Linear):
            total[0] += 2.0 * module.in_features * output.numel()

    layers = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    handles = [m.register_forward_hook(hook) for m in layers]
    with torch.inference_mode():
        net.features(torch.zeros(1, 1, size, size))
    for h in handles:
        h.remove()
    return total[0]


def forward_rates(seconds: float = 3.0) -> list[dict]:
    """Rasters/s of the B1 sketch branch's ``features`` for each variant, measured one after another."""
    import torch

    net = _b1_branch()
    flop = conv_flop(net)
    rng = torch.Generator().manual_seed(0)
    from embeddings.triplet import TripletBackend

    default = TripletBackend(**TripletBackend.default_config("b1")).batch_size  # what feature caching uses
    variants = []
    for batch in (32, 64, 128, 256, 512, 1024):
        mark = " (the package's)" if batch == default else ""
        variants.append({"name": f"fp32, batch {batch}{mark}", "batch": batch})
    variants += [{"name": f"fp32, batch {default}, channels_last", "batch": default, "channels_last": True},
                 {"name": f"bf16 autocast, batch {default}", "batch": default, "bf16": True},
                 {"name": f"bf16 autocast, batch {default}, channels_last", "batch": default, "bf16": True,
                  "channels_last": True},
                 {"name": f"torch.compile (inductor), batch {default}", "batch": default, "compile": True}]
    out = []
    for v in variants:
        model = net
        x = (torch.rand(v["batch"], 1, 64, 64, generator=rng) > 0.9).float()
        if v.get("channels_last"):
            model = net.to(memory_format=torch.channels_last)
            x = x.to(memory_format=torch.channels_last)
        fn = model.features
        if v.get("compile"):
            try:
                fn = torch.compile(model.features, dynamic=False)
            except Exception as exc:  # no compiler on this machine
                out.append(v | {"rasters_per_s": None, "note": f"{type(exc).__name__}"})
                continue
        try:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(v.get("bf16"))):
                for _ in range(2):
                    fn(x)
                count, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    fn(x)
                    count += 1
                rate = count * v["batch"] / (time.perf_counter() - t0)
        except Exception as exc:  # a backend this machine lacks (e.g. the compiler's toolchain)
            out.append(v | {"rasters_per_s": None, "note": f"{type(exc).__name__}: {str(exc)[:80]}"})
            continue
        finally:
            net.to(memory_format=torch.contiguous_format)
        out.append(v | {"rasters_per_s": rate, "gflops": rate * flop / 1e9})
    return out


def _hog(seconds: float) -> None:
    end = time.time() + seconds
    x = 0
    while time.time() < end:
        x += 1


def _step_loop(steps: int) -> float:
    """Seconds per training step of B1 (batch 64, 64 px) in this process."""
    import torch

    from embeddings.base import make_backend
    from embeddings.losses import batch_all_triplet_loss

    torch.manual_seed(0)
    b = make_backend("b1")
    b.train()
    opt = torch.optim.AdamW(list(b.parameters()), lr=1e-3)
    x = (torch.rand(64, 1, 64, 64) > 0.9).float()
    for i in range(steps + 3):
        if i == 3:
            t0 = time.perf_counter()
        loss, _ = batch_all_triplet_loss(b.sketch_branches[0](x), b.photo_branch(x.flip(-1)), 0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


#: the training step's variants ``train_step_times`` measures: (name, channels_last, bf16 autocast)
TRAIN_VARIANTS = (("fp32, contiguous", False, False), ("fp32, channels-last (the default)", True, False),
                  ("bf16 autocast, contiguous", False, True), ("bf16 autocast, channels-last", True, True))


def train_step_times(steps: int = 20, rounds: int = 3, warmup: int = 3) -> list[dict]:
    """Seconds per B1 training step (batch 64, 64 px, forward of both branches, triplet loss, backward,
    AdamW) for each of :data:`TRAIN_VARIANTS`, in this process, the variants taking turns for ``rounds``
    rounds of ``steps`` steps (after ``warmup`` steps each); each variant's median round, and its speed
    against the first variant's."""
    import statistics

    import torch

    from embeddings.base import make_backend
    from embeddings.losses import batch_all_triplet_loss
    from embeddings.train import set_memory_format

    torch.manual_seed(0)
    b = make_backend("b1")
    b.train()
    opt = torch.optim.AdamW(list(b.parameters()), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    sk = (torch.rand(64, 1, 64, 64, generator=gen) > 0.95).float()  # sparse, like strokes and edge maps
    ph = (torch.rand(64, 1, 64, 64, generator=gen) > 0.9).float()

    def run(channels_last: bool, bf16: bool, n: int) -> float:
        layout = torch.channels_last if channels_last else torch.contiguous_format
        set_memory_format(b, layout)
        x, y = sk.contiguous(memory_format=layout), ph.contiguous(memory_format=layout)
        t0 = time.perf_counter()
        for _ in range(n):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                s, p = b.sketch_branches[0](x), b.photo_branch(y)
            loss, _ = batch_all_triplet_loss(s.float(), p.float(), 0.2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return (time.perf_counter() - t0) / n

    times: dict[str, list[float]] = {name: [] for name, _, _ in TRAIN_VARIANTS}
    for _, cl, bf16 in TRAIN_VARIANTS:  # warm-up: each layout's kernels chosen once
        run(cl, bf16, warmup)
    for _ in range(rounds):
        for name, cl, bf16 in TRAIN_VARIANTS:
            times[name].append(run(cl, bf16, steps))
    set_memory_format(b, torch.contiguous_format)
    base = statistics.median(times[TRAIN_VARIANTS[0][0]])
    return [{"name": name, "seconds": statistics.median(times[name]), "rounds": times[name],
             "speed": base / statistics.median(times[name])} for name, _, _ in TRAIN_VARIANTS]


def busy_slowdown(steps: int = 30) -> list[dict]:
    """The step loop alone and beside a CPU hog, in fresh processes, with the package's thread settings and
    with torch's defaults."""
    rows = []
    code = ("import sys; sys.path.insert(0, {root!r}); {setup}"
            "from benchmarks.machine import _step_loop; print(_step_loop({steps}))")
    root = str(Path(__file__).resolve().parents[1])
    for label, setup in (("the package's settings (sketch_env.threads)",
                          "from sketch_env.threads import configure_threads; configure_threads(); "),
                         ("torch's defaults", "")):
        times = {}
        for busy in (False, True):
            hog = None
            if busy:
                hog = mp.get_context("spawn").Process(target=_hog, args=(600,))
                hog.start()
            try:
                res = subprocess.run([sys.executable, "-c", code.format(root=root, setup=setup, steps=steps)],
                                     capture_output=True, text=True, check=True, timeout=900)
                times[busy] = float(res.stdout.strip().splitlines()[-1])
            finally:
                if hog is not None:
                    hog.terminate()
                    hog.join()
        rows.append({"name": label, "alone_s": times[False], "busy_s": times[True],
                     "slowdown": times[True] / times[False]})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parts = ["matmul", "forward", "train", "busy"]
    p.add_argument("--parts", nargs="+", default=parts, choices=parts)
    p.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    p.add_argument("--out", default="benchmarks/results/machine")
    args = p.parse_args(argv)
    import torch

    from sketch_env.threads import configure_threads

    configure_threads()
    command = f"python -m benchmarks.machine {' '.join(argv if argv is not None else sys.argv[1:])}".strip()
    lines = ["# This machine", "", f"`{command}`", "",
             f"{machine_name()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
             f"with {torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}; "
             f"{time.strftime('%Y-%m-%d')}.", ""]
    limit = None
    if "matmul" in args.parts:
        fp32 = matmul_gflops("float32", seconds=args.seconds)
        bf16 = matmul_gflops("bfloat16", seconds=args.seconds)
        limit = fp32
        lines += ["## Matrix product (1024 x 1024)", "", "| dtype | GFLOP/s |", "| --- | ---: |",
                  f"| float32 | {fp32:.1f} |", f"| bfloat16 | {bf16:.1f} |", ""]
    if "forward" in args.parts:
        flop = conv_flop(_b1_branch())
        lines += ["## B1 sketch branch, forward pass (feature caching)", "",
                  f"{flop / 1e6:.1f} MFLOP per 64 px raster; variants measured one after another in this process.",
                  "", "| variant | rasters/s | GFLOP/s | of the fp32 matmul |", "| --- | ---: | ---: | ---: |"]
        for r in forward_rates(args.seconds):
            if r["rasters_per_s"] is None:
                lines.append(f"| {r['name']} | - | - | {r['note']} |")
                continue
            share = f"{100 * r['gflops'] / limit:.0f} %" if limit else "-"
            lines.append(f"| {r['name']} | {r['rasters_per_s']:,.0f} | {r['gflops']:.1f} | {share} |")
        lines.append("")
    if "train" in args.parts:
        steps, rounds = 20, 3
        lines += ["## A B1 training step: memory layout and precision", "",
                  f"B1, batch 64, 64 px (both branches forward, the triplet loss, backward, AdamW), seconds per step: "
                  f"the variants took turns in this process, {rounds} rounds of {steps} steps; the median round, "
                  "and the speed against fp32 in the contiguous layout (`TrainConfig.channels_last`, `precision`).",
                  "", "| variant | s per step | rounds (s) | speed |", "| --- | ---: | --- | ---: |"]
        for r in train_step_times(steps, rounds):
            spread = ", ".join(f"{s:.3f}" for s in r["rounds"])
            lines.append(f"| {r['name']} | {r['seconds']:.3f} | {spread} | {r['speed']:.2f}x |")
        lines.append("")
    if "busy" in args.parts:
        lines += ["## A training step beside another CPU-bound process", "",
                  "B1, batch 64 (seconds per step), each in a fresh process, alone and beside one busy-looping "
                  "process.",
                  "", "| threads | alone (s) | busy (s) | slowdown |", "| --- | ---: | ---: | ---: |"]
        for r in busy_slowdown():
            lines.append(f"| {r['name']} | {r['alone_s']:.3f} | {r['busy_s']:.3f} | {r['slowdown']:.1f}x |")
        lines.append("")
    text = "\n".join(lines)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "README.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
