"""benchmarks.dev_split: a development split made from a QMUL train split, in the same layout."""

from __future__ import annotations


def test_dev_split_moves_whole_photos_to_test_and_drops_the_published_test(tmp_path):
    from benchmarks.dev_split import main
    from sketch_env.datasets import make_dataset
    from tests.data_formats import write_tiny_qmul

    root = write_tiny_qmul(tmp_path / "chair", photos=12, per_photo=2)  # 9 train photos, 3 test
    assert main(["--root", str(root), "--out", str(tmp_path / "dev"), "--test-photos", "4"]) == 0
    source, dev = make_dataset("chairv2", root=root), make_dataset("chairv2", root=tmp_path / "dev")
    train, test = {p.instance for p in dev.photos("train")}, {p.instance for p in dev.photos("test")}
    assert len(test) == 4 and len(train) == 5 and not train & test
    assert train | test == {p.instance for p in source.photos("train")}  # the published test split is left out
    original = {(r.instance, r.style): r.sketch.points for r in source.sketches("train")}
    assert len(dev.sketches("train")) + len(dev.sketches("test")) == len(original)
    for r in dev.sketches("test"):
        assert (original[(r.instance, r.style)] == r.sketch.points).all()
    assert dev.load_photo(dev.photos("test")[0], 32).shape == (32, 32, 3)


def test_dev_split_refuses_a_test_split_as_large_as_the_data(tmp_path, capsys):
    from benchmarks.dev_split import main
    from tests.data_formats import write_tiny_qmul

    root = write_tiny_qmul(tmp_path / "chair", photos=4, per_photo=1)
    assert main(["--root", str(root), "--out", str(tmp_path / "dev"), "--test-photos", "3"]) == 2
    assert "--test-photos must be between 1 and 2" in capsys.readouterr().err
