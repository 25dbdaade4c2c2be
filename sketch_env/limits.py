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
(the archive's size)     -                 a compressed member of an npz or zip file (:func:`check_zip_member`)
``MAX_SKETCH_POINTS``    100,000           points of one sketch after sampling its curves (QMUL: 519)
``MAX_CANVAS``           65,536 px         an SVG canvas side (Sketchy: 640 x 480)
``MAX_PHOTO_PIXELS``     50 million        pixels of one photo before decoding (QMUL: 400 x 400)
``MAX_JSON_BYTES``       64 MiB            the JSON member of an agent zip or a run folder's JSON file
======================== ================= =============================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sketch_env.errors import DataFormatError

__all__ = ["MAX_FILE_BYTES", "MAX_MEMBER_BYTES", "MAX_SKETCH_POINTS", "MAX_CANVAS", "MAX_PHOTO_PIXELS",
           "MAX_JSON_BYTES", "check_file_size", "read_bytes_bounded", "check_bound", "check_zip_member",
           "load_torch_file"]

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


def check_zip_member(path: str | Path, info: Any, max_bytes: int = MAX_MEMBER_BYTES) -> None:
    """What a zip directory entry ``info`` (a :class:`zipfile.ZipInfo` of the archive at ``path``) announces,
    checked before the member is read: its uncompressed size against ``max_bytes``, and its compressed size
    against the archive's own size. ``zipfile`` sizes its read buffers by the compressed size, so a 1 KB
    archive announcing a 1.8 GB member would otherwise allocate a gigabyte before failing its CRC."""
    check_bound(path, info.file_size, max_bytes, "the uncompressed size in bytes", info.filename)
    archive = Path(path).stat().st_size
    if info.compress_size > archive:
        raise DataFormatError(path, f"announces {info.compress_size:,} compressed bytes in an archive of "
                                    f"{archive:,} bytes (a damaged or crafted zip directory)", info.filename)


def load_torch_file(path: str | Path, map_location: Any = "cpu", max_bytes: int = MAX_FILE_BYTES) -> Any:
    """``torch.load(path, weights_only=True)`` of a file someone else may have made, bounded first: the file's
    size, its being a zip-format torch file (what ``torch.save`` writes; the legacy format is refused, since
    torch's reader of it allocates whatever length a 14-byte file announces), and each member's announced
    sizes (:func:`check_zip_member`). Torch's own errors are left to the caller, which names the file."""
    import zipfile

    import torch

    check_file_size(path, max_bytes)
    if not zipfile.is_zipfile(path):
        raise DataFormatError(path, "not a zip-format torch file (what torch.save writes; the legacy format is "
                                    "not read)")
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                check_zip_member(path, info, max_bytes)
    except zipfile.BadZipFile as exc:
        raise DataFormatError(path, f"not a readable zip-format torch file ({exc})") from None
    return torch.load(path, map_location=map_location, weights_only=True)


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
