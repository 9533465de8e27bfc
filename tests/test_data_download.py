"""Downloads and archive reading against fake archives in the real formats, served from a
loopback HTTP server and file:// URLs (never the internet)."""

import gzip
import hashlib
import http.server
import io
import pickle
import socket
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from regkit.data import SOURCES, ChecksumError, DatasetUnavailable, RemoteFile, load_images
from regkit.data import cifar as cifar_module
from regkit.data import fashion_mnist as fashion_module
from regkit.data.download import download_file

CIFAR10 = "cifar-10-python.tar.gz"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buffer.getvalue()


def fake_cifar10(seed: int = 0, per_batch: int = 3):
    """Bytes of a cifar-10-python.tar.gz in the published layout, and the arrays it holds."""
    rng = np.random.default_rng(seed)
    members, images, labels = {}, {"train": [], "test": []}, {"train": [], "test": []}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        batch_labels = rng.integers(0, 10, per_batch).tolist()
        batch = {b"batch_label": name.encode(), b"labels": batch_labels, b"data": data,
                 b"filenames": [f"img{i}.png".encode() for i in range(per_batch)]}  # fmt: skip
        members[f"cifar-10-batches-py/{name}"] = pickle.dumps(batch, protocol=2)
        split = "test" if name == "test_batch" else "train"
        images[split].append(data.reshape(-1, 3, 32, 32))
        labels[split] += batch_labels
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps(
        {b"label_names": [b"airplane"] * 10}, protocol=2
    )
    members["cifar-10-batches-py/readme.html"] = b"<html></html>"
    arrays = {split: (np.concatenate(images[split]), np.array(labels[split])) for split in ("train", "test")}
    return tar_gz(members), arrays


