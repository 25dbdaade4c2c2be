"""How long ``sketch-env demo`` takes to answer a stroke, and the page's screenshot.

    python -m benchmarks.demo                         # latency over HTTP, replaying test sketches
    python -m benchmarks.demo --screenshot docs/images/demo.png

The demo (the shipped kanji B1 and ppo-a-clip agent by default) is served on 127.0.0.1 from this process; test
sketches of its gallery are replayed stroke by stroke, each stroke one ``POST /api/rank`` with the strokes so
far, as the page sends them. Per stroke: the round trip (client send -> JSON answer parsed) and the server's
parts (parse and render, embed, policy, rank, thumbnails). The first pass has no thumbnail cached ("cold"),
a second pass over the same strokes has them all ("warm").

``--screenshot`` draws a test sketch with the mouse in headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium) and saves the page. The drawing helpers here are the ones the
browser test uses.

Writes ``README.md``, ``demo.csv`` (one row per stroke and pass) and ``summary.csv`` (the table) to ``--out``
(default ``benchmarks/results/demo``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import command_line, write_readme
from sketch_env.cache import write_csv

__all__ = ["CHROMIUM", "CHROMEDRIVER", "browser_available", "chrome", "open_demo", "draw_strokes", "main"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PARTS = ("render", "embed", "policy", "rank", "thumbnails", "server")


def browser_available() -> str | None:
    """None when a browser test can run here, else why not."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


def chrome(width: int = 1360, height: int = 860):
    """Headless Chromium under Selenium, with no network of its own (the flags a closed machine needs)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def open_demo(driver: Any, url: str, target: int | None = None, timeout: float = 30.0) -> None:
    """Load the page and wait until it has read ``/api/info``; choose ``target`` (a photo) to draw."""
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver.get(url)
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
    if target is not None and driver.find_element("id", "target").get_attribute("value") != str(target):
        before = _seq(driver)
        Select(driver.find_element("id", "target")).select_by_value(str(target))
        _wait_seq(driver, before, timeout)  # choosing a target clears the canvas and asks once


def _seq(driver: Any) -> int:
    return int(driver.find_element("id", "status").get_attribute("data-seq"))


def _wait_seq(driver: Any, after: int, timeout: float) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: _seq(d) > after)


def draw_strokes(driver: Any, strokes: list[list[list[float]]], on_stroke: Any = None, timeout: float = 30.0) -> None:
    """Draw ``strokes`` (canvas points) on the page's canvas with the mouse, one press-move-release a stroke,
    waiting after each for the page to show the server's answer; ``on_stroke(k)`` is called after stroke k."""
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = driver.find_element("id", "canvas")
    w, h = canvas.size["width"], canvas.size["height"]
    for k, stroke in enumerate(strokes, 1):
        before = _seq(driver)
        chain = ActionChains(driver, duration=0)
        x0, y0 = stroke[0]
        chain.move_to_element_with_offset(canvas, round(x0 - w / 2), round(y0 - h / 2)).click_and_hold()
        for x, y in stroke[1:]:
            chain.move_to_element_with_offset(canvas, round(x - w / 2), round(y - h / 2))
        chain.release().perform()
        _wait_seq(driver, before, timeout)
        if on_stroke is not None:
            on_stroke(k)


