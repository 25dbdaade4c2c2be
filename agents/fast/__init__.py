"""The fast path: the retrieval env and the policy-gradient updates on one torch device (:mod:`agents.fast.trainer`)."""

from agents.fast.env import DeviceRetrievalEnv
from agents.fast.trainer import FAST_ALGORITHMS, FastTrainConfig, FastTrainer, train_fast

__all__ = ["DeviceRetrievalEnv", "FastTrainer", "FastTrainConfig", "train_fast", "FAST_ALGORITHMS"]
