import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cosim.device import random_conductances  # noqa: E402
from cosim.specs import DeviceSpec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def random_case(rng, rows, cols, batch, sparsity=0.0):
    """Conductances over the default window and inputs in [0, 0.2] V (some zeroed)."""
    g = random_conductances((rows, cols), DeviceSpec(), rng)
    v = rng.uniform(0.0, 0.2, (batch, rows))
    if sparsity:
        v[rng.random(v.shape) < sparsity] = 0.0
    return g, v


def write_idx(path, array, gz=False):
    """Write a uint8 array as an IDX file (optionally gzipped); returns the SHA-256 of the raw bytes."""
    import gzip
    import hashlib

    raw = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw += np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return hashlib.sha256(raw).hexdigest()


def synthetic_digits(n, seed):
    """A learnable 10-class 28×28 problem: class c lights a 6×6 patch at one of 10 places, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        r, q = divmod(int(c), 5)
        images[i, 4 + 12 * r : 10 + 12 * r, 1 + 5 * q : 7 + 5 * q] = 255
    return images, labels


@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
    """A folder of MNIST-format IDX files (train gzipped, test raw) whose checksums the loader accepts."""
    from cosim import data

    folder = tmp_path / "idx"
    folder.mkdir()
    sums = {}
    for split, n, seed, gz in (("train", 1200, 1, True), ("t10k", 300, 2, False)):
        images, labels = synthetic_digits(n, seed)
        suffix = ".gz" if gz else ""
        sums[f"{split}-images-idx3-ubyte"] = write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images, gz)
        sums[f"{split}-labels-idx1-ubyte"] = write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels, gz)
    monkeypatch.setitem(data.IDX_SHA256, data.DatasetName.MNIST, sums)
    return folder


def invoke(*args, **kw):
    """``cosim <args>`` through typer's CliRunner (arguments as strings; ``kw`` to ``CliRunner.invoke``,
    e.g. ``input``); the click ``Result``."""
    from typer.testing import CliRunner

    from cosim.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args], **kw)


@pytest.fixture
def teacher_run(tiny_mnist, tmp_path):
    """A LeNet-5 trained for 2 epochs on ``tiny_mnist`` and evaluated on 3 chips (p_sa1 = 0.05)."""
    out = tmp_path / "teacher"
    res = invoke("train", "--out", out, "--data-dir", tiny_mnist, "--model", "lenet5", "--epochs", 2,
                 "--eval-chips", 3, "--set", "hardware.p_sa1=0.05")
    assert res.exit_code == 0, res.output
    return out
