"""Training throughput of the fast trainer (agents.fast) against SB3, side by side, and their learning.

    python -m benchmarks.trainer_throughput --backend runs/benchmarks/baselines/kanji-instance/b1-s0/backend.pt
    python -m benchmarks.trainer_throughput --backend ... --device cuda --fast-envs 4096   # on a GPU
    python -m benchmarks.trainer_throughput --backend ... --hp reward=...                  # (env kwargs: --env-kwarg)

**Speed.** For each method of ``--algos``, on the kanji train split: SB3 (``model.learn`` on the SB3-adapted
native vector env, the policy on the CPU as ``sketch-env train`` runs it) and the fast trainer with one
agent and with ``--agents`` agents side by side, the same env, the same policy class, the same
hyper-parameters (so the same number of gradient steps per env step), each for ``--timesteps`` env steps
per agent, in alternating rounds (``--rounds``) in this one process; env-steps per second of training
(collection + update; no evaluation), median over rounds, and the ratio to SB3 of the same round. Also
the env alone (the fast trainer's env engine stepped with random actions: what any trainer pays), and
the fast trainer's split of its time between collection and update. With ``--compile BACKEND`` (e.g.
``inductor``) one more row: the fast trainer with one agent and ``torch.compile`` on its policy forward and
loss (:class:`agents.fast.trainer.FastTrainer`), in the same rounds, its compilation time (the first
rollout's extra seconds) printed beside the table.

**Learning.** For each of ``--learn-algos``, ``--learn-timesteps`` env steps per seed with each path (SB3:
the seeds one after the other; fast: the seeds side by side), then test m@B / m@A of each run's
best checkpoint by ``sketch-env evaluate``'s code; mean ± 95 % interval over ``--seeds``, with each path's
wall time.

Writes ``README.md`` (the report: command, machine, date, the tables), ``throughput.md`` / ``throughput.csv``
(and ``learning.md``) to ``--out`` and prints them.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import command_line, mean_ci, write_readme
from sketch_env.cache import write_csv, write_text


def _env_id(dataset: str) -> str:
    from sketch_env.envs.registration import DATASET_ENV_IDS

    return DATASET_ENV_IDS[dataset]


def measure_sb3(algo: str, env_id: str, env_kwargs: dict, hp: dict, timesteps: int, seed: int) -> float:
    """Env-steps/s of SB3 ``learn`` (collection + update), the model and env built outside the timing."""
    from agents.envs import make_sb3_vec_env
    from agents.train import build_agent, split_hyperparams

    _, _, n_envs, _, _ = split_hyperparams(algo, hp)
    env = make_sb3_vec_env(env_id, n_envs=n_envs, seed=seed, split="train", **env_kwargs)
    model = build_agent(algo, hp, env, seed, "cpu")
    model.learn(n_envs * model.n_steps)  # warm-up: one rollout and update (numba kernels, allocator)
    t0 = time.perf_counter()
    model.learn(timesteps, reset_num_timesteps=False)
    seconds = time.perf_counter() - t0
    env.close()
    return timesteps / seconds


def make_fast(algo: str, env_id: str, env_kwargs: dict, hp: dict, seeds: list[int], device: str, compute: str,
              compile: str | None = None):
    from agents.envs import make_sb3_vec_env, native_env
    from agents.fast.env import DeviceRetrievalEnv
    from agents.fast.trainer import FastTrainer
    from agents.train import build_agent, split_hyperparams

    _, _, n_envs, _, _ = split_hyperparams(algo, hp)
    sb3_env = make_sb3_vec_env(env_id, n_envs=n_envs, seed=seeds[0], split="train", **env_kwargs)
    models = [build_agent(algo, hp, sb3_env, s, "cpu") for s in seeds]
    native = native_env(sb3_env)
    env = DeviceRetrievalEnv(native.data, len(seeds) * n_envs, native.options, seeds=seeds, device=device,
                             compute=compute)
    return FastTrainer(models, env, algo, hp, seeds, torch.device(device), compile=compile)


def measure_fast(trainer, timesteps: int) -> tuple[float, float]:
    """Env-steps/s over all agents and the share of time spent collecting."""
    trainer.train_rollout()  # warm-up
    trainer.timing = {"collect": 0.0, "update": 0.0}
    start = trainer.num_timesteps
    while trainer.num_timesteps - start < timesteps:
        trainer.train_rollout()
    total = sum(trainer.timing.values())
    return (trainer.num_timesteps - start) * trainer.k / total, trainer.timing["collect"] / total


def measure_env(trainer, seconds: float = 5.0) -> float:
    """Env-steps/s of the trainer's env alone, random actions of the policy's scale."""
    env = trainer.env
    gen = torch.Generator(device="cpu").manual_seed(0)
    actions = [(torch.randn((env.num_envs, env.embed_dim), generator=gen) * 0.1).to(env.device) for _ in range(8)]
    env.reset()
    env.step(actions[0])
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        env.step(actions[n % 8])
        n += 1
    if env.device.type == "cuda":
        torch.cuda.synchronize()
    return n * env.num_envs / (time.perf_counter() - t0)


def learning(args, algo: str, env_id: str, env_kwargs: dict, overrides: dict) -> dict[str, dict]:
    from agents.envs import evaluate_agent_ranks
    from agents.fast.trainer import FastTrainConfig, train_fast
    from agents.io import load_agent
    from agents.train import RLTrainConfig, train_agent
    from sketch_env.metrics import summarise

    runs = Path(args.runs) / algo
    out: dict[str, dict] = {}
    every = max(args.learn_timesteps // 4, 1)
    t0 = time.perf_counter()
    bests = [train_agent(RLTrainConfig(algo=algo, env_id=env_id, env_kwargs=env_kwargs, timesteps=args.learn_timesteps,
                                       seed=s, eval_every=every, overrides=overrides, out=str(runs / f"sb3-s{s}"),
                                       progress=False)) for s in args.seeds]
    out["SB3"] = {"bests": bests, "seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    bests = train_fast(FastTrainConfig(algo=algo, env_id=env_id, env_kwargs=env_kwargs, seeds=args.seeds,
                                       timesteps=args.learn_timesteps, device=args.device, compute=args.compute,
                                       eval_every=every, overrides=overrides, out=str(runs / "fast"), progress=False))
    out["fast"] = {"bests": bests, "seconds": time.perf_counter() - t0}
    for path in out.values():
        scores = []
        for best in path["bests"]:
            ranks, gallery = evaluate_agent_ranks(load_agent(best), env_id, env_kwargs, split="test")
            scores.append(summarise(ranks, gallery))
        path["scores"] = scores
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="kanji")
    p.add_argument("--backend", default="b1", help="the frozen backend (registry name or checkpoint path)")
    p.add_argument("--env-kwarg", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--algos", nargs="+", default=["ppo-a-clip", "ppo-ac-clip", "vpg"])
    p.add_argument("--timesteps", type=int, default=128_000, help="env steps per agent per measurement")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--agents", type=int, default=3, help="agents side by side in the batched fast row")
    p.add_argument("--device", default="cpu", help="the fast trainer's device (SB3 runs on the CPU)")
    p.add_argument("--compute", default="auto", help="the fast trainer's env engine")
    p.add_argument("--fast-envs", type=int, default=None,
                   help="also measure the fast trainer with this many envs per agent (batch_size scaled with it)")
    p.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE", help="hyper-parameter override (both)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--learn-timesteps", type=int, default=500_000, help="0: skip the learning comparison")
    p.add_argument("--learn-algos", nargs="+", default=["ppo-a-clip"], help="methods of the learning comparison")
    p.add_argument("--env-seconds", type=float, default=5.0, help="length of the env-alone measurement")
    p.add_argument("--compile", default=None, metavar="BACKEND",
                   help="also measure the fast trainer (1 agent) with torch.compile on this backend (e.g. inductor)")
    p.add_argument("--skip-sb3-speed", action="store_true", help="GPU runs: only the fast rows")
    p.add_argument("--runs", default="runs/benchmarks/trainer_throughput")
    p.add_argument("--out", default="benchmarks/results/trainer_throughput")
    args = p.parse_args(argv)

    import sketch_env  # noqa: F401
    from agents.config import load_hyperparams, parse_override

    env_id = _env_id(args.dataset)
    backend = str(Path(args.backend).resolve()) if Path(args.backend).suffix == ".pt" else args.backend
    env_kwargs = {"backend": backend} | dict(parse_override(kv) for kv in args.env_kwarg)
    overrides = dict(parse_override(kv) for kv in args.hp)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = command_line("trainer_throughput", argv)
    t_start = time.perf_counter()
    rows, compile_seconds = [], {}
    for algo in args.algos:
        hp = load_hyperparams(algo, env_id, overrides)
        fast1 = make_fast(algo, env_id, env_kwargs, hp, args.seeds[:1], args.device, args.compute)
        fastk = make_fast(algo, env_id, env_kwargs, hp, list(range(args.agents)), args.device, args.compute)
        big = None
        if args.fast_envs:
            n = args.fast_envs
            scale = n / int(hp.get("n_envs", 64))
            big_hp = hp | {"n_envs": n} | ({"batch_size": int(hp["batch_size"] * scale)} if "batch_size" in hp else {})
            big = make_fast(algo, env_id, env_kwargs, big_hp, args.seeds[:1], args.device, args.compute)
        compiled = None
        if args.compile:
            compiled = make_fast(algo, env_id, env_kwargs, hp, args.seeds[:1], args.device, args.compute, args.compile)
            t0 = time.perf_counter()
            compiled.train_rollout()  # compiles (each minibatch shape once); timed apart from the measurement
            eager_rollout = time.perf_counter()
            fast1.train_rollout()
            now = time.perf_counter()
            compile_seconds[algo] = (eager_rollout - t0) - (now - eager_rollout)
        res: dict[str, list[float]] = {}
        for r in range(args.rounds):
            if not args.skip_sb3_speed:
                sps = measure_sb3(algo, env_id, env_kwargs, hp, args.timesteps, args.seeds[0])
                res.setdefault("SB3", []).append(sps)
            sps, share = measure_fast(fast1, args.timesteps)
            res.setdefault("fast, 1 agent", []).append(sps)
            res.setdefault("fast, 1 agent: collection share", []).append(share)
            if compiled is not None:
                sps, _ = measure_fast(compiled, args.timesteps)
                res.setdefault(f"fast, 1 agent, torch.compile ({args.compile})", []).append(sps)
            sps, _ = measure_fast(fastk, max(args.timesteps // args.agents, 1))  # the same env steps in all
            res.setdefault(f"fast, {args.agents} agents side by side", []).append(sps)
            if big is not None:
                sps, share = measure_fast(big, max(args.timesteps, args.fast_envs * 20 * 4))
                res.setdefault(f"fast, 1 agent, {args.fast_envs} envs", []).append(sps)
            res.setdefault("env alone (fast env, random actions)", []).append(measure_env(fast1, args.env_seconds))
            print(f"[{algo} round {r}] " + ", ".join(f"{k}: {v[-1]:,.2f}" if "share" in k else f"{k}: {v[-1]:,.0f}"
                                                   for k, v in res.items()), flush=True)
        for key, values in res.items():
            med = statistics.median(values)
            ratio = (statistics.median([v / s for v, s in zip(values, res["SB3"])])
                     if "SB3" in res and "share" not in key else None)
            rows.append({"algo": algo, "path": key, "value": med, "ratio_to_sb3": ratio})
    device = (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
              else f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    speed_note = (f"device: {device}; env-steps/s of training per path, median of {args.rounds} alternating rounds "
                  f"of {args.timesteps:,} env steps per agent; ratio = to SB3 in the same round")
    lines = [f"`{cmd}` ({speed_note})", "", "| method | path | env-steps/s | x SB3 |", "| --- | --- | ---: | ---: |"]
    for r in rows:
        value = f"{r['value']:.2f}" if "share" in r["path"] else f"{r['value']:,.0f}"
        ratio = f"{r['ratio_to_sb3']:.2f}" if r["ratio_to_sb3"] is not None else "-"
        lines.append(f"| `{r['algo']}` | {r['path']} | {value} | {ratio} |")
    if compile_seconds:
        lines += ["", f"torch.compile ({args.compile}) compilation, seconds (first rollout minus an eager one): "
                  + ", ".join(f"`{a}` {s:.0f}" for a, s in compile_seconds.items())]
    table = "\n".join(lines)
    write_text(out / "throughput.md", table + "\n")
    write_csv(out / "throughput.csv", rows)
    print(table, flush=True)
    title = f"Training throughput on {args.dataset}: the fast trainer against SB3"
    files = ["throughput.md", "throughput.csv"]

    def report(body: str) -> None:
        write_readme(out, title, cmd, body, seconds=time.perf_counter() - t_start, notes=f"Speed: {speed_note}.",
                     files=files)

    report("\n".join(lines[2:]))
    if args.learn_timesteps > 0:
        shutil.rmtree(args.runs, ignore_errors=True)  # fresh runs: a resumed run would not be timed whole
        learn_note = (f"{args.learn_timesteps:,} env steps per seed, {len(args.seeds)} seeds, test split, mean ± 95 % "
                      "interval; minutes = the path's wall time for all seeds (SB3 one after the other, fast side by "
                      "side), validation included")
        llines = [f"`{cmd}`: {learn_note}", "",
                  "| method | path | m@A | m@B | minutes |", "| --- | --- | ---: | ---: | ---: |"]
        for algo in args.learn_algos:
            res = learning(args, algo, env_id, env_kwargs, overrides)
            for name, r in res.items():
                ma, ca = mean_ci([s["m@A"] for s in r["scores"]])
                mb, cb = mean_ci([s["m@B"] for s in r["scores"]])
                llines.append(f"| `{algo}` | {name} | {ma:.1f} ± {ca:.1f} | {mb:.1f} ± {cb:.1f} | "
                              f"{r['seconds'] / 60:.1f} |")
                print(llines[-1], flush=True)
        write_text(out / "learning.md", "\n".join(llines) + "\n")
        print("\n".join(llines))
        files.append("learning.md")
        report("\n".join(lines[2:]) + f"\n\nLearning: {learn_note}.\n\n" + "\n".join(llines[2:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
