"""The fast trainer (agents.fast.trainer): its losses equal the SB3 path's, K agents equal K runs, compiled
equals eager, checkpoints interchange with the SB3 path, resume, learning."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agents import losses
from agents.envs import evaluate_agent_ranks, make_native_vec_env, make_sb3_vec_env
from agents.evaluate import evaluate_model
from agents.fast.env import DeviceRetrievalEnv
from agents.fast.trainer import FastTrainConfig, FastTrainer, train_fast
from agents.io import load_agent
from agents.train import RLTrainConfig, build_agent, train_agent
from sketch_env.envs.data import RetrievalData
from sketch_env.envs.engine import EnvOptions

ENV = "SketchEnv/OnTheFly-Synthetic-v0"


TINY = {"n_envs": 8, "n_steps": 10, "batch_size": 40, "policy_kwargs": {"log_std_init": -3.0}}


def _models(seeds, algo="ppo-a-clip", hp=None):
    from agents.config import load_hyperparams

    tiny = {k: v for k, v in TINY.items() if not (algo == "vpg" and k == "batch_size")}
    hp = load_hyperparams(algo, ENV, tiny | (hp or {}))
    env = make_sb3_vec_env(ENV, n_envs=hp["n_envs"], seed=0, split="train")
    return [build_agent(algo, hp, env, s, "cpu") for s in seeds], hp


def _trainer(seeds, algo="ppo-a-clip", hp=None, compute="numpy", compile=None):
    models, hp = _models(seeds, algo, hp)
    vec = make_native_vec_env(ENV, 1, "train")
    env = DeviceRetrievalEnv(vec.data, len(seeds) * hp["n_envs"], vec.options, seeds=seeds, compute=compute)
    return FastTrainer(models, env, algo, hp, seeds, torch.device("cpu"), compile=compile), models


@pytest.mark.parametrize("algo", ["ppo-a-clip", "ppo-ac-clip", "ppo-a-kl", "vpg"])
def test_fast_losses_equal_the_sb3_losses_on_the_same_batch(algo):
    """The vmapped objective of the fast trainer equals what the SB3 algorithm computes from
    ``policy.evaluate_actions`` and :mod:`agents.losses` on the same minibatch."""
    trainer, models = _trainer([0], algo)
    trainer.collect()
    adv, returns = trainer.advantages()
    policy = models[0].policy
    b = trainer.buf
    obs = b["obs"][:, 0].reshape(-1, b["obs"].shape[-1])
    actions = b["actions"][:, 0].reshape(-1, b["actions"].shape[-1])
    old_lp, a, r = b["log_prob"][:, 0].reshape(-1), adv[:, 0].reshape(-1), returns[:, 0].reshape(-1)
    mean_old = b["mean"][:, 0].reshape(-1, actions.shape[-1])
    values, log_prob, entropy = policy.evaluate_actions(obs, actions)
    # the rollout's log-probabilities are the SB3 policy's
    torch.testing.assert_close(old_lp, log_prob.detach(), rtol=1e-5, atol=1e-4)
    common = dict(ent_coef=trainer.ent_coef, vf_coef=trainer.vf_coef, critic=policy.critic,
                  normalize_advantage=trainer.normalize_advantage)
    with torch.no_grad():  # perturb the policy so the ratio is not 1 and the clip matters
        policy.action_net.weight.add_(0.05 * torch.randn_like(policy.action_net.weight))
        trainer.params["action_net.weight"][0].copy_(policy.action_net.weight)
    values, log_prob, entropy = policy.evaluate_actions(obs, actions)
    if algo == "vpg":
        expected = losses.vpg_total_loss(log_prob, a, entropy, values.flatten(), r, **common)[0]
    else:
        kl = None
        if algo == "ppo-a-kl":
            kl = losses.diag_gaussian_kl(mean_old, trainer.params["log_std"][0].expand_as(mean_old),
                                         policy.mean_actions(obs), policy.log_std.expand_as(mean_old))
        expected = losses.ppo_loss(log_prob, old_lp, a, entropy, values.flatten(), r, clip_range=trainer.clip_range,
                                   kl=kl, kl_coef=float(trainer.kl_coef[0]), **common)[0]
    got = trainer.objective(obs[None], actions[None], old_lp[None], a[None], r[None], mean_old[None],
                            trainer.params["log_std"].detach())[0]
    torch.testing.assert_close(got[0], expected.detach(), rtol=1e-5, atol=1e-6)


def test_k_agents_at_once_equal_k_separate_runs():
    together, _ = _trainer([0, 1, 2], "ppo-ac-clip")
    apart = [_trainer([s], "ppo-ac-clip")[0] for s in (0, 1, 2)]
    for _ in range(2):
        together.train_rollout()
        for t in apart:
            t.train_rollout()
    for name, p in together.params.items():
        for i, t in enumerate(apart):
            torch.testing.assert_close(p[i], t.params[name][0], rtol=1e-5, atol=1e-6)
    assert not torch.equal(together.params["action_net.weight"][0], together.params["action_net.weight"][1])


def test_compiled_trainer_follows_the_eager_one():
    """``compile=``: the rollout forward and the objective go through ``torch.compile`` (the ``aot_eager``
    backend here: the same graph capture and compiled backward as ``inductor``, without its C++ build, so the
    test takes seconds) and train the same weights as the eager trainer from the same seed."""
    eager, _ = _trainer([0, 1], "ppo-ac-clip")
    compiled, _ = _trainer([0, 1], "ppo-ac-clip", compile="aot_eager")
    assert compiled._objective is not compiled.objective and compiled._heads is not compiled.heads
    start = eager.params["action_net.weight"].detach().clone()
    for _ in range(2):
        eager.train_rollout()
        compiled.train_rollout()
    assert not torch.allclose(eager.params["action_net.weight"], start)  # the rollouts did move the weights
    for name, p in eager.params.items():
        torch.testing.assert_close(compiled.params[name], p, rtol=1e-4, atol=1e-5)


def test_fast_run_checkpoints_interchange_with_the_sb3_path(tmp_path):
    """A fast run writes SB3 agents that load_agent / evaluate read and the SB3 path resumes; the fast
    trainer starts from the same weights as the SB3 path with the same seed."""
    cfg = FastTrainConfig(algo="ppo-a-clip", env_id=ENV, seeds=[0, 1], timesteps=240, eval_every=160, overrides=TINY,
                          out=str(tmp_path / "fast"), progress=False)
    bests = train_fast(cfg)
    for best in bests:
        assert best.exists() and (best.parent / "last.zip").exists() and (best.parent / "fast_state.pt").exists()
        history = [json.loads(line) for line in (best.parent / "history.jsonl").read_text().splitlines()]
        assert history[0]["timesteps"] == 0 and history[-1]["timesteps"] >= 240
    model = load_agent(bests[0].parent / "last.zip")
    assert model.num_timesteps >= 240
    rows = evaluate_model(bests[0], out=tmp_path / "eval")
    assert set(rows) == {"frozen backend", "RL (ppo-a-clip)"}
    # the SB3 path's untrained agent with seed 0 is the fast run's starting point (history row 0)
    sb3 = train_agent(RLTrainConfig(algo="ppo-a-clip", env_id=ENV, timesteps=0, overrides=TINY,
                                    out=str(tmp_path / "sb3"), progress=False))
    h_fast = json.loads((bests[0].parent / "history.jsonl").read_text().splitlines()[0])
    h_sb3 = json.loads((sb3.parent / "history.jsonl").read_text().splitlines()[0])
    assert h_fast["m@B"] == h_sb3["m@B"]
    # and the SB3 path can continue from a fast checkpoint: same policy class, same file format
    ranks, _ = evaluate_agent_ranks(model, ENV, {}, split="val")
    assert ranks.shape[1] > 0


def test_fast_run_resumes_where_it_stopped(tmp_path):
    def cfg(steps):
        return FastTrainConfig(algo="vpg", env_id=ENV, seeds=[3], timesteps=steps, eval_every=80, out=str(tmp_path),
                               overrides={"n_envs": 8, "n_steps": 10}, progress=False)

    train_fast(cfg(160))
    train_fast(cfg(320))
    resumed = torch.load(tmp_path / "vpg-s3" / "fast_state.pt", weights_only=True)["trainer"]
    other = tmp_path / "straight"
    train_fast(FastTrainConfig(**{**cfg(320).__dict__, "out": str(other)}))
    straight = torch.load(other / "vpg-s3" / "fast_state.pt", weights_only=True)["trainer"]
    assert resumed["num_timesteps"] == straight["num_timesteps"] == 320
    for name in straight["params"]:
        torch.testing.assert_close(resumed["params"][name], straight["params"][name])
    with pytest.raises(ValueError, match="different configuration"):
        train_fast(FastTrainConfig(**{**cfg(480).__dict__, "overrides": {"n_envs": 8, "n_steps": 10,
                                                                        "learning_rate": 1e-5}}))


def test_fast_trainer_learns_a_linear_retrieval_task():
    """From a random policy, a few seconds of fast PPO learn a task a linear query layer solves exactly (the
    feature is the true photo's embedding): the training rank falls from chance (~P/2) to about 1."""
    models, hp = _models([0], "ppo-a-clip", {"n_envs": 32, "batch_size": 80, "learning_rate": 0.03,
                                              "policy_kwargs": {"init_from_backend": False, "log_std_init": -0.5}})
    f, d = models[0].observation_space.shape[0], models[0].action_space.shape[0]
    rng = np.random.default_rng(0)
    p, n, steps = 19, 60, 10
    gallery = rng.normal(size=(p, d)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    photo = rng.integers(0, p, n)
    feats = np.zeros((n, steps, f), np.float32)
    feats[:, :, :d] = gallery[photo][:, None, :] / (models[0].policy.obs_scale * d)
    env = DeviceRetrievalEnv(RetrievalData.from_arrays(feats, gallery, photo), 32, EnvOptions(), seeds=[0])
    trainer = FastTrainer(models, env, "ppo-a-clip", hp, [0], torch.device("cpu"))
    ranks = [trainer.train_rollout()["rank"][0] for _ in range(25)]
    assert np.mean(ranks[:3]) > 7 and np.mean(ranks[-3:]) < 2, ranks


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="SB3 path"):
        train_fast(FastTrainConfig(algo="trpo", env_id=ENV))
