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


def test_fewer_training_photos_keep_the_test_split_and_the_validation_photos(tmp_path, capsys):
    from benchmarks.dev_split import main
    from embeddings.train import validation_mask
    from sketch_env.datasets import make_dataset
    from tests.data_formats import write_tiny_qmul

    root = write_tiny_qmul(tmp_path / "chair", photos=40, per_photo=1)  # 30 train photos, 20 after the test split
    assert main(["--root", str(root), "--out", str(tmp_path / "all"), "--test-photos", "10"]) == 0
    assert main(["--root", str(root), "--out", str(tmp_path / "some"), "--test-photos", "10",
                 "--train-photos", "12"]) == 0
    full, part = make_dataset("chairv2", root=tmp_path / "all"), make_dataset("chairv2", root=tmp_path / "some")
    assert [p.instance for p in part.photos("test")] == [p.instance for p in full.photos("test")]
    names = {split: [p.instance for p in ds.photos("train")] for split, ds in (("full", full), ("part", part))}
    assert len(names["part"]) == 12 and set(names["part"]) < set(names["full"])

    def held(names: list[str]) -> set[str]:
        return {n for n, v in zip(names, validation_mask(names, 0.05, min_photos=5)) if v}

    assert held(names["part"]) == held(names["full"]) and len(held(names["part"])) == 5
    assert main(["--root", str(root), "--out", str(tmp_path / "x"), "--test-photos", "10",
                 "--train-photos", "21"]) == 2
    assert "--train-photos must be between 1 and 20" in capsys.readouterr().err