class CreatesMarker:
    """Unpickling this object opens (creates) ``path``: proof that a pickle ran."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def malicious_cifar10(marker: Path) -> bytes:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return tar_gz({f"cifar-10-batches-py/{n}": pickle.dumps({b"data": CreatesMarker(marker)}) for n in names})


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files; under /truncated/ it promises the full length and sends half."""

    def do_GET(self):
        if not self.path.startswith("/truncated/"):
            return super().do_GET()
        blob = (Path(self.directory) / self.path.removeprefix("/truncated/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(blob)))
        self.end_headers()
        self.wfile.write(blob[: len(blob) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    """(folder served, base URL) of a loopback HTTP server, shut down after the test."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **k: Handler(*a, directory=str(folder), **k)
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def use_cifar10_source(monkeypatch, url: str, checksum: str) -> None:
    monkeypatch.setitem(SOURCES, "cifar10", (RemoteFile(CIFAR10, url, checksum),))


def assert_nothing_left(folder: Path) -> None:
    assert not folder.exists() or list(folder.iterdir()) == []


def check_cifar(dataset, arrays) -> None:
    for split in ("train", "test"):
        x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
        assert x.dtype == torch.uint8 and y.dtype == torch.int64 and x.shape[1:] == (3, 32, 32)
        assert np.array_equal(x.numpy(), arrays[split][0]) and np.array_equal(y.numpy(), arrays[split][1])
    assert dataset.num_classes == 10 and dataset.in_channels == 3 and dataset.image_size == 32


def test_http_download_with_good_checksum_loads_the_archive(served, tmp_path, monkeypatch, capsys):
    folder, base = served
    blob, arrays = fake_cifar10()
    (folder / CIFAR10).write_bytes(blob)
    use_cifar10_source(monkeypatch, f"{base}/{CIFAR10}", md5(blob))
    root = tmp_path / "root"
    dataset = load_images("cifar10", root=root)
    check_cifar(dataset, arrays)
    assert [p.name for p in root.iterdir()] == [CIFAR10] and (root / CIFAR10).read_bytes() == blob
    assert (
        dataset.source == str(root / CIFAR10)
        and f"using cifar10: {len(arrays['train'][0])} train" in capsys.readouterr().out
    )
    # A second load uses the verified local copy (the server is not needed any more).
    use_cifar10_source(monkeypatch, "http://127.0.0.1:9/unreachable", md5(blob))
    check_cifar(load_images("cifar10", root=root, verbose=False), arrays)


def test_file_url_download_and_auto_prefers_local_cifar10(tmp_path, monkeypatch, capsys):
    blob, arrays = fake_cifar10(seed=1)
    source = tmp_path / "mirror" / CIFAR10
    source.parent.mkdir()
    source.write_bytes(blob)
    use_cifar10_source(monkeypatch, source.as_uri(), md5(blob))
    root = tmp_path / "root"
    check_cifar(load_images("cifar10", root=root, verbose=False), arrays)
    dataset = load_images("auto", root=root)
    check_cifar(dataset, arrays)
    assert dataset.name == "cifar10" and f"auto chose CIFAR-10: its archive is {root / CIFAR10}." in capsys.readouterr().out


def test_bad_checksum_raises_keeps_nothing_and_unpickles_nothing(served, tmp_path, monkeypatch):
    folder, base = served
    marker = tmp_path / "pickle-ran"
    (folder / CIFAR10).write_bytes(malicious_cifar10(marker))
    use_cifar10_source(monkeypatch, f"{base}/{CIFAR10}", "0" * 32)
    opened = []
    monkeypatch.setattr(cifar_module, "read_archive", lambda *args: opened.append(args))
    root = tmp_path / "root"
    with pytest.raises(
        ChecksumError, match=r"checksum mismatch .* expected 0{32}; the download was discarded"
    ):
        load_images("cifar10", root=root)
    assert_nothing_left(root)
    assert not marker.exists() and opened == []  # the archive was never opened


def test_verified_archive_with_code_in_its_pickles_is_refused(tmp_path, monkeypatch):
    root, marker = tmp_path / "root", tmp_path / "pickle-ran"
    root.mkdir()
    blob = malicious_cifar10(marker)
    (root / CIFAR10).write_bytes(blob)
    use_cifar10_source(monkeypatch, "http://127.0.0.1:9/unused", md5(blob))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load io.open"):
        load_images("cifar10", root=root, verbose=False)
    assert not marker.exists()


def test_corrupt_local_archive_is_reported_not_unpickled(tmp_path, monkeypatch):
    root, marker = tmp_path / "root", tmp_path / "pickle-ran"
    root.mkdir()
    (root / CIFAR10).write_bytes(malicious_cifar10(marker))
    use_cifar10_source(monkeypatch, "https://example.invalid/" + CIFAR10, "f" * 32)
    with pytest.raises(
        ChecksumError, match=rf"{CIFAR10} has md5 [0-9a-f]{{32}}, expected f{{32}} .*Delete it"
    ):
        load_images("cifar10", root=root, verbose=False)
    assert not marker.exists() and (root / CIFAR10).exists()  # the user's file is left alone


def test_offline_raises_dataset_unavailable_with_instructions(tmp_path, monkeypatch, closed_port):
    url = f"http://127.0.0.1:{closed_port}/{CIFAR10}"
    use_cifar10_source(monkeypatch, url, "c" * 32)
    root = tmp_path / "root"
    with pytest.raises(DatasetUnavailable) as info:
        load_images("cifar10", root=root, verbose=False)
    message = str(info.value)
    assert f"could not reach {url}" in message and f"Download {url} (md5 {'c' * 32}) by hand" in message
    assert f"put it at {root / CIFAR10}" in message and "REGKIT_DATA_DIR" in message
    assert "load_images('fashion_mnist')" in message and "apt-get install dataset-fashion-mnist" in message
    assert_nothing_left(root)


def test_download_false_says_what_to_do(tmp_path):
    with pytest.raises(
        DatasetUnavailable,
        match=r"cifar-100-python.tar.gz not found and download=False\. Download https://www\.cs\.toronto\.edu/~kriz/cifar-100-python\.tar\.gz",
    ):
        load_images("cifar100", root=tmp_path, download=False)


def test_interrupted_download_leaves_no_partial_file(served, tmp_path):
    folder, base = served
    blob, _ = fake_cifar10()
    (folder / CIFAR10).write_bytes(blob)
    root = tmp_path / "root"
    with pytest.raises(DatasetUnavailable, match=rf"interrupted: got {len(blob) // 2} of {len(blob)} bytes"):
        download_file(f"{base}/truncated/{CIFAR10}", root / CIFAR10, md5(blob), progress=False)
    assert_nothing_left(root)


def test_exception_during_download_leaves_no_partial_file(served, tmp_path, monkeypatch):
    folder, base = served
    (folder / CIFAR10).write_bytes(b"x" * 3_000_000)
    calls = []

    def interrupt(self, n):  # the user presses Ctrl-C after the first chunk
        calls.append(n)
        raise KeyboardInterrupt

    monkeypatch.setattr("tqdm.auto.tqdm.update", interrupt)
    root = tmp_path / "root"
    with pytest.raises(KeyboardInterrupt):
        download_file(f"{base}/{CIFAR10}", root / CIFAR10, "0" * 32)
    assert calls and list(root.iterdir()) == []


def idx_gz(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_downloads_and_parses_idx(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    arrays = {"train": (rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 10, 5)),
              "t10k": (rng.integers(0, 256, (3, 28, 28)), rng.integers(0, 10, 3))}  # fmt: skip
    remotes = []
    for prefix, (images, labels) in arrays.items():
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte.gz"
            (mirror / name).write_bytes(blob := idx_gz(array))
            remotes.append(RemoteFile(name, (mirror / name).as_uri(), md5(blob)))
    monkeypatch.setitem(SOURCES, "fashion_mnist", tuple(remotes))
    monkeypatch.setattr(fashion_module, "DEBIAN_DIR", tmp_path / "no-debian-package")
    dataset = load_images("fashion_mnist", root=tmp_path / "root", verbose=False)
    assert dataset.source == str(tmp_path / "root" / "fashion-mnist")
    assert np.array_equal(dataset.x_train.numpy(), arrays["train"][0][:, None])
    assert np.array_equal(dataset.y_test.numpy(), arrays["t10k"][1])
    assert dataset.x_train.shape == (5, 1, 28, 28) and dataset.in_channels == 1 and dataset.image_size == 28


def test_fashion_mnist_unavailable_mentions_the_debian_package(tmp_path, monkeypatch, closed_port):
    url = f"http://127.0.0.1:{closed_port}/"
    monkeypatch.setitem(
        SOURCES,
        "fashion_mnist",
        tuple(RemoteFile(r.filename, url + r.filename, r.md5) for r in SOURCES["fashion_mnist"]),
    )
    monkeypatch.setattr(fashion_module, "DEBIAN_DIR", tmp_path / "no-debian-package")
    with pytest.raises(
        DatasetUnavailable,
        match=r"Fashion-MNIST not found in .* could not reach .*apt-get install dataset-fashion-mnist",
    ):
        load_images("fashion_mnist", root=tmp_path / "root", verbose=False)


def test_idx_parser_rejects_bad_files(tmp_path):
    bad_magic, short = tmp_path / "bad.gz", tmp_path / "short.gz"
    bad_magic.write_bytes(gzip.compress(b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00"))
    short.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 9))
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
        fashion_module.read_idx(bad_magic)
    with pytest.raises(ValueError, match=r"header says shape \(10,\) but holds 9 bytes"):
        fashion_module.read_idx(short)
