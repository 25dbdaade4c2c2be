"""The embedded default dataset: KanjiVG stroke data as sketches, IPAexGothic glyphs as photos.

Sketches
    Every CJK unified ideograph (U+4E00-U+9FFF) in the PyPI package ``kanjivg``: the base drawing
    ``kanji/<code>.svg`` and its variant files ``<code>-<Variant>.svg`` of two kinds, each sketch
    labelled with its variant as its *style* (``"base"`` for the base drawing):

    * ``Kaisho*``: the regular-script handwriting style (plus its stroke-order sub-variants);
    * stroke-order variants (``HzFst``, ``VtLst``, ``Vt6``...): the same character drawn in another
      stroke order, which is exactly what matters to on-the-fly retrieval.

    Glyph-form variants (``Hyougai``, ``Jinmei``, ``Insatsu``, ``NoDot`` and their combinations) draw a
    *different shape* from the font's glyph, so they would be mislabelled pairs: they are left out.
    One ``<path>`` is one stroke, in KanjiVG's (human) stroke order; paths are sampled with
    :func:`sketch_env.svg_path.sample_path` every ``curve_step`` of the 109-unit frame.

Photos
    The same character rendered from IPAexGothic, the CJK font that the PyPI package
    ``matplotlib-fontja`` ships (IPA Font License v1.0), black on white. Characters the font lacks
    (2 in the pinned ``kanjivg`` version) are left out entirely.

Category
    The character's radical: the ``kvg:element`` of the first group whose ``kvg:radical`` is ``general``,
    else ``tradit``, else ``nelson`` (its visible form, so 氵 and 水 are different categories).

Split schemes (all deterministic functions of the characters and radicals)
    * ``instance``: train and test characters disjoint, about ``test_characters`` (1,000) of them in
      test, chosen per radical so both sides hold the same categories (radicals with one character stay
      in train). All sketches of a character go to its side.
    * ``category``: ``unseen_radicals`` (15) radicals with at least 20 characters each are held out
      whole for test (zero-shot and few-shot work); every other character trains.
    * ``style``: base drawings train, ``Kaisho*`` drawings test (an unseen drawing style); stroke-order
      variants are in neither side.

The parsed strokes are cached on disk (see :mod:`sketch_env.cache`), keyed by the ``kanjivg`` version,
the parser version and ``curve_step``; glyph rasters are cached per photo size.

KanjiVG is copyright (C) 2009-2025 Ulrich Apel and the KanjiVG contributors, CC BY-SA 3.0
(https://kanjivg.tagaini.net).
"""

from __future__ import annotations

import importlib.metadata
import os
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path

import numpy as np

from sketch_env.cache import atomic_path, cache_dir, cached_npz, stable_hash
from sketch_env.datasets.base import PhotoRecord, SketchDataset, SketchRecord, stable_fraction
from sketch_env.errors import ArgumentError, DataFormatError
from sketch_env.sketch import Sketch
from sketch_env.svg_path import PathSyntaxError, sample_path

__all__ = ["KanjiDataset", "kanjivg_dir", "font_path", "render_glyphs"]

_PARSER_VERSION = 1
_FRAME = 109.0
_SVG = "{http://www.w3.org/2000/svg}"
_KVG = "{http://kanjivg.tagaini.net}"
_FORM_VARIANTS = ("Hyougai", "Jinmei", "Insatsu", "NoDot")
_CJK = (0x4E00, 0x9FFF)


def kanjivg_dir() -> Path:
    """The ``kanji/`` folder installed by the ``kanjivg`` distribution."""
    try:
        dist = importlib.metadata.distribution("kanjivg")
    except importlib.metadata.PackageNotFoundError as exc:
        raise RuntimeError("the embedded kanji data needs the PyPI package 'kanjivg': pip install kanjivg") from exc
    path = Path(dist.locate_file("kanji"))
    if not path.is_dir():
        raise RuntimeError(f"kanjivg is installed but {path} is not a folder")
    return path


def font_path() -> Path:
    """IPAexGothic, shipped by ``matplotlib-fontja``."""
    try:
        import matplotlib_fontja  # noqa: F401  (only its folder is used)
    except ImportError as exc:
        raise RuntimeError(
            "kanji photos need the PyPI package 'matplotlib-fontja': pip install matplotlib-fontja"
        ) from exc
    path = Path(os.path.dirname(matplotlib_fontja.__file__)) / "fonts" / "ipaexg.ttf"
    if not path.is_file():
        raise RuntimeError(f"matplotlib-fontja is installed but {path} is missing")
    return path


@lru_cache(maxsize=1)
def _font_codepoints() -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(str(font_path()), lazy=True) as font:
        return frozenset(font.getBestCmap())


def _variant_kind(variant: str) -> str | None:
    """``"base"``, ``"kaisho"``, ``"order"`` (stroke-order variant) or None (glyph-form variant: skip)."""
    if not variant:
        return "base"
    if any(v in variant for v in _FORM_VARIANTS):
        return None
    return "kaisho" if variant.startswith("Kaisho") else "order"


