"""The main job, `sketch-env run` (agents.run): the backend, then PPO from it, compared on the test split."""

from __future__ import annotations


def test_main_job_trains_the_backend_then_ppo_and_compares_them(tmp_path, env_cache, capsys):
    """`sketch-env run` end to end on the synthetic data with tiny budgets: backend, features, PPO, table."""
    from agents.cli import main

    out = tmp_path / "runs"
    code = main(["run", "--dataset", "synthetic", "--gradient-steps", "6", "--steps", "5",
                 "--no-distractors", "--rl-timesteps", "1280", "--rl-eval-every", "640", "--rl-minutes", "2",
                 "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "frozen B1" in text and "RL (ppo-a-clip)" in text
    assert (out / "eval-rl" / "curves.png").stat().st_size > 0
    assert (out / "agents" / "synthetic-b1" / "ppo-a-clip-s0" / "best.zip").exists()
    # the summary says where it ran: the same seed repeats its figures bit for bit on one machine only
    import json
    import os

    import torch

    from sketch_env.device import machine_name

    machine = json.loads((out / "summary.json").read_text())["machine"]
    assert machine["processor"] == machine_name() and machine["cpus"] == os.cpu_count()
    assert machine["torch"] == torch.__version__


def test_main_job_on_a_tiny_qmul_dataset_uses_the_real_photo_settings(tmp_path, env_cache, capsys):
    """`sketch-env run --dataset chairv2 --root DIR` with no other flag on a generated QMUL-layout folder:
    the backend is trained with the real-photo recipe (edge maps, mirrored pairs, stroke drop, no test-time
    mirror averaging), records it in its checkpoint, and the RL stage runs to the comparison table."""
    import torch

    from agents.cli import main
    from tests.data_formats import write_tiny_qmul

    root = write_tiny_qmul(tmp_path / "chair", photos=8, per_photo=2)
    out = tmp_path / "runs"
    code = main(["run", "--dataset", "chairv2", "--root", str(root), "--gradient-steps", "4", "--steps", "3",
                 "--no-distractors", "--rl-timesteps", "256", "--rl-eval-every", "128", "--out", str(out)])
    assert code == 0
    assert "RL (ppo-a-clip)" in capsys.readouterr().out
    ckpt = torch.load(out / "embeddings" / "chairv2-published" / "b1-s0" / "backend.pt", weights_only=True)
    config, training = ckpt["config"], ckpt["extra"]["training"]
    assert (config["photo_preprocess"], config["photo_size"], config["flip_average"]) == ("edges", 256, False)
    assert training["photo_kind"] == "photo" and training["flip"] is True and training["stroke_drop"] == 0.15
    assert training["ema_horizon"] == 0.2  # real photos: the weight average (renderings train without one)