def _post(url: str, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
    data = json.dumps(body).encode()
    t0 = time.perf_counter()
    req = urllib.request.Request(url + "api/rank", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        out = json.loads(resp.read())
    return out, time.perf_counter() - t0


def measure(url: str, demo: Any, sketches: list[int], size: int = 400) -> list[dict[str, Any]]:
    """Replay ``sketches`` stroke by stroke against the server at ``url``, twice (cold, warm thumbnails)."""
    rows = []
    for phase in ("cold", "warm"):
        for i in sketches:
            sk = demo.sketch_strokes(i, size)
            for k in range(1, len(sk["strokes"]) + 1):
                res, rtt = _post(url, {"strokes": sk["strokes"][:k], "width": size, "height": size,
                                       "target": sk["photo"]})
                rows.append({"phase": phase, "sketch": i, "stroke": k, "round_trip": rtt * 1000,
                             **{p: res["timing_ms"][p] for p in PARTS},
                             **{f"rank_{m}": v["rank"] for m, v in res["methods"].items()}})
    return rows


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per pass: the round trip's median, 95th percentile and maximum, each server part's median (ms)."""
    out = []
    for phase in ("cold", "warm"):
        sel = [r for r in rows if r["phase"] == phase]
        rtt = np.array([r["round_trip"] for r in sel])
        out.append({"pass": phase, "strokes": len(sel), "round trip median (ms)": round(float(np.median(rtt)), 1),
                    "p95": round(float(np.percentile(rtt, 95)), 1), "max": round(float(rtt.max()), 1),
                    **{f"{p} median": round(float(np.median([r[p] for r in sel])), 1) for p in PARTS}})
    return out


def summary_table(summary: list[dict[str, Any]]) -> str:
    keys = list(summary[0])
    lines = ["| " + " | ".join(keys) + " |", "| --- | " + " | ".join("---:" for _ in keys[1:]) + " |"]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in summary]
    return "\n".join(lines)


def screenshot(url: str, demo: Any, path: Path, sketch: int) -> dict[str, Any]:
    """Draw test sketch ``sketch`` with the mouse and save the page as ``path``; the ranks the page shows."""
    sk = demo.sketch_strokes(sketch, 400)
    driver = chrome()
    try:
        open_demo(driver, url, sk["photo"])
        draw_strokes(driver, sk["strokes"])
        time.sleep(0.3)
        path.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(path))
        return {m: driver.find_element("id", f"rank-{m}").get_attribute("data-rank") for m in demo.methods}
    finally:
        driver.quit()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="agent (default: the demo's)")
    p.add_argument("--sketches", type=int, default=100, help="test sketches replayed (evenly spaced)")
    p.add_argument("--screenshot", default=None, metavar="PNG", help="only draw a sketch in Chromium and save")
    p.add_argument("--sketch", type=int, default=None, help="the sketch drawn for --screenshot")
    p.add_argument("--out", default="benchmarks/results/demo")
    args = p.parse_args(argv)

    from agents.demo.app import start_server
    from agents.demo.core import DEFAULT_MODEL, RetrievalDemo

    load = os.getloadavg()[0]  # the machine's load when the run began: the figures are only as quiet as it
    t0 = time.perf_counter()
    demo = RetrievalDemo(args.model or DEFAULT_MODEL)
    made = time.perf_counter() - t0
    url, stop = start_server(demo)
    try:
        if args.screenshot:
            why = browser_available()
            if why:
                print(f"error: {why}", file=sys.stderr)
                return 2
            sketch = args.sketch if args.sketch is not None else demo.reference[demo.info()["targets"][100]["photo"]]
            ranks = screenshot(url, demo, Path(args.screenshot), sketch)
            print(f"{args.screenshot}: sketch {sketch}, final ranks {ranks}")
            return 0
        n = demo.data.num_sketches
        sketches = sorted({int(i) for i in np.linspace(0, n - 1, min(args.sketches, n))})
        rows = measure(url, demo, sketches)
    finally:
        stop()
        demo.close()
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summary_rows(rows)
    for name, table_rows in (("demo.csv", rows), ("summary.csv", summary)):
        write_csv(out / name, table_rows)
    table = summary_table(summary)
    warm = np.array([r["round_trip"] for r in rows if r["phase"] == "warm"])
    notes = (f"The demo `{demo.model_name}` ({demo.env_id}, {demo.data.gallery_size} gallery photos) made in "
             f"{made:.1f} s; {len(sketches)} test sketches replayed stroke by stroke over HTTP on 127.0.0.1, "
             f"twice. {np.mean(warm < 100) * 100:.1f} % of the warm strokes were answered within 100 ms. The "
             f"1-minute load average when the run began: {load:.1f} on {os.cpu_count()} CPUs.")
    write_readme(out, "Retrieve as you draw: time to answer a stroke", command_line("demo", argv), table,
                 seconds=seconds, notes=notes, files=["demo.csv", "summary.csv"])
    print(notes)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
