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
"""
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LessonSetup", "setup", "repo_root", "relative"]


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


def _available(name):
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
    and ``out_dir`` for checkpoints (a fresh temporary folder in quick mode, ``runs/<lesson>`` else)."""

    quick: bool
    data_dir: object
    train_data: str
    test_data: str
    out_dir: str

    def pick(self, quick, full):
        """``quick`` in quick mode, ``full`` otherwise (iterations, batch sizes, image counts)."""
        return quick if self.quick else full

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
                    train_data=train if _available(train) else "builtin",
                    test_data=test if _available(test) else "builtin", out_dir=out_dir)
    if verbose:
        print(s)
    return s
