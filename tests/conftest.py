"""Shared test set-up.

The reference material (datasets, public weights, the paper table) lives outside the repository in
``../shared``.  Tests find it through ``TINYSR_DATA``; when that is unset and ``../shared/data``
exists beside the checkout, it is used.  Outside this workplace such tests skip and say why; under
``CI=true`` a missing ``../shared`` fails the whole run, so that a wrong path can never turn real
checks into silent skips.
"""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

if "TINYSR_DATA" not in os.environ and (SHARED / "data").is_dir():
    os.environ["TINYSR_DATA"] = str(SHARED / "data")


def _shared_root():
    data = os.environ.get("TINYSR_DATA")
    if data and Path(data).is_dir():
        return Path(data).resolve().parent
    return None


def pytest_sessionstart(session):
    if os.environ.get("CI", "").lower() == "true" and _shared_root() is None:
        raise pytest.UsageError(
            f"CI=true but the reference material is missing: TINYSR_DATA={os.environ.get('TINYSR_DATA')!r}, "
            f"and {SHARED / 'data'} does not exist. Put ../shared beside the checkout or set TINYSR_DATA."
        )


@pytest.fixture(scope="session")
def shared_dir():
    """The ``shared/`` folder (data, reference-weights, reference); skips when it is absent."""
    root = _shared_root()
    if root is None:
        pytest.skip("../shared is not here (set TINYSR_DATA to its data folder to run this test)")
    return root


@pytest.fixture(scope="session")
def data_dir(shared_dir):
    """``$TINYSR_DATA``: Set5, Set14, B100, T91, BSD200 as in ../shared/data."""
    return Path(os.environ["TINYSR_DATA"])


@pytest.fixture(scope="session")
def weights_dir(shared_dir):
    """``../shared/reference-weights``: public pretrained weights (never copied into the repo)."""
    d = shared_dir / "reference-weights"
    if not d.is_dir():
        pytest.skip(f"{d} is not here")
    return d


@pytest.fixture(scope="session")
def paper_table(shared_dir):
    """The published PSNR/SSIM table, ``../shared/reference/paper_psnr.json``."""
    import json
    return json.loads((shared_dir / "reference" / "paper_psnr.json").read_text())


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """Three 99x99 crops of builtin training photos and one 60x60 evaluation crop, as PNG folders
    ``(train, test)``: end-to-end training runs on these in seconds."""
    from tinysr.data import datasets, imwrite
    root = tmp_path_factory.mktemp("data")
    train, test = root / "train", root / "test"
    for i, im in enumerate(datasets.load("builtin", split="train")[:3]):
        imwrite(train / f"crop{i}.png", im[100:199, 100:199])
    imwrite(test / "cat.png", datasets.load("builtin", split="test")[1][100:160, 150:210])
    return train, test
