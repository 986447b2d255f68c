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
