"""The README's picture: one kanji test episode with the frozen shipped B1, the sketch after 1, 5, 10 and 20
of its 20 steps beside the five best photos of each step's ranking (the true photo framed green).

    python -m benchmarks.figure                    # writes docs/images/episode.png
    python -m benchmarks.figure --sketch 12 --out episode.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT

__all__ = ["episode_figure", "main"]


def episode_figure(sketch: int, steps_shown: tuple[int, ...] = (1, 5, 10, 20)) -> np.ndarray:
    """Frames of the env's ``rgb_array`` render at the given steps (the backend's own query: a zero residual
    action), stacked top to bottom."""
    import gymnasium as gym

    import sketch_env  # noqa: F401  (registers the ids)

    env = gym.make("SketchEnv/OnTheFly-Kanji-v0", split="test", action="residual", render_mode="rgb_array",
                   progress=False)
    env.reset(seed=0, options={"sketch_index": sketch})
    frames = []
    for t in range(1, max(steps_shown) + 1):
        env.step(np.zeros(env.action_space.shape, np.float32))
        if t in steps_shown:
            frames.append(env.render())
    env.close()
    return np.concatenate(frames, axis=0)


def main(argv: list[str] | None = None) -> int:
    from sketch_env.viz import write_png

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sketch", type=int, default=0, help="test sketch index")
    p.add_argument("--out", default=str(ROOT / "docs" / "images" / "episode.png"))
    args = p.parse_args(argv)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    path = write_png(args.out, episode_figure(args.sketch))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
