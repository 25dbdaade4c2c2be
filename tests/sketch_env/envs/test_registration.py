"""The registered ids: entry points, JSON round trip of every spec, check_env over the registry."""

from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.envs.registration import EnvSpec
from gymnasium.utils.env_checker import check_env

import sketch_env  # noqa: F401  (registers the ids)
from sketch_env.envs import ENV_IDS

SYNTHETIC = "SketchEnv/OnTheFly-Synthetic-v0"

pytestmark = pytest.mark.usefixtures("env_cache")


def overrides(env_id: str, ckpt: str) -> dict:
    if env_id == SYNTHETIC:
        return {"progress": False}
    return {"dataset": "synthetic", "backend": ckpt, "data_root": None, "steps": 10, "progress": False}


def test_ids_are_registered_with_vector_entry_points():
    sketch_env.envs.register_envs()  # idempotent
    for env_id in ENV_IDS:
        spec = gym.spec(env_id)
        # the provisioning factories of the embedding layer: they turn the spec's names into the env's data
        assert spec.vector_entry_point == "embeddings.provision:make_retrieval_vector_env"
        assert spec.entry_point == "embeddings.provision:make_retrieval_env"
    assert {
        "SketchEnv/OnTheFly-v0",
        "SketchEnv/OnTheFly-Kanji-v0",
        "SketchEnv/OnTheFly-ShoeV2-v0",
        "SketchEnv/OnTheFly-ChairV2-v0",
        SYNTHETIC,
    } == set(ENV_IDS)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_spec_round_trips_through_json(env_id):
    spec = gym.spec(env_id)
    again = EnvSpec.from_json(spec.to_json())
    assert again == spec and again.kwargs == spec.kwargs


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env_over_the_registry(env_id, ckpt):
    env = gym.make(env_id, **overrides(env_id, ckpt))
    check_env(env.unwrapped)
    # the overridden spec (what spec.make rebuilds for the render check) also round-trips through JSON
    assert EnvSpec.from_json(env.unwrapped.spec.to_json()).kwargs == env.unwrapped.spec.kwargs
    env.close()
