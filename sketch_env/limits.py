"""What a reader may allocate for a file that someone else made.

Datasets, checkpoints, agent zips and caches can come from anyone (SECURITY.md). Every reader checks what
a file announces (a size, a shape, an image's dimensions, a compressed member's length, a nesting depth)
against a limit *before* it allocates, and refuses a file beyond it with a :class:`DataFormatError` that
names the file, the item and the limit. The limits are generous for real data (the largest real inputs
are noted) and are parameters of the readers that take them; the defaults are here.

======================== ================= =============================================================
limit                    default           applies to
======================== ================= =============================================================
``MAX_FILE_BYTES``       1 GiB             any data file read whole (QMUL pickle: Shoe-V2 15 MB; ndjson)
``MAX_MEMBER_BYTES``     1 GiB             an uncompressed member of an npz or zip file
``MAX_SKETCH_POINTS``    100,000           points of one sketch after sampling its curves (QMUL: 519)
``MAX_CANVAS``           65,536 px         an SVG canvas side (Sketchy: 640 x 480)
``MAX_PHOTO_PIXELS``     50 million        pixels of one photo before decoding (QMUL: 400 x 400)
``MAX_JSON_BYTES``       64 MiB            the JSON member of an agent zip or a run folder's JSON file
======================== ================= =============================================================
"""

from __future__ import annotations

from pathlib import Path

from sketch_env.errors import DataFormatError

__all__ = ["MAX_FILE_BYTES", "MAX_MEMBER_BYTES", "MAX_SKETCH_POINTS", "MAX_CANVAS", "MAX_PHOTO_PIXELS",
           "MAX_JSON_BYTES", "check_file_size", "read_bytes_bounded", "check_bound"]

MAX_FILE_BYTES = 1 << 30
MAX_MEMBER_BYTES = 1 << 30
MAX_SKETCH_POINTS = 100_000
MAX_CANVAS = 65_536.0
MAX_PHOTO_PIXELS = 50_000_000
MAX_JSON_BYTES = 64 << 20


def check_bound(path: str | Path, value: float, limit: float, what: str, item: str | None = None) -> None:
    """A :class:`DataFormatError` if ``value`` (what the file announces) exceeds ``limit``."""
    if not value <= limit:
        raise DataFormatError(path, f"{what} is {value:,g}, beyond the limit of {limit:,g} "
                                    "(see sketch_env.limits; pass a larger limit if the file is trusted)", item)


def check_file_size(path: str | Path, limit: int = MAX_FILE_BYTES) -> int:
    """The size of file ``path`` in bytes, checked against ``limit``; unreadable or missing files are a
    :class:`DataFormatError` naming the file."""
    try:
        size = Path(path).stat().st_size
    except OSError as exc:
        raise DataFormatError(path, f"cannot read file ({exc.strerror or exc})") from exc
    if Path(path).is_dir():
        raise DataFormatError(path, "is a folder, not a file")
    check_bound(path, size, limit, "the file's size in bytes")
    return size


def read_bytes_bounded(path: str | Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of file ``path``, at most ``limit`` of them (checked before reading)."""
    check_file_size(path, limit)
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DataFormatError(path, f"cannot read file ({exc.strerror or exc})") from exc
