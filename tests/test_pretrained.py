"""The checkpoints the package ships: each is the file its model card describes (SHA-256, size), loads with
nothing unpickled, and gives the card's figures on the card's fixed subset of the test split.

The figures are recomputed here (CPU float32): on the machine that made the cards they are equal; elsewhere
float arithmetic can move a near-tie by one rank, so a figure may differ by one sketch in 200 (0.5 points of
A@k) and the tolerance is two such sketches.
"""

from __future__ import annotations

import pytest

from benchmarks.pretrained import AGENT_DIR, BACKEND_DIR, SHIPPED, agent_figures, backend_figures, card_of, sha256

pytestmark = pytest.mark.usefixtures("env_cache")

TOLERANCE = {"A@1": 1.0, "A@5": 1.0, "A@10": 1.0, "m@A": 0.5, "m@B": 0.5}
NAMES = list(SHIPPED)


def _path(name):
    spec = SHIPPED[name]
    return (BACKEND_DIR if spec["kind"] == "backend" else AGENT_DIR) / spec["file"]


@pytest.mark.parametrize("name", NAMES)
def test_the_shipped_file_is_the_one_its_card_describes(name):
    card, path = card_of(name), _path(name)
    assert card["file"] == path.name and card["sha256"] == sha256(path) and card["bytes"] == path.stat().st_size
    assert card["command"].startswith("python -m benchmarks.pretrained")
    assert card["license"] and card["test"]["figures"]["sketches"] >= card["test_subset"]["figures"]["sketches"]


def test_the_shipped_files_stay_small():
    total = sum(_path(n).stat().st_size for n in NAMES)
    assert total < 8e6, f"the shipped checkpoints take {total / 1e6:.1f} MB"


@pytest.mark.parametrize("name", NAMES)
def test_the_shipped_checkpoint_gives_its_cards_figures_on_the_subset(name):
    card, spec = card_of(name), SHIPPED[name]
    if spec["kind"] == "backend":
        got = backend_figures(_path(name), spec["steps"], subset=True)
    else:
        got = agent_figures(spec["file"].removesuffix(".zip"), subset=True)  # by its shipped name
    want = card["test_subset"]["figures"]
    assert got["sketches"] == want["sketches"] and got["gallery_size"] == want["gallery_size"]
    for key, tol in TOLERANCE.items():
        assert got[key] == pytest.approx(want[key], abs=tol), (key, got[key], want[key])
