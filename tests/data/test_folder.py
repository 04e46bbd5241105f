"""Image folders are indexed and verified whole: symlinks stay inside the root, corrupt files counted."""

from __future__ import annotations

import pytest
from PIL import Image

from netzip_mlflow.data.folder import check_image, index_folder, load_image_folder
from netzip_mlflow.errors import DataError


def _tree(root, classes=("cat", "dog"), per_class=5):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("L", (8, 8), 30 * c + i).save(root / name / f"{i}.png")
    return root


def test_every_file_is_indexed_once_with_its_class(tmp_path):
    root = _tree(tmp_path / "images")
    (root / "dog" / "nested").mkdir()
    Image.new("RGB", (8, 8)).save(root / "dog" / "nested" / "deep.jpg")
    (root / "dog" / "notes.txt").write_text("not an image extension: ignored")
    index = index_folder(root, progress=False)
    assert index.classes == ["cat", "dog"]
    labels = [label for _, label in index.samples]
    assert labels.count(0) == 5 and labels.count(1) == 6
    assert index.corrupt == [] and index.outside == []


def test_symlinks_out_of_the_root_are_not_followed(tmp_path):
    root = _tree(tmp_path / "images")
    elsewhere = _tree(tmp_path / "elsewhere", classes=("x",))
    (root / "cat" / "outside_dir").symlink_to(elsewhere / "x")
    (root / "dog" / "outside.png").symlink_to(elsewhere / "x" / "0.png")
    (root / "dog" / "inside.png").symlink_to(root / "cat" / "0.png")  # inside, but the same file twice
    with pytest.raises(DataError, match="are the same file"):
        index_folder(root, progress=False)
    (root / "dog" / "inside.png").unlink()
    index = index_folder(root, progress=False)
    assert len(index.samples) == 10  # nothing from outside
    assert sorted(index.outside) == sorted([str(root / "cat" / "outside_dir"), str(root / "dog" / "outside.png")])


def test_skip_corrupt_counts_what_it_leaves_out(tmp_path):
    root = _tree(tmp_path / "images")
    (root / "cat" / "empty.png").write_bytes(b"")
    (root / "dog" / "text.jpg").write_text("hello")
    with pytest.raises(DataError, match=r"cannot be read as an image: .* \(and 1 more\)"):
        load_image_folder(root, image_size=8, channels=1, progress=False)
    split = load_image_folder(root, image_size=8, channels=1, skip_corrupt=True, progress=False)
    assert sorted(split.skipped) == sorted([str(root / "cat" / "empty.png"), str(root / "dog" / "text.jpg")])
    assert len(split.train) + len(split.test) == 10
    image, label = split.test[0]
    assert tuple(image.shape) == (1, 8, 8) and label in (0, 1)


def test_check_image_reasons(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:-20])
    assert check_image(good) is None
    assert check_image(truncated) is not None
    assert "UnidentifiedImageError" in check_image(_write(tmp_path / "zero.png", b""))


def _write(path, data):
    path.write_bytes(data)
    return path


def test_train_and_val_subtrees_are_both_checked(tmp_path):
    root = tmp_path / "images"
    _tree(root / "train")
    _tree(root / "val", per_class=2)
    (root / "val" / "dog" / "bad.png").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(DataError, match="bad.png cannot be read"):
        load_image_folder(root, image_size=8, channels=1, progress=False)


def test_an_empty_class_folder_is_named(tmp_path):
    root = _tree(tmp_path / "images")
    (root / "emu").mkdir()
    with pytest.raises(DataError, match=r"class folder .*emu holds no images; add images or remove the folder"):
        index_folder(root, progress=False)
