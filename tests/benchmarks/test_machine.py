"""benchmarks.machine: the training-step comparison behind ``TrainConfig.channels_last``."""

from __future__ import annotations

import torch


def test_the_training_step_variants_take_turns_and_leave_the_default_layout(monkeypatch):
    from benchmarks import machine
    from embeddings import train

    layouts = []
    real = train.set_memory_format

    def spy(backend, layout):
        layouts.append(layout)
        real(backend, layout)

    monkeypatch.setattr(train, "set_memory_format", spy)
    rows = machine.train_step_times(steps=1, rounds=2, warmup=1)
    assert [r["name"] for r in rows] == [name for name, _, _ in machine.TRAIN_VARIANTS]
    assert all(len(r["rounds"]) == 2 and r["seconds"] > 0 for r in rows)
    assert rows[0]["speed"] == 1.0
    cl, default = torch.channels_last, torch.contiguous_format
    turn = [cl if channels_last else default for _, channels_last, _ in machine.TRAIN_VARIANTS]
    assert layouts == turn + turn + turn + [default]  # warm-up, two rounds, then back to the default
