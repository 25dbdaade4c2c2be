"""The environment ids, registered with Gymnasium when ``sketch_env`` is imported.

All ids are configurations of one class, :class:`~sketch_env.envs.retrieval.OnTheFlyRetrievalEnv`, with
the batched :class:`~sketch_env.envs.vector.OnTheFlyRetrievalVectorEnv` for ``gym.make_vec``; spec kwargs
are plain values (names, numbers, paths), so specs round-trip through JSON. The entry points are the
embedding layer's provisioning factories (:mod:`embeddings.provision`): the env classes take arrays, and
turning a spec's names (dataset, backend, split) into arrays is that layer's work; gymnasium resolves the
entry point by name when an env is made, so registering imports neither the env modules nor torch.

=================================== ==========================================================================
``SketchEnv/OnTheFly-v0``           generic: pass ``dataset``, ``backend``, ``split``, ``steps``, ``schedule``,
                                    ``reward``, ``data_root``, ... (defaults: kanji, B1, train, 20, points, paper)
``SketchEnv/OnTheFly-Kanji-v0``     the embedded kanji data with the B1 the package ships: no argument, no
                                    download, no training
``SketchEnv/OnTheFly-ShoeV2-v0``    QMUL-Shoe-V2 with B1: needs ``data_root`` and a B1 you trained on it
``SketchEnv/OnTheFly-ChairV2-v0``   QMUL-Chair-V2 with B1: needs ``data_root`` and a B1 you trained on it
``SketchEnv/OnTheFly-Synthetic-v0`` the tiny synthetic data with the tiny B1 the package ships (tests,
                                    demos; not a benchmark)
=================================== ==========================================================================
"""

from __future__ import annotations

from typing import Any

__all__ = ["register_envs", "ENV_IDS", "DATASET_ENV_IDS", "env_id_for_dataset", "NAMESPACE",
           "STROKE_ORDER_ENTRY_POINT"]

NAMESPACE = "SketchEnv"
#: the factories that provision an env's data from its spec's names, then build the env (the layer above)
ENTRY_POINT = "embeddings.provision:make_retrieval_env"
VECTOR_ENTRY_POINT = "embeddings.provision:make_retrieval_vector_env"
STROKE_ORDER_ENTRY_POINT = "embeddings.provision:make_stroke_order_env"

_SPECS: dict[str, dict[str, Any]] = {
    f"{NAMESPACE}/OnTheFly-v0": {},
    f"{NAMESPACE}/OnTheFly-Kanji-v0": {"dataset": "kanji", "backend": "b1", "split": "train"},
    f"{NAMESPACE}/OnTheFly-ShoeV2-v0": {"dataset": "shoev2", "backend": "b1", "split": "train", "data_root": None},
    f"{NAMESPACE}/OnTheFly-ChairV2-v0": {"dataset": "chairv2", "backend": "b1", "split": "train", "data_root": None},
    f"{NAMESPACE}/OnTheFly-Synthetic-v0": {
        "dataset": "synthetic",
        "backend": "b1",
        "split": "train",
        "steps": 10,
    },
}

ENV_IDS = tuple(_SPECS)
#: dataset name -> its named configuration (kanji, shoev2, chairv2, synthetic)
DATASET_ENV_IDS = {kw["dataset"]: env_id for env_id, kw in _SPECS.items() if "dataset" in kw}


def env_id_for_dataset(dataset: str, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    """``(env id, kwargs)`` that give ``dataset``'s retrieval env: its named configuration, else the generic
    id with ``dataset=`` set; ``kwargs`` are added, with a ``backend`` or ``data_root`` path made absolute
    (run folders record them, and runs may start elsewhere). A ``data_root`` of None is left out."""
    from pathlib import Path

    if dataset in DATASET_ENV_IDS:
        env_id, extra = DATASET_ENV_IDS[dataset], {}
    else:
        env_id, extra = f"{NAMESPACE}/OnTheFly-v0", {"dataset": dataset}
    for key, value in kwargs.items():
        if key == "data_root" and value is None:
            continue
        if key == "data_root" or (key == "backend" and str(value).endswith(".pt")):
            value = str(Path(value).resolve())
        extra[key] = value
    return env_id, extra


def register_envs() -> None:
    """Register every id (module table) once; calling it again changes nothing."""
    import gymnasium

    for env_id, kwargs in _SPECS.items():
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(
            id=env_id,
            entry_point=ENTRY_POINT,
            vector_entry_point=VECTOR_ENTRY_POINT,
            kwargs=kwargs,
            max_episode_steps=None,
            disable_env_checker=False,
        )