def _parse_file(path: Path, curve_step: float) -> tuple[list[np.ndarray], str | None]:
    """Strokes (one array per path, in document order) and the radical of one KanjiVG file."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DataFormatError(path, f"malformed SVG: {exc}") from exc
    radicals: dict[str, str] = {}
    for g in root.iter(f"{_SVG}g"):
        kind = g.get(f"{_KVG}radical")
        if kind and kind not in radicals and g.get(f"{_KVG}element"):
            radicals[kind] = g.get(f"{_KVG}element")  # type: ignore[assignment]
    radical = next((radicals[k] for k in ("general", "tradit", "nelson") if k in radicals), None)
    strokes: list[np.ndarray] = []
    for p in root.iter(f"{_SVG}path"):
        d = p.get("d")
        if not d:
            continue
        try:
            strokes.extend(sample_path(d, curve_step * _FRAME))
        except PathSyntaxError as exc:
            raise DataFormatError(path, str(exc), item=p.get("id")) from exc
    return strokes, radical


def _build_strokes(curve_step: float) -> dict[str, np.ndarray]:
    from tqdm.auto import tqdm

    folder = kanjivg_dir()
    font = _font_codepoints()
    files = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".svg"):
            continue
        code_hex, _, variant = name[:-4].partition("-")
        code = int(code_hex, 16)
        if not (_CJK[0] <= code <= _CJK[1]) or code not in font:
            continue
        if _variant_kind(variant) is None:
            continue
        files.append((code, variant, folder / name))
    # a variant whose base drawing is missing has no category label: leave it out
    base_codes = {code for code, variant, _ in files if not variant}
    files = [f for f in files if f[0] in base_codes]

    points, stroke_ends, sketch_ptr, stroke_ptr = [], [], [0], [0]
    codes, styles = [], []
    radical_of: dict[int, str] = {}
    n_points = 0
    for code, variant, path in tqdm(files, desc="parsing KanjiVG", unit="file", mininterval=0.5):
        strokes, radical = _parse_file(path, curve_step)
        if not variant:
            radical_of[code] = radical or "none"
        sketch = Sketch.from_strokes(strokes, frame=(_FRAME, _FRAME))
        points.append(sketch.points)
        stroke_ends.append(sketch.stroke_ends)
        n_points += sketch.num_points
        sketch_ptr.append(n_points)
        stroke_ptr.append(stroke_ptr[-1] + sketch.num_strokes)
        codes.append(code)
        styles.append(variant or "base")
    char_codes = np.array(sorted(radical_of), dtype=np.int64)
    return {
        "points": np.concatenate(points).astype(np.float32),
        "stroke_ends": np.concatenate(stroke_ends).astype(np.int32),
        "sketch_ptr": np.asarray(sketch_ptr, dtype=np.int64),
        "stroke_ptr": np.asarray(stroke_ptr, dtype=np.int64),
        "codes": np.asarray(codes, dtype=np.int64),
        "styles": np.asarray(styles, dtype="<U32"),
        "char_codes": char_codes,
        "char_radicals": np.asarray([radical_of[c] for c in char_codes], dtype="<U8"),
    }


def _strokes_key(curve_step: float) -> str:
    return stable_hash(
        {
            "kanjivg": importlib.metadata.version("kanjivg"),
            "parser": _PARSER_VERSION,
            "curve_step": curve_step,
            "font": font_path().stat().st_size,
        }
    )


def render_glyphs(chars: list[str], size: int, scale: float = 0.9) -> np.ndarray:
    """Glyphs of ``chars`` in IPAexGothic, black on white, centred: uint8 ``(len(chars), size, size)``.

    ``scale`` is the font's em size as a fraction of the canvas.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(font_path()), size=max(4, round(size * scale)))
    out = np.empty((len(chars), size, size), dtype=np.uint8)
    for i, ch in enumerate(chars):
        img = Image.new("L", (size, size), 255)
        ImageDraw.Draw(img).text((size / 2, size / 2), ch, font=font, fill=0, anchor="mm")
        out[i] = np.asarray(img)
    return out


