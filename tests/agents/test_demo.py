"""``sketch-env demo``: the ranking of drawn strokes, its JSON API, and the page driven in headless Chromium."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from agents.demo import DemoInputError, DemoLimits, RetrievalDemo, parse_strokes


@pytest.fixture(scope="module")
def demo():
    d = RetrievalDemo()  # the shipped kanji B1 and ppo-a-clip agent
    yield d
    d.close()


@pytest.fixture(scope="module")
def client(demo):
    from starlette.testclient import TestClient

    from agents.demo.app import make_app

    with TestClient(make_app(demo)) as c:
        yield c


# -- the ranking ------------------------------------------------------------------------------------------


def test_a_replayed_test_sketch_is_embedded_as_the_env_embeds_it(demo):
    """Strokes sent as canvas points, rendered with the backend's settings, give the feature the env's data
    hold for the complete sketch (its last step), so the model sees what it was trained on."""
    from sketch_env.render import render_sketch
    from sketch_env.sketch import Sketch

    data = demo.data
    for i in (0, 57, 911):
        sk = demo.sketch_strokes(i, 400)
        arrays, w, h = parse_strokes(sk["strokes"], 400, 400)
        raster = render_sketch(Sketch.from_strokes(arrays, frame=(w, h)), data.render_config)
        live = demo.backend.sketch_features(raster[None], data.steps - 1)
        stored = np.asarray(data.sketch_features[data.rows(np.array([i])), data.steps - 1])
        np.testing.assert_allclose(live, stored, atol=1e-4)


def test_the_frozen_rank_of_a_complete_sketch_is_the_envs(demo):
    """The demo's frozen rank of a whole test sketch equals the env's rank at the last step (residual action
    0: the backend's own query)."""
    from sketch_env.envs import step

    data = demo.data
    prepared = step.prepare_gallery(data.gallery)
    for i in (3, 200, 1500):
        sk = demo.sketch_strokes(i, 400)
        res = demo.rank(sk["strokes"], 400, 400, target=sk["photo"])
        own = np.asarray(data.queries[data.rows(np.array([i])), data.steps - 1])
        env_rank = int(step.true_ranks(step.distances(step.queries_from_actions(np.zeros_like(own), own), prepared),
                                       np.array([sk["photo"]]))[0])
        assert res["methods"]["frozen"]["rank"] == env_rank
        assert res["strokes"] == len(sk["strokes"])


def test_ranks_fall_as_the_sketch_is_drawn_and_the_top_k_is_ordered(demo):
    sk = demo.sketch_strokes(139, 400)
    ranks = [demo.rank(sk["strokes"][:k], 400, 400, sk["photo"])["methods"] for k in range(1, len(sk["strokes"]) + 1)]
    assert ranks[0]["frozen"]["rank"] > 1 and ranks[-1]["frozen"]["rank"] == 1 and ranks[-1]["rl"]["rank"] == 1
    top = ranks[-1]["rl"]["top"]
    assert len(top) == demo.topk and top[0]["photo"] == sk["photo"]
    assert all(t["thumb"].startswith("data:image/png;base64,") for t in top)


def test_no_strokes_rank_nothing(demo):
    res = demo.rank([], 400, 400, target=0)
    assert res["strokes"] == 0 and all(m["rank"] is None and m["top"] == [] for m in res["methods"].values())


@pytest.mark.parametrize("strokes, width, message", [
    ("no", 400, "list of strokes"),
    ([[]], 400, "non-empty list"),
    ([[[1, 2, 3]]], 400, r"\[x, y\]"),
    ([[[1, True]]], 400, "must be a number"),
    ([[[1, float("nan")]]], 400, "finite"),
    ([[[1e9, 0]]], 400, "far off"),
    ([[[1, 2]]], 0, "width must be within"),
    ([[[1, 2]]] * 201, 400, "at most 200 strokes"),
    ([[[1, 2]] * 4001], 400, "at most 4000"),
])
def test_bad_strokes_get_a_clear_error(strokes, width, message):
    with pytest.raises(DemoInputError, match=message):
        parse_strokes(strokes, width, 400)


def test_the_point_budget_bounds_a_whole_sketch():
    with pytest.raises(DemoInputError, match="at most 10 points a sketch"):
        parse_strokes([[[1, 2]] * 6, [[1, 2]] * 6], 400, 400, DemoLimits(max_points=10))


def test_an_agent_and_a_backend_that_disagree_are_refused():
    from sketch_env.errors import ArgumentError

    with pytest.raises(ArgumentError, match="trained on backend 'b1'"):
        RetrievalDemo(backend="b2")


def test_the_frozen_backend_alone():
    d = RetrievalDemo(None, dataset="synthetic")
    try:
        assert d.methods == ["frozen"]
        sk = d.sketch_strokes(0, 200)
        assert d.rank(sk["strokes"], 200, 200, sk["photo"])["methods"]["frozen"]["rank"] >= 1
    finally:
        d.close()


# -- the JSON API -------------------------------------------------------------------------------------------


def test_the_api_serves_the_page_info_rankings_and_replays(client, demo):
    assert "canvas" in client.get("/").text
    assert client.get("/static/demo.js").status_code == 200
    info = client.get("/api/info").json()
    assert info["gallery_size"] == demo.data.gallery_size and info["methods"] == ["frozen", "rl"]
    sk = client.get("/api/sketch/139", params={"size": 300}).json()
    assert len(sk["strokes"]) == 7 and np.asarray(sk["strokes"][0]).max() <= 300
    res = client.post("/api/rank", json={"strokes": sk["strokes"], "width": 300, "height": 300,
                                         "target": sk["photo"]}).json()
    assert res["methods"]["frozen"]["rank"] == 1 and res["timing_ms"]["server"] > 0
    photo = client.get(f"/api/photo/{sk['photo']}").json()
    assert photo["label"] == sk["label"] and photo["thumb"].startswith("data:image/png")


@pytest.mark.parametrize("body, status, message", [
    (b"not json", 400, "not JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (json.dumps({"strokes": [], "width": 400, "height": 400, "path": "/etc/passwd"}).encode(), 400, "unknown fields"),
    (json.dumps({"strokes": [[[0, 0]]], "width": 400, "height": 400, "target": 10**6}).encode(), 400, "target"),
    (json.dumps({"strokes": [[[0, "x"]]], "width": 400, "height": 400}).encode(), 400, "must be a number"),
])
def test_the_api_refuses_bad_requests_with_a_message(client, body, status, message):
    resp = client.post("/api/rank", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == status and message in resp.json()["error"]


def test_the_api_bounds_the_request_size(client, demo):
    big = b" " * (demo.limits.max_body_bytes + 1)
    resp = client.post("/api/rank", content=big)
    assert resp.status_code == 413


@pytest.mark.parametrize("url", ["/api/sketch/-1", "/api/sketch/99999", "/api/sketch/abc", "/api/photo/5000",
                                 "/api/photo/..%2f..%2fetc"])
def test_the_api_refuses_bad_indices(client, url):
    resp = client.get(url)
    assert resp.status_code in (400, 404)
    if resp.status_code == 400:
        assert resp.json()["error"]


def test_static_files_stay_inside_the_package(client):
    assert client.get("/static/../core.py").status_code == 404
    assert client.get("/static/%2e%2e/core.py").status_code == 404


def test_the_cli_serves_on_loopback_by_default():
    from agents.cli import build_parser

    args = build_parser().parse_args(["demo"])
    assert args.host == "127.0.0.1" and args.model == "kanji-b1-ppo-a-clip-s0"


# -- the page in a real browser ------------------------------------------------------------------------------


def test_drawing_a_test_sketch_with_the_mouse_brings_its_photo_to_the_top(demo, tmp_path):
    """Headless Chromium draws test sketch 139 (7 strokes) with the mouse; after each stroke the page shows
    the server's new rankings, and once the whole sketch is drawn both methods rank its photo first."""
    from benchmarks.demo import browser_available, chrome, draw_strokes, open_demo

    why = browser_available()
    if why and os.environ.get("SKETCH_ENV_REQUIRE_BROWSER"):
        pytest.fail(f"SKETCH_ENV_REQUIRE_BROWSER is set, but {why}")
    if why:
        pytest.skip(why)
    from agents.demo.app import start_server

    url, stop = start_server(demo)
    driver = chrome()
    try:
        sk = demo.sketch_strokes(139, 400)
        open_demo(driver, url, sk["photo"])
        seen = []

        def check(k: int) -> None:
            status = driver.find_element("id", "status")
            assert status.get_attribute("data-strokes") == str(k)
            ranks = {m: driver.find_element("id", f"rank-{m}").get_attribute("data-rank") for m in ("frozen", "rl")}
            top = [li.get_attribute("data-photo") for li in driver.find_elements("css selector", "#top-rl li")]
            assert len(top) == demo.topk and all(r.isdigit() for r in ranks.values())
            seen.append((ranks, top))

        draw_strokes(driver, sk["strokes"], on_stroke=check)
        assert len(seen) == len(sk["strokes"])
        assert int(seen[0][0]["frozen"]) > 1  # one stroke does not find it
        assert seen[-1][0] == {"frozen": "1", "rl": "1"} and seen[-1][1][0] == str(sk["photo"])
        assert len({tuple(top) for _, top in seen}) > 1  # the ranking moved as strokes came
        shot = tmp_path / "demo.png"
        driver.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
        assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()
        stop()
