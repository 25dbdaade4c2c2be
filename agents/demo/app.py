"""The web part of ``sketch-env demo``: a Starlette (ASGI) app serving one static page and a small JSON API,
run by uvicorn on 127.0.0.1.

Routes (every one bounded; the client never names a file):

* ``GET /``: the page (``static/index.html``, with ``demo.js`` and ``demo.css``);
* ``GET /api/info``: :meth:`RetrievalDemo.info` (names, gallery size, targets, limits);
* ``POST /api/rank``: ``{"strokes": [[[x, y], ...], ...], "width": W, "height": H, "target": photo or null}``
  -> :meth:`RetrievalDemo.rank`; a body over ``limits.max_body_bytes`` is refused (413) before it is read whole;
* ``GET /api/sketch/{i}?size=N``: test sketch ``i`` as strokes on an N x N canvas (the replay);
* ``GET /api/photo/{p}``: gallery photo ``p``'s label and thumbnail (the target shown beside the canvas).

Bad input is a 400 with ``{"error": message}``, which the page shows.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from agents.demo.core import DemoInputError, RetrievalDemo
from sketch_env.errors import ArgumentError

__all__ = ["STATIC_DIR", "make_app", "serve", "start_server", "require_web"]

STATIC_DIR = Path(__file__).with_name("static")


def require_web() -> None:
    """Raise an :class:`ArgumentError` naming the extra to install when starlette or uvicorn is missing."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ArgumentError(f"the demo needs the web extra ({exc.name} is not installed): "
                            "pip install 'sketch-env[demo]'") from None


def make_app(demo: RetrievalDemo):
    """The Starlette app serving ``demo``."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    info = demo.info()
    limit = demo.limits.max_body_bytes

    def error(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def page(request: Request) -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    async def get_info(request: Request) -> JSONResponse:
        return JSONResponse(info)

    async def post_rank(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return error(f"request body over {limit} bytes", 413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return error(f"request body over {limit} bytes", 413)
        try:
            msg = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return error(f"the body is not JSON: {exc}")
        if not isinstance(msg, dict):
            return error("the body must be a JSON object with strokes, width and height")
        unknown = sorted(set(msg) - {"strokes", "width", "height", "target"})
        if unknown:
            return error(f"unknown fields {unknown}; expected strokes, width, height, target")
        try:
            t0 = time.perf_counter()
            res = await run_in_threadpool(demo.rank, msg.get("strokes"), msg.get("width"), msg.get("height"),
                                          msg.get("target"))
            res["timing_ms"]["server"] = round((time.perf_counter() - t0) * 1000, 3)
        except ArgumentError as exc:  # DemoInputError among them
            return error(str(exc))
        return JSONResponse(res)

    async def get_sketch(request: Request) -> JSONResponse:
        raw, size = request.path_params["index"], request.query_params.get("size", "400")
        try:
            index, side = int(raw), float(size)
        except ValueError:
            return error(f"sketch index and size must be numbers, got {raw!r} and {size!r}")
        try:
            return JSONResponse(demo.sketch_strokes(index, side))
        except DemoInputError as exc:
            return error(str(exc))

    async def get_photo(request: Request) -> JSONResponse:
        raw = request.path_params["index"]
        if not raw.isdigit() or not 0 <= int(raw) < demo.data.gallery_size:
            return error(f"photo must be an integer within 0..{demo.data.gallery_size - 1}, got {raw!r}")
        photo = int(raw)
        thumb = await run_in_threadpool(demo.thumbnail, photo)
        return JSONResponse({"photo": photo, "label": demo.label(photo), "thumb": thumb})

    routes = [
        Route("/", page),
        Route("/api/info", get_info),
        Route("/api/rank", post_rank, methods=["POST"]),
        Route("/api/sketch/{index}", get_sketch),
        Route("/api/photo/{index}", get_photo),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return Starlette(routes=routes)


def _config(app: Any, host: str, port: int):
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                          limit_concurrency=32, timeout_keep_alive=5)


def serve(demo: RetrievalDemo, host: str = "127.0.0.1", port: int = 8000, on_start: Any = None) -> None:
    """Serve ``demo`` until interrupted; ``on_start(url)`` is called once the socket listens."""
    import uvicorn

    server = uvicorn.Server(_config(make_app(demo), host, port))
    if on_start is not None:
        def watch() -> None:
            while not server.started and not server.should_exit:
                time.sleep(0.05)
            if server.started:
                on_start(_url(server, host))
        threading.Thread(target=watch, daemon=True).start()
    server.run()


def _url(server: Any, host: str) -> str:
    sock = server.servers[0].sockets[0]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{sock.getsockname()[1]}/"


def start_server(demo: RetrievalDemo, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0):
    """Serve ``demo`` from a background thread (``port=0``: a free port): ``(url, stop)``, where ``stop()``
    shuts the server down. For tests and benchmarks."""
    import uvicorn

    server = uvicorn.Server(_config(make_app(demo), host, port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the demo server did not start on {host}:{port}")
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout)

    return _url(server, host), stop