class KanjiDataset(SketchDataset):
    """KanjiVG kanji as sketches, font glyphs as photos (see the module docstring).

    Args:
        scheme: ``"instance"`` (default), ``"category"`` or ``"style"``.
        test_characters: about how many characters the instance split puts in test.
        unseen_radicals: how many radicals (of those with >= 20 characters) the category split holds out.
        curve_step: sampling step along strokes, as a fraction of the frame side.
    """

    name = "kanji"
    schemes = ("instance", "category", "style")

    def __init__(
        self,
        scheme: str | None = None,
        test_characters: int = 1000,
        unseen_radicals: int = 15,
        curve_step: float = 0.025,
    ) -> None:
        super().__init__(scheme)
        self.test_characters = test_characters
        self.unseen_radicals = unseen_radicals
        self.curve_step = curve_step
        self._data: dict[str, np.ndarray] | None = None
        self._test_chars: set[int] | None = None

    # -- raw data ------------------------------------------------------------------------------
    @property
    def data(self) -> dict[str, np.ndarray]:
        if self._data is None:
            key = _strokes_key(self.curve_step)
            self._data = cached_npz(
                cache_dir() / f"kanji-strokes-{key}.npz",
                key,
                lambda: _build_strokes(self.curve_step),
                required=("points", "stroke_ends", "sketch_ptr", "stroke_ptr", "codes", "styles"),
            )
        return self._data

    @property
    def radical_of(self) -> dict[int, str]:
        d = self.data
        return dict(zip(d["char_codes"].tolist(), d["char_radicals"].tolist()))

    def _split_of_chars(self) -> set[int]:
        """Code points of the test characters under this scheme (all schemes but ``style``)."""
        if self._test_chars is not None:
            return self._test_chars
        by_radical: dict[str, list[int]] = {}
        for code, rad in self.radical_of.items():
            by_radical.setdefault(rad, []).append(code)
        test: set[int] = set()
        if self.scheme == "instance":
            frac = self.test_characters / len(self.radical_of)
            for codes in by_radical.values():
                if len(codes) < 2:
                    continue
                codes = sorted(codes, key=lambda c: stable_fraction(chr(c), "kanji-instance"))
                test.update(codes[: round(len(codes) * frac)])
        elif self.scheme == "category":
            eligible = sorted((r for r, c in by_radical.items() if len(c) >= 20),
                              key=lambda r: stable_fraction(r, "kanji-category"))
            if self.unseen_radicals > len(eligible):
                raise ArgumentError(f"only {len(eligible)} radicals have >= 20 characters")
            for rad in eligible[: self.unseen_radicals]:
                test.update(by_radical[rad])
        self._test_chars = test
        return test

    def _side(self, code: int, style: str) -> str | None:
        if self.scheme == "style":
            kind = _variant_kind("" if style == "base" else style)
            return {"base": "train", "kaisho": "test"}.get(kind or "")
        return "test" if code in self._split_of_chars() else "train"

    # -- SketchDataset -------------------------------------------------------------------------
    def _load_sketches(self) -> list[SketchRecord]:
        d = self.data
        radical_of = self.radical_of
        folder = kanjivg_dir()
        records = []
        for i, (code, style) in enumerate(zip(d["codes"].tolist(), d["styles"].tolist())):
            side = self._side(code, style)
            if side is None:
                continue
            p0, p1 = d["sketch_ptr"][i], d["sketch_ptr"][i + 1]
            s0, s1 = d["stroke_ptr"][i], d["stroke_ptr"][i + 1]
            sketch = Sketch(d["points"][p0:p1], d["stroke_ends"][s0:s1])
            fname = f"{code:05x}" + ("" if style == "base" else f"-{style}") + ".svg"
            records.append(
                SketchRecord(sketch, chr(code), radical_of[code], style, side, str(folder / fname))
            )
        return records

    def _load_photos(self) -> list[PhotoRecord]:
        sides: dict[str, set[int]] = {"train": set(), "test": set()}
        if self.scheme == "style":
            for rec in self.sketches("train") + self.sketches("test"):
                sides[rec.split].add(ord(rec.instance))
        else:
            test = self._split_of_chars()
            for code in self.radical_of:
                sides["test" if code in test else "train"].add(code)
        radical_of = self.radical_of
        return [
            PhotoRecord(chr(c), radical_of[c], side, f"IPAexGothic U+{c:04X}")
            for side in ("train", "test")
            for c in sorted(sides[side])
        ]

    def glyphs(self, size: int) -> tuple[dict[str, int], np.ndarray]:
        """All character glyphs at ``size`` px (cached on disk, memory-mapped): index and uint8 array."""
        chars = [chr(c) for c in self.data["char_codes"].tolist()]
        key = stable_hash({"chars": "".join(chars), "size": size, "font": font_path().stat().st_size, "v": 1})
        path = cache_dir() / f"kanji-glyphs-{size}-{key}.npy"
        arr = None
        if path.exists():
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
                if arr.shape != (len(chars), size, size) or arr.dtype != np.uint8:
                    arr = None
            except (ValueError, OSError):
                arr = None
        if arr is None:
            glyphs = render_glyphs(chars, size)
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, glyphs)
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        return {c: i for i, c in enumerate(chars)}, arr

    def load_photo(self, photo: PhotoRecord, size: int) -> np.ndarray:
        return self.load_photos([photo], size)[0]

    def load_photos(self, photos, size: int) -> np.ndarray:
        index, glyphs = self.glyphs(size)
        idx = np.array([index[p.instance] for p in photos], dtype=np.int64)
        gray = np.asarray(glyphs[idx]) if len(idx) else np.empty((0, size, size), np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
