"""make_dataset and the deterministic splits."""

from __future__ import annotations

import numpy as np
import pytest

from sketch_env.datasets import make_dataset
from sketch_env.datasets.base import stable_fraction
from sketch_env.datasets.synthetic import SyntheticDataset


def test_stable_fraction():
    assert stable_fraction("abc") == stable_fraction("abc")
    assert stable_fraction("abc", "x") != stable_fraction("abc", "y")
    vals = [stable_fraction(str(i)) for i in range(2000)]
    assert 0 <= min(vals) and max(vals) < 1
    assert 0.45 < float(np.mean(vals)) < 0.55


# ============================================================================================== make_dataset
def test_make_dataset_synthetic_with_options():
    ds = make_dataset("Synthetic", n_instances=8, sketches_per_instance=1)
    assert isinstance(ds, SyntheticDataset) and ds.n_instances == 8
    assert len(ds.sketches("train")) + len(ds.sketches("test")) == 8


def test_make_dataset_unknown_name():
    with pytest.raises(ValueError, match="unknown dataset"):
        make_dataset("imagenet")


@pytest.mark.parametrize("name", ["qmul", "shoev2", "chairv2", "sketchy", "quickdraw"])
def test_make_dataset_root_required(name):
    with pytest.raises(ValueError, match="root"):
        make_dataset(name)


@pytest.mark.parametrize("name", ["kanji", "synthetic"])
def test_make_dataset_embedded_takes_no_root(name, tmp_path):
    with pytest.raises(ValueError, match="no root"):
        make_dataset(name, root=str(tmp_path))
