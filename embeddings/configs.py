"""The run configurations of the embedding layer's trainings, without importing torch (the CLI builds its
flags and ``--help`` from them): :class:`TrainConfig` (``sketch-env embed train``, :mod:`embeddings.train`)
and :class:`MetaTrainConfig` (``sketch-env embed meta-train``, :mod:`embeddings.meta_train`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sketch_env.config import check_config
from sketch_env.errors import ConfigError

__all__ = ["TrainConfig", "MetaTrainConfig", "DEFAULT_TRAINING_PAIRS"]

#: a run's length when neither gradient_steps nor epochs is given, in (sketch, photo) training pairs: the
#: gradient steps are this divided by the batch size (3,000 steps of 64 pairs for real photos, 1,500 of 128 for
#: renderings), so a larger batch costs no more time
DEFAULT_TRAINING_PAIRS = 192_000


@dataclass
class TrainConfig:
    """Options of ``sketch-env embed train`` (each also a CLI flag)."""

    backend: str = "b1"
    """registry name: ts, b1, b2, b3"""
    dataset: str = "kanji"
    root: str | None = None
    """data folder for datasets read from disk"""
    scheme: str | None = None
    """split scheme (None: the dataset's default)"""
    out: str | None = None
    """run folder (default ``<data>/backends/<dataset>-<scheme>/<backend>-s<seed>``, where backend names are looked
    up: :func:`embeddings.provision.user_backend_dir`)"""
    gradient_steps: int | None = None
    """the run's length in optimizer updates, all B3 models together (None: 192,000 training pairs divided by
    the batch size, unless ``epochs`` is given)"""
    epochs: int | None = None
    """the run's length in passes over the training photos instead of gradient steps"""
    batch_size: int | None = None
    """photos per batch (at most the training photos); each brings one of its sketches. None: by what the
    dataset's photos are: 128 for renderings (kanji: thousands of photos, more in-batch negatives pay), 64 for
    real photos (a few hundred photos: more, smaller steps pay)"""
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"
    minutes: float | None = None
    """a cap on the wall time of training (validation excluded); the run is defined by its steps, and a run
    the cap cuts short records it (``cut_short``) and says so"""
    val_fraction: float = 0.05
    """share of the training photos held out for validation (by a hash of the name)"""
    val_min_photos: int = 50
    """but at least this many (at most half the photos): enough to select a checkpoint on a small dataset"""
    val_sketches: int = 300
    """at most this many held-out sketches are scored at each evaluation"""
    eval_every: int | None = None
    """gradient steps between evaluations (and checkpoints); None: an epoch when ``epochs`` is given, else
    a twentieth of the run"""
    steps: int = 20
    """schedule length S (partial training and validation)"""
    jitter: float = 0.004
    """std of the point jitter, in units of the frame"""
    rotate_deg: float = 8.0
    scale: float = 0.08
    shift: float = 0.04
    augment: bool = True
    flip: bool | None = None
    """mirror half the (sketch, photo) pairs (both alike); None: by the dataset's photo kind (:data:`PHOTO_KINDS`)"""
    stroke_drop: float | None = None
    """drop each stroke of a training sketch with this probability (one always stays); None: by photo kind"""
    ema_horizon: float | None = None
    """keep an exponential moving average of the weights over about this share of the run's steps (decay
    ``1 - 1 / (ema_horizon * steps)``), and evaluate and save it; 0: the raw weights. None: by photo kind
    (real photos 0.2, renderings 0: on kanji the average lagged the weights and cost m@A and m@B, on Chair-V2
    it raised A@5)"""
    step_power: float = 0.0
    """which schedule step a partial-sketch training item (B2, B3) is cut at: step t = 1..S with
    ``P(t) = t^p / sum_u u^p``. ``p = 0`` draws every step alike; ``p > 0`` draws later steps, where 1/rank
    and A@q are earned, more often (``p = 1``: the complete sketch 2/(S+1) of the time instead of 1/S), at
    the cost of the first steps, which m@A weighs"""
    precision: str = "fp32"
    """precision of the forward pass: ``fp32``, ``bf16`` (bfloat16 autocast; weights, optimiser state and
    the loss stay float32) or ``auto`` (bf16 where the processor computes bfloat16 natively: a CPU with
    AVX512-BF16, a CUDA GPU with bf16; else fp32)"""
    channels_last: bool = True
    """run the training step's convolutions on channels-last tensors (``N, H, W, C`` in memory): the same
    computation up to float rounding, on faster kernels (a B1 step 1.25x as fast on a 2-core AMD EPYC,
    ``python -m benchmarks.machine --parts train``; Chair-V2 B1 over 3 seeds within the intervals of the
    contiguous layout's, ``benchmarks/results/recipe-chairv2-speed``); False: the contiguous layout"""
    progress: bool = True
    backend_options: dict[str, Any] = field(default_factory=dict)
    """overrides of the backend's configuration (e.g. {"loss": "holef"}, {"models": 5})"""

    def __post_init__(self) -> None:
        check_config(self, {"gradient_steps": (1, 10**9), "epochs": (1, 10**7), "minutes": (0, None),
                            "batch_size": (2, 1 << 16), "lr": (0, 10), "weight_decay": (0, 10), "seed": (0, None),
                            "val_fraction": (0, 0.9), "val_min_photos": (0, 1 << 20), "val_sketches": (1, None),
                            "eval_every": (1, None), "steps": (1, 1000), "jitter": (0, 1), "rotate_deg": (0, 180),
                            "scale": (0, 0.9), "shift": (0, 0.5), "stroke_drop": (0, 0.9), "step_power": (0, 100),
                            "ema_horizon": (0, 1)})
        if self.gradient_steps is not None and self.epochs is not None:
            raise ConfigError("give the run's length as gradient_steps or as epochs, not both "
                              f"(got gradient_steps={self.gradient_steps}, epochs={self.epochs})")

    def output_dir(self, scheme: str) -> Path:
        if self.out:
            return Path(self.out)
        from embeddings.provision import user_backend_dir

        return user_backend_dir(self.backend, self.dataset, scheme, self.seed)


@dataclass
class MetaTrainConfig:
    """Options of meta-training (module docstring)."""

    dataset: str = "kanji"
    root: str | None = None
    scheme: str = "category"
    out: str | None = None
    """run folder (default ``<data>/backends/<dataset>-<scheme>/meta-s<seed>``, :func:`sketch_env.cache.data_dir`)"""
    minutes: float | None = None
    """an optional cap on the wall time of meta-training (the run is defined by ``outer_steps``)"""
    outer_steps: int = 750
    """outer (meta) updates: about 3 minutes of a 2-core CPU at kanji's default sizes"""
    meta_batch: int = 4
    shots: int = 5
    """support pairs of a training task"""
    queries: int = 10
    gallery: int = 32
    """photos per training task (support and query photos included)"""
    lr: float = 3e-4
    weight_decay: float = 1e-4
    init_from: str | None = None
    """a trained triplet checkpoint (e.g. B1 on the same split) whose F and M the run starts from"""
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 50
    augment: bool = True
    progress: bool = True
    backend_options: dict[str, Any] = field(default_factory=dict)
    """overrides of the meta backend's configuration (``inner``, ``margin_net``, ``*_weight``, ...)"""

    def __post_init__(self) -> None:
        check_config(self, {"minutes": (0, None), "outer_steps": (1, 10**9), "meta_batch": (1, 4096),
                            "shots": (1, 4096), "queries": (1, 4096), "gallery": (2, 1 << 20), "lr": (0, 10),
                            "weight_decay": (0, 10), "seed": (0, None), "checkpoint_every": (1, None)})

    def output_dir(self, scheme: str) -> Path:
        if self.out:
            return Path(self.out)
        from embeddings.provision import user_backend_dir

        return user_backend_dir("meta", self.dataset, scheme, self.seed)
