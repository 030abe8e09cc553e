"""disk.replacing / disk.write_text: the target holds the old file or the whole new one, never a part,
and no temporary file is left behind."""

import os

import pytest

from gan_jax import disk


def test_a_clean_write_replaces_the_target_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("old")
    assert disk.write_text(path, "new") == str(path)
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["config.json"]


def test_an_error_mid_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path):
    path = tmp_path / "curves.png"
    path.write_text("old")
    with pytest.raises(OSError, match="No space"), disk.replacing(path, ".png") as tmp:
        assert tmp.endswith(".png") and tmp.startswith(f"{path}.tmp.{os.getpid()}.")
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError(28, "No space left on device")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["curves.png"]


def test_temporary_names_differ_between_writes_of_one_process(tmp_path):
    with disk.replacing(tmp_path / "a") as first, disk.replacing(tmp_path / "a") as second:
        open(first, "w").close()
        open(second, "w").close()
        assert first != second
    assert os.listdir(tmp_path) == ["a"]
