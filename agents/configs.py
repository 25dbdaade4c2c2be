"""The RL layer's run configuration, without importing torch or SB3 (the CLI builds ``sketch-env train``'s
flags and ``--help`` from it): :class:`RLTrainConfig`, run by :func:`agents.train.train_agent`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sketch_env.config import check_config

__all__ = ["RLTrainConfig"]


@dataclass
class RLTrainConfig:
    algo: str = "ppo-a-clip"
    env_id: str = "SketchEnv/OnTheFly-Kanji-v0"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """extra env kwargs (backend, steps, reward, ...); the split is set by the trainer"""
    timesteps: int | None = None
    """env steps of training (none: the hyper-parameter file's n_timesteps)"""
    minutes: float | None = None
    """an optional cap on the training time (evaluation included); a run it cuts short says so"""
    seed: int = 0
    """seed of the policy, the env's sketch order and the action noise"""
    device: str = "cpu"
    """where the policy runs (:func:`sketch_env.device.resolve_device`; ``"auto"``: CUDA when present). The CPU
    by default: the policy is one linear layer (F x d), which SB3 runs faster on the CPU than on a GPU, where
    kernel launches and transfers dominate (measured in ``benchmarks/rl_methods.py``'s log)"""
    env_device: str = "cpu"
    """where the native vector env computes distances, ranks and Kendall-tau"""
    eval_every: int = 100_000
    """env steps between validation evaluations (and checkpoints)"""
    overrides: dict[str, Any] = field(default_factory=dict)
    """hyper-parameter overrides (``policy_kwargs`` merged key by key)"""
    out: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        from agents.config import check_rl_target

        check_config(self, {"timesteps": (0, 10**12), "minutes": (0, None), "seed": (0, None),
                            "eval_every": (1, None)})
        check_rl_target(self.algo, self.env_id, self.env_kwargs, self.overrides)

    def output_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        from agents.envs import env_short_name
        from sketch_env.cache import data_dir

        return data_dir("agents") / env_short_name(self.env_id) / f"{self.algo}-s{self.seed}"
