"""The embedded Fashion-MNIST subset: committed files against their checksums, strict parsing, a
bit-for-bit rebuild from the official files, the ``auto`` fallback and the isolation switch."""

import gzip
import os
import shutil
import subprocess
import sys

import pytest
import torch

from regkit.data import DatasetUnavailable, load_images
from regkit.data import download as download_module
from regkit.data import embedded as embedded_module
from regkit.data import fashion_mnist as fashion_module
from regkit.data import images as images_module
from regkit.data.embedded import FILES, FOLDER, EmbeddedDataCorrupt, deterministic_gzip, load_embedded, verify
from regkit.data.fashion_mnist import DEBIAN_DIR, CorruptDataFile, read_idx


def test_committed_files_match_their_checksums_and_parse_strictly():
    checksums = verify()
    assert set(checksums["files"]) == set(FILES) and len(checksums["sources"]) == 4
    (x_train, y_train, x_test, y_test), folder = load_embedded()
    assert folder == FOLDER
    assert x_train.shape == (10_000, 1, 28, 28) and x_test.shape == (5_000, 1, 28, 28)
    assert x_train.dtype == torch.uint8 and y_train.dtype == torch.int64
    assert torch.equal(torch.bincount(y_train), torch.full((10,), 1000))
    assert torch.equal(torch.bincount(y_test), torch.full((10,), 500))
    assert 50 < x_train.float().std() < 120  # real images, not blanks or noise
    # file order is kept, so a prefix is close to balanced: the quick profiles take prefixes
    assert torch.bincount(y_train[:2000], minlength=10).min() >= 150
    size = sum((FOLDER / name).stat().st_size for name in FILES)
    assert size < 8_000_000  # the budget for data/ is 10 MB


def test_the_licence_and_source_checksums_sit_beside_the_files():
    licence = (FOLDER / "LICENSE").read_text()
    assert "MIT License" in licence and "Copyright (c) 2017 Zalando SE" in licence
    published = verify()["published_md5_of_official_gzip_files"]
    assert published["train-images-idx3-ubyte.gz"] == "8d4fb7e6c68d591d4c3dfef9ec88bf0d"


def test_rebuild_from_the_official_files_is_bit_for_bit(tmp_path):
    if not DEBIAN_DIR.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide the official files in {DEBIAN_DIR} (apt-get install dataset-fashion-mnist)")
        pytest.skip(f"{DEBIAN_DIR} missing (apt-get install dataset-fashion-mnist)")
    shutil.copy(FOLDER / "checksums.json", tmp_path)
    written = embedded_module.build(DEBIAN_DIR, folder=tmp_path)
    assert set(written) == set(FILES)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (FOLDER / name).read_bytes(), name


def test_build_refuses_files_that_are_not_the_official_release(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(FOLDER, source)  # the subset itself is not the official release
    shutil.copy(FOLDER / "checksums.json", tmp_path)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz is not the official Fashion-MNIST file"):
        embedded_module.build(source, folder=tmp_path)


def test_a_changed_file_is_refused_with_the_file_and_the_fix(tmp_path):
    folder = tmp_path / "subset"
    shutil.copytree(FOLDER, folder)
    data = bytearray((folder / FILES[1]).read_bytes())
    data[100] ^= 1
    (folder / FILES[1]).write_bytes(bytes(data))
    with pytest.raises(EmbeddedDataCorrupt, match=rf"{folder / FILES[1]} has sha256 .*`git checkout --"):
        load_embedded(folder)
    (folder / FILES[0]).unlink()
    with pytest.raises(EmbeddedDataCorrupt, match=rf"{folder / FILES[0]} is missing"):
        load_embedded(folder)


def test_deterministic_gzip_is_standard_gzip_with_a_fixed_header():
    data = bytes(range(256)) * 100
    packed = deterministic_gzip(data)
    assert gzip.decompress(packed) == data
    assert packed[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # no name, mtime 0
    assert packed == deterministic_gzip(data)


def test_verify_command_exits_0():
    done = subprocess.run([sys.executable, "-m", "regkit.data.embedded", "verify"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "4 files match checksums.json" in done.stdout


def no_full_fashion_mnist(monkeypatch, tmp_path):
    monkeypatch.setattr(fashion_module, "DEBIAN_DIR", tmp_path / "no-debian-package")
    monkeypatch.setattr(images_module, "DEBIAN_DIR", tmp_path / "no-debian-package")


def test_auto_falls_back_to_the_embedded_subset_last_and_says_why(tmp_path, monkeypatch, capsys):
    no_full_fashion_mnist(monkeypatch, tmp_path)
    data = load_images("auto", root=tmp_path / "root", download=False, train_size=500)
    out = capsys.readouterr().out
    assert data.name == "fashion_mnist_subset" and len(data.x_train) == 500 and len(data.x_test) == 5000
    assert data.source == str(FOLDER)
    assert "auto never downloads CIFAR-10" in out and "could not be downloaded" in out
    assert "auto chose the embedded subset: there is no" in out and "(" not in out  # plain sentences


def test_isolated_mode_ignores_the_system_folder_and_the_network(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REGKIT_DATA_ISOLATED", "1")
    monkeypatch.setattr(download_module, "download_file", lambda *a, **k: pytest.fail("isolated mode downloaded"))
    data = load_images("auto", root=tmp_path)  # the Debian package may well be installed: ignored
    assert data.name == "fashion_mnist_subset"
    assert "REGKIT_DATA_ISOLATED=1 lets it look" in capsys.readouterr().out
    with pytest.raises(DatasetUnavailable, match=r"REGKIT_DATA_ISOLATED=1: system-wide folders and downloads"):
        load_images("fashion_mnist", root=tmp_path, verbose=False)
    monkeypatch.setenv("REGKIT_DATA_ISOLATED", "0")
    assert load_images("fashion_mnist_subset", isolated=True, verbose=False).name == "fashion_mnist_subset"


def test_a_bad_isolation_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("REGKIT_DATA_ISOLATED", "maybe")
    with pytest.raises(ValueError, match=r"REGKIT_DATA_ISOLATED='maybe': set it to 1"):
        load_images("synthetic", verbose=False)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not gzip at all", r"is not a readable gzip file \(BadGzipFile"),
        (gzip.compress(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abcde")[:-6], r"is not a readable gzip file"),
        (gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 12), r"holds no data \(shape \(0, 0, 0\)\)"),
        (gzip.compress(b"\x00\x00\x08\x03\x00"), r"the IDX header is cut short"),
        (gzip.compress(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abc"), r"header says shape \(5,\) but holds 3"),
    ],
    ids=["not-gzip", "truncated", "zero-images", "short-header", "short-data"],
)
def test_corrupt_idx_files_name_the_file_and_the_fix(tmp_path, content, message):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(CorruptDataFile, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value) and "delete it and restore the file" in str(info.value)
