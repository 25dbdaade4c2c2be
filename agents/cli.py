"""The ``sketch-env`` program: ``train`` and ``evaluate`` (the RL half), assembled with the ``data``
(:mod:`sketch_env.cli`), ``embed`` (:mod:`embeddings.cli`) and ``run`` (:mod:`agents.run`) commands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from agents.names import METHODS
from sketch_env.config import ConfigError


def _train_configs(args: argparse.Namespace) -> list:
    """The run configuration ``sketch-env train`` would run with (checked, nothing run)."""
    from agents.config import parse_override
    from agents.train import RLTrainConfig

    overrides = dict(parse_override(o) for o in args.hp)
    env_kwargs = dict(parse_override(o) for o in args.env_kwarg)
    device = args.device if args.device is not None else ("auto" if args.trainer == "fast" else "cpu")
    if args.trainer == "fast":
        from agents.fast.trainer import FastTrainConfig

        if args.env_device != "cpu":
            raise ConfigError("--env-device is the SB3 path's; the fast trainer runs env and policy on --device")
        seeds = args.seeds or [args.seed]
        one = args.out is not None and len(seeds) == 1  # one agent: --out is its folder, as on the SB3 path
        return [FastTrainConfig(algo=args.algo, env_id=args.env, env_kwargs=env_kwargs, seeds=seeds,
                                timesteps=args.timesteps, minutes=args.minutes, device=device, compute=args.compute,
                                compile=args.compile, eval_every=args.eval_every, overrides=overrides,
                                out=None if one else args.out, agent_dirs=[args.out] if one else None)]
    if args.compile:
        raise ConfigError("--compile is the fast trainer's (--trainer fast)")
    if args.seeds and len(args.seeds) > 1:
        raise ConfigError("--seeds trains several agents at once with --trainer fast; the SB3 path takes one --seed")
    seed = args.seeds[0] if args.seeds else args.seed
    return [RLTrainConfig(algo=args.algo, env_id=args.env, env_kwargs=env_kwargs, timesteps=args.timesteps,
                          minutes=args.minutes, seed=seed, device=device, env_device=args.env_device,
                          eval_every=args.eval_every, overrides=overrides, out=args.out)]


def _cmd_train(args: argparse.Namespace) -> int:
    from agents.fast.trainer import FastTrainConfig, train_fast
    from agents.train import train_agent

    (cfg,) = _train_configs(args)
    bests = train_fast(cfg) if isinstance(cfg, FastTrainConfig) else [train_agent(cfg)]
    for best in bests:
        print(f"best checkpoint (validation m@B): {best}")
    return 0


def configs_of(args: argparse.Namespace) -> list:
    """The run configurations a parsed command would run with, made and checked without running anything
    (empty for commands without one)."""
    make = getattr(args, "configs", None)
    return make(args) if make is not None else []


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from agents.evaluate import COLUMNS, evaluate_model
    from embeddings.evaluate import format_table

    rows = evaluate_model(args.model, split=args.split, deterministic=not args.sample, env_device=args.env_device,
                          out=args.out, seed=args.seed)
    print(format_table(rows, columns=COLUMNS))
    if args.json:
        print(json.dumps({k: {c: v[c] for c in COLUMNS} for k, v in rows.items()}))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import ipaddress

    from agents.demo.app import require_web, serve
    from agents.demo.core import RetrievalDemo

    require_web()
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        print(f"warning: serving on {args.host}, reachable from other machines; the demo has no authentication",
              file=sys.stderr)
    model = None if str(args.model).lower() == "none" else args.model
    demo = RetrievalDemo(model, backend=args.backend, dataset=args.dataset, root=args.root, split=args.split,
                         topk=args.topk)
    serve(demo, host=args.host, port=args.port,
          on_start=lambda url: print(f"sketch-env demo: {url} (Ctrl-C stops it)", flush=True))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The ``train``, ``evaluate`` and ``demo`` commands."""
    from agents.configs import RLTrainConfig
    from sketch_env.config import add_config_arguments

    train = sub.add_parser("train", help="train an RL method on the retrieval env (resumes from its run folder)")
    train.add_argument("--algo", default=RLTrainConfig.algo, choices=sorted(METHODS),
                       help=f"RL method (default: {RLTrainConfig.algo})")
    train.add_argument("--env", default=RLTrainConfig.env_id,
                       help=f"registered env id (default: {RLTrainConfig.env_id})")
    train.add_argument("--env-kwarg", action="append", default=[], metavar="KEY=VALUE",
                       help="env argument, VALUE read as YAML (e.g. backend=b2, action=residual)")
    train.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE",
                       help="hyper-parameter override, VALUE read as YAML (e.g. learning_rate=1e-4)")
    # the run's length, seed, devices and evaluation: RLTrainConfig's fields, their defaults and docs
    add_config_arguments(train, RLTrainConfig, skip=("algo", "env_id", "env_kwargs", "overrides", "out", "progress",
                                                     "device"))
    train.add_argument("--trainer", default="sb3", choices=["sb3", "fast"],
                       help="sb3: Stable-Baselines3 / sb3-contrib (every method); fast: env, policy and update on one "
                            "torch device (agents.fast; vpg and the PPO methods)")
    train.add_argument("--seeds", type=int, nargs="+", default=None,
                       help="with --trainer fast: one agent per seed, trained side by side in one process")
    train.add_argument("--compute", default="auto", choices=["auto", "torch", "numpy"],
                       help="with --trainer fast: the env engine (auto: numba on the CPU, torch on a GPU)")
    train.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                       help="with --trainer fast: torch.compile the policy forward and the loss (default backend "
                            "inductor; off unless given: on a CPU it did not pay, see the README)")
    train.add_argument("--device", default=None,
                       help="policy device: auto (CUDA when present) | cpu | cuda; default cpu on the SB3 path (a "
                            "linear policy runs faster there), auto with --trainer fast")
    train.add_argument("--out", default=None, help="run folder (default <data>/agents/<env>/<algo>-s<seed>; fast: "
                       "<data>/agents-fast/<env>/<algo>-s<seed>; with several --seeds, the folder holding them; "
                       "<data> = $SKETCH_ENV_DATA or the per-user data folder)")
    train.set_defaults(func=_cmd_train, configs=_train_configs)

    ev = sub.add_parser("evaluate", help="m@A, m@B, A@q and curves of a trained agent on the test split")
    ev.add_argument("--model", required=True, help="best.zip / last.zip written by `sketch-env train`, "
                    "or the name of a shipped agent (kanji-b1-ppo-a-clip-s0)")
    ev.add_argument("--split", default="test")
    ev.add_argument("--sample", action="store_true", help="sample actions instead of the mean action")
    ev.add_argument("--seed", type=int, default=0, help="seed of the sampled actions")
    ev.add_argument("--env-device", default="cpu")
    ev.add_argument("--out", default=None, help="output folder (default: eval-<split>/ beside the model)")
    ev.add_argument("--json", action="store_true", help="also print the figures as JSON")
    ev.set_defaults(func=_cmd_evaluate)

    from agents.demo.core import DEFAULT_MODEL

    demo = sub.add_parser("demo", help="a local web page: draw a sketch, watch the frozen backend's and the agent's "
                          "rankings after every stroke")
    demo.add_argument("--model", default=DEFAULT_MODEL, help=f"agent file or shipped agent name (default "
                      f"{DEFAULT_MODEL}); none: the frozen backend alone")
    demo.add_argument("--backend", default=None, help="backend name or checkpoint (without --model; default b1)")
    demo.add_argument("--dataset", default=None, help="dataset (without --model; default kanji)")
    demo.add_argument("--root", default=None, help="the dataset's folder, for datasets read from disk")
    demo.add_argument("--split", default="test", help="the gallery and replayed sketches (default test)")
    demo.add_argument("--topk", type=int, default=5, help="photos shown per method (default 5)")
    demo.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    demo.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: a free one)")
    demo.set_defaults(func=_cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    """The whole ``sketch-env`` parser: every layer's command group."""
    from agents.run import add_run_command
    from embeddings import cli as embed_cli
    from sketch_env import __version__
    from sketch_env import cli as data_cli

    parser = argparse.ArgumentParser(prog="sketch-env", description="On-the-fly sketch-based image retrieval with RL.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="count", default=0,
                        help="only warnings and errors (messages go to stderr; results to stdout)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug messages too")
    sub = parser.add_subparsers(dest="command", required=True)
    data_cli.add_commands(sub)
    embed_cli.add_commands(sub)
    add_commands(sub)
    add_run_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``sketch-env`` entry point."""
    from sketch_env.cli import run_command
    from sketch_env.threads import configure_threads

    configure_threads()  # before torch is imported: passive OpenMP waiting on a busy machine

    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
