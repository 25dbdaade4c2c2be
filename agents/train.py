"""Training an RL method on the on-the-fly retrieval env (``sketch-env train``).

One run = one method, one env id, one seed, in its own folder (default ``runs/agents/<env>/<method>-s<seed>``)::

    config.json      what the run was started with (a resumed run must match it)
    last.zip         the latest checkpoint (atomic; written at every evaluation and at the end)
    best.zip         the checkpoint with the best validation m@B so far (selection never sees the test split)
    history.jsonl    one line per evaluation: env steps, wall time, validation m@A / m@B / A@q
    tb/              TensorBoard logs: SB3's training scalars, rollout/rank and rollout/inverse_rank of the
                     training episodes, eval/m@B and eval/m@A of the validation split

Training runs on the native vector env of the training split (``gym.make_vec``, adapted to SB3), with the
policy on ``device`` and the env's array work on ``env_device``. A killed run started again with the same
folder and configuration resumes from ``last.zip`` (weights, optimiser, step count, best score); the
rollout RNG restarts from a seed derived from the step count, so a resumed run is not bit-identical to an
uninterrupted one.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from agents.algorithms import algorithm_spec
from agents.config import load_hyperparams
from agents.configs import RLTrainConfig
from agents.envs import evaluate_agent_ranks, make_sb3_vec_env, native_env, policy_start
from agents.io import load_agent, save_agent
from agents.policy import LinearGaussianPolicy
from sketch_env.cache import read_json, write_json
from sketch_env.device import resolve_device
from sketch_env.log import logger
from sketch_env.metrics import summarise
from sketch_env.runs import check_resume, read_resume_file, run_lock

__all__ = ["RLTrainConfig", "TrainingRun", "train_agent", "build_agent", "quiet_logger", "split_hyperparams",
           "run_config_of"]


class _TrainingMonitor(BaseCallback):
    """Logs the training episodes' ranks, evaluates on the validation split every ``eval_every`` steps,
    keeps ``best.zip``, writes ``last.zip`` and ends training at the wall-time budget."""

    def __init__(self, run: TrainingRun) -> None:
        super().__init__()
        self.run = run
        self.next_eval = run.state["next_eval"]
        self.ranks: list[np.ndarray] = []

    def _on_step(self) -> bool:
        infos = self.locals.get("infos") or []
        if infos and "rank" in infos[0]:
            self.ranks.append(np.array([info["rank"] for info in infos], dtype=np.float64))
        if self.num_timesteps >= self.next_eval:
            self.run.evaluate_and_checkpoint(self.model)
            self.next_eval = self.run.state["next_eval"]
        return not self.run.out_of_time()

    def _on_rollout_end(self) -> None:
        if self.ranks:
            r = np.concatenate(self.ranks)
            self.logger.record("rollout/rank", float(r.mean()))
            self.logger.record("rollout/inverse_rank", float((1.0 / r).mean()))
            self.ranks = []


class TrainingRun:
    """One RL run folder: validation, checkpoints (``best.zip``, ``last.zip``), history and the time budget."""

    def __init__(self, cfg: RLTrainConfig, hp: dict[str, Any], env_kwargs: dict[str, Any]) -> None:
        self.cfg = cfg
        self.hp = hp
        self.env_kwargs = env_kwargs
        self.out = cfg.output_dir()
        self.t_start = time.perf_counter()
        # next_eval = 0: the first step evaluates the starting point (the frozen model's score when initialised
        # from the backend), before any update
        self.state: dict[str, Any] = {"best": -1.0, "next_eval": 0, "elapsed": 0.0}
        self.elapsed_before = 0.0

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t_start

    def out_of_time(self) -> bool:
        return self.cfg.minutes is not None and self.elapsed() >= self.cfg.minutes * 60.0

    def validate(self, model: Any) -> dict[str, float]:
        ranks, gallery = evaluate_agent_ranks(model, self.cfg.env_id, self.env_kwargs, split="val",
                                              env_device=self.cfg.env_device)
        return summarise(ranks, gallery)

    def evaluate_and_checkpoint(self, model: Any) -> None:
        scores = self.validate(model)
        step = int(model.num_timesteps)
        sb3_logger = getattr(model, "_logger", None)  # set up by learn(); absent for a run of 0 steps
        if sb3_logger is not None:
            sb3_logger.record("eval/m@B", scores["m@B"])
            sb3_logger.record("eval/m@A", scores["m@A"])
            sb3_logger.dump(step)
        row = {"timesteps": step, "elapsed": round(self.elapsed(), 1)} | {
            k: float(v) for k, v in scores.items() if k in ("m@A", "m@B", "A@1", "A@5", "A@10")}
        with open(self.out / "history.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        self.state["next_eval"] = step + self.cfg.eval_every
        self.state["elapsed"] = self.elapsed()
        extra = {"train_state": dict(self.state)}
        if scores["m@B"] > self.state["best"]:
            self.state["best"] = scores["m@B"]
            extra = {"train_state": dict(self.state)}
            save_agent(model, self.out / "best.zip", self.cfg.algo, self.cfg.env_id, self.env_kwargs, self.hp, extra)
        save_agent(model, self.out / "last.zip", self.cfg.algo, self.cfg.env_id, self.env_kwargs, self.hp, extra)
        if self.cfg.progress:
            logger.info(f"[{self.cfg.algo} s{self.cfg.seed}] {step} steps, {self.elapsed():.0f} s: validation "
                        f"m@A {scores['m@A']:.1f} m@B {scores['m@B']:.1f} (best {self.state['best']:.1f})")


def split_hyperparams(algo: str, hp: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], int, int | None, bool]:
    """``(constructor kwargs, policy kwargs, n_envs, n_timesteps, init_from_backend)`` of a hyper-parameter block."""
    _, _, fixed_policy = algorithm_spec(algo)
    learn_hp = dict(hp)
    n_envs = int(learn_hp.pop("n_envs", 64))
    n_timesteps = learn_hp.pop("n_timesteps", None)
    policy_kwargs = dict(learn_hp.pop("policy_kwargs", {}) or {})
    init_from_backend = bool(policy_kwargs.pop("init_from_backend", True))
    policy_kwargs = fixed_policy | policy_kwargs
    if algo == "vpg" and learn_hp.get("baseline"):
        policy_kwargs["critic"] = True
    return learn_hp, policy_kwargs, n_envs, None if n_timesteps is None else int(n_timesteps), init_from_backend


def quiet_logger() -> Any:
    """An SB3 logger that writes nothing: without one, ``learn`` with no TensorBoard folder still makes an
    empty ``/tmp/SB3-<date>`` folder per call."""
    from stable_baselines3.common.logger import Logger

    return Logger(folder=None, output_formats=[])


def build_agent(algo: str, hp: dict[str, Any], env: Any, seed: int, device: str = "cpu",
                tensorboard_log: str | None = None) -> Any:
    """A new SB3 agent of method ``algo`` on ``env`` (:class:`~sketch_env.envs.sb3.SB3VecEnv` over the native
    vector env of the training split), its mean layer started from the backend (``init_from_backend``): the
    model both training paths start from and save."""
    cls, fixed, _ = algorithm_spec(algo)
    learn_hp, policy_kwargs, _, _, init_from_backend = split_hyperparams(algo, hp)
    native = native_env(env)
    residual = native.options.action == "residual"
    start = policy_start(native.data, float(native.single_action_space.high.min()),
                         with_query_layer=init_from_backend and not residual)
    policy_kwargs.setdefault("obs_scale", start["obs_scale"])
    model = cls(LinearGaussianPolicy, env, policy_kwargs=policy_kwargs, seed=seed, device=device,
                tensorboard_log=tensorboard_log, verbose=0, **fixed, **learn_hp)
    if tensorboard_log is None:
        model.set_logger(quiet_logger())
    if init_from_backend:
        if residual:
            model.policy.zero_mean()
        else:
            model.policy.init_mean_from(start["weight"], start["bias"])
    return model


#: what a resumed run may change: where its policy runs
RESUME_IGNORES = ("config.device",)


def read_run_config(out: Path) -> dict[str, Any] | None:
    """The ``config.json`` of run folder ``out`` (None if absent; an unreadable one is a
    :class:`~sketch_env.errors.DataFormatError` naming it)."""
    return read_json(out / "config.json") if (out / "config.json").exists() else None


def run_config_of(cfg: Any, hp: dict[str, Any], out: Path) -> dict[str, Any]:
    """What a run folder's ``config.json`` records (a resumed run must match it): the configuration less the
    budget and display options, and the hyper-parameters."""
    run_config = {"config": asdict(cfg) | {"out": str(out)}, "hyperparams": hp}
    run_config = json.loads(json.dumps(run_config, default=str))
    for key in ("minutes", "timesteps", "progress"):  # a resumed run may get a new budget
        run_config["config"].pop(key, None)
    return run_config


def train_agent(cfg: RLTrainConfig) -> Path:
    """Train (or resume) one run; returns the path of ``best.zip``."""
    hp = load_hyperparams(cfg.algo, cfg.env_id, cfg.overrides)
    _, _, n_envs, n_timesteps, _ = split_hyperparams(cfg.algo, hp)
    timesteps = int(cfg.timesteps if cfg.timesteps is not None else (n_timesteps or 1_000_000))
    with run_lock(cfg.output_dir()) as out:  # one training per run folder
        return _train_agent_locked(cfg, hp, n_envs, timesteps, out)


def _train_agent_locked(cfg: RLTrainConfig, hp: dict[str, Any], n_envs: int, timesteps: int, out: Path) -> Path:
    env_kwargs = dict(cfg.env_kwargs)
    run_config = run_config_of(cfg, hp, out)
    env = make_sb3_vec_env(cfg.env_id, n_envs=n_envs, seed=cfg.seed, split="train", env_device=cfg.env_device,
                           **env_kwargs)
    run = TrainingRun(cfg, hp, env_kwargs)
    last = out / "last.zip"
    device = str(resolve_device(cfg.device))
    if last.exists():
        check_resume(out, read_run_config(out), run_config, ignore=RESUME_IGNORES)
    model = read_resume_file(last, lambda p: load_agent(p, env=env, device=device))
    if model is not None:
        from agents.io import read_meta

        run.state.update(read_meta(last).get("train_state", {}))
        run.elapsed_before = float(run.state.get("elapsed", 0.0))
        model.set_random_seed(cfg.seed + int(model.num_timesteps))
        logger.info(f"resuming {out} at {model.num_timesteps} env steps")
    else:
        write_json(out / "config.json", run_config)
        model = build_agent(cfg.algo, hp, env, cfg.seed, device, str(out / "tb"))
    remaining = max(0, timesteps - int(model.num_timesteps))
    if remaining and not run.out_of_time():
        model.learn(remaining, callback=_TrainingMonitor(run), reset_num_timesteps=False,
                    tb_log_name="run", progress_bar=False)
        run.state["cut_short"] = int(model.num_timesteps) < timesteps
        run.evaluate_and_checkpoint(model)
    elif not (out / "best.zip").exists():  # nothing to train (0 steps): the starting point is the result
        run.evaluate_and_checkpoint(model)
    if int(model.num_timesteps) < timesteps:
        logger.warning(f"the --minutes {cfg.minutes:g} cap cut this RL training short at {model.num_timesteps} of "
                       f"{timesteps} env steps: its figures are not those of the full run; run the same command again "
                       "without the cap (or a larger one) to finish it")
    env.close()
    return out / "best.zip"
