"""The first cell of every lesson: quick or full mode, where the benchmark images are, where runs go.

Each notebook in ``lessons/`` starts with::

    from tinysr.lesson import setup
    S = setup("lesson01-srcnn")                  # prints: quick mode | data ../shared/data | ...
    ITERATIONS = S.pick(quick=40, full=3000)

**Quick mode** (``TINYSR_QUICK=1``, what CI and ``lessons/run.py`` set) runs every cell in seconds to
minutes with tiny budgets; full mode trains for real.  **Data**: ``$TINYSR_DATA`` when it is set,
else a ``shared/data`` folder beside the checkout (``../shared/data`` from the repository root),
else the photos that ship with scikit-image (``"builtin"``), which are always there.  Every path is
printed relative to the repository, so a notebook's committed output never shows one machine's
folders.

The returned :class:`LessonSetup` also loads the images (``S.train_images()``, ``S.test_images(crop=120)``:
in quick mode, centre crops of the two smallest test images) and knows ``S.shared_dir``, the folder
beside the data that holds ``reference/paper_psnr.json`` (read with :func:`tinysr.report.paper_table`)
and the authors' released weights.
"""
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LessonSetup", "setup", "repo_root", "relative", "centre_crop", "available"]


def repo_root():
    """The repository root: the folder that holds the ``tinysr`` package."""
    return Path(__file__).resolve().parent.parent


def relative(path):
    """``path`` as it should be printed: relative to the repository root (``../shared/data``)."""
    return Path(os.path.relpath(Path(path).resolve(), repo_root())).as_posix()


def _data_folder():
    env = os.environ.get("TINYSR_DATA")
    if env:
        return Path(env).expanduser()
    beside = repo_root().parent / "shared" / "data"
    return beside if beside.is_dir() else None


def centre_crop(image, size):
    """The central ``size`` x ``size`` window of an (H, W) or (H, W, C) image (all of a side shorter
    than ``size``).  A view, not a copy."""
    t, l = max((image.shape[0] - size) // 2, 0), max((image.shape[1] - size) // 2, 0)
    return image[t:t + size, l:l + size]


def _shared_folder(data_dir):
    """The folder that holds ``reference/`` and ``reference-weights/``: the data folder's parent."""
    if data_dir is None:
        return None
    parent = Path(data_dir).resolve().parent
    return parent if (parent / "reference").is_dir() or (parent / "reference-weights").is_dir() else None


def available(name):
    """True when the data set ``name`` (``"Set14"``, ``"BSD200"`` ...) is found without downloading
    (in ``$TINYSR_DATA`` or the cache); ``"builtin"`` always is."""
    from .data.datasets import DatasetError, resolve
    try:
        resolve(name, download=False)
        return True
    except DatasetError:
        return False


@dataclass(frozen=True)
class LessonSetup:
    """What :func:`setup` decided: ``quick``, the ``data_dir`` (None: builtin photos only), the
    ``train_data`` / ``test_data`` names to pass to :func:`tinysr.train` / :func:`tinysr.evaluate`,
    ``out_dir`` for checkpoints (a fresh temporary folder in quick mode, ``runs/<lesson>`` else) and
    ``shared_dir`` (None when absent): the folder with the published numbers and released weights."""

    quick: bool
    data_dir: object
    train_data: str
    test_data: str
    out_dir: str
    shared_dir: object = None

    def pick(self, quick, full):
        """``quick`` in quick mode, ``full`` otherwise (iterations, batch sizes, image counts)."""
        return quick if self.quick else full

    def train_images(self, min_side=0):
        """The training images (RGB uint8 arrays) of ``train_data``; ``min_side``: drop every image whose
        shorter side is below it (each must hold one HR patch)."""
        from .data import datasets
        images = datasets.load(self.train_data, split="train" if self.train_data == "builtin" else None)
        return [im for im in images if min(im.shape[:2]) >= min_side]

    def test_images(self, crop=None, count=2, always=False):
        """``[(name, image)]`` of ``test_data``.  With ``crop`` in quick mode (in both modes when
        ``always``): ``crop`` x ``crop`` centre crops (:func:`centre_crop`) of the ``count`` smallest
        images, so that deep networks score them in seconds -- fine for comparing methods with each
        other, not with a paper."""
        from .data import datasets
        items = datasets.load(self.test_data, split="test" if self.test_data == "builtin" else None, names=True)
        if crop is None or not (self.quick or always):
            return items
        return [(n, centre_crop(im, crop)) for n, im in sorted(items, key=lambda t: t[1].size)[:count]]

    def __str__(self):
        data = relative(self.data_dir) if self.data_dir is not None else "builtin photos only"
        return (f"{'quick' if self.quick else 'full'} mode | data {data} | training on {self.train_data} | "
                f"testing on {self.test_data}")


def setup(lesson, *, train="T91", test="Set5", quick=None, verbose=True):
    """Set a lesson up and print one line saying how; returns a :class:`LessonSetup`.

    ``lesson`` names the run folder (``runs/<lesson>`` in full mode).  ``train`` and ``test`` are the
    data sets the lesson wants; each falls back to ``"builtin"`` when its files are not found.
    ``quick`` defaults to ``TINYSR_QUICK=1`` in the environment.  The data folder found (see the module
    docstring) is exported as ``TINYSR_DATA`` so that every later call finds it too.
    """
    if quick is None:
        quick = os.environ.get("TINYSR_QUICK", "0") == "1"
    folder = _data_folder()
    if folder is not None and folder.is_dir():
        os.environ["TINYSR_DATA"] = str(folder.resolve())
    else:
        folder = None
    out_dir = os.path.join(tempfile.mkdtemp(), lesson) if quick else os.path.join("runs", lesson)
    s = LessonSetup(quick=bool(quick), data_dir=folder,
                    train_data=train if available(train) else "builtin",
                    test_data=test if available(test) else "builtin", out_dir=out_dir,
                    shared_dir=_shared_folder(folder))
    if verbose:
        print(s)
    return s
