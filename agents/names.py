"""The RL methods' names, without importing torch or Stable-Baselines3 (the CLI's choices, ``--help``)."""

__all__ = ["METHODS"]

#: every method of :data:`agents.algorithms.ALGORITHMS`, in the paper's table order
METHODS = ("vpg", "ppo-a-clip", "ppo-ac-clip", "ppo-a-kl", "ppo-ac-kl", "trpo")
