"""Sphinx configuration of the tinysr course site.

Build it from the repository root with warnings as errors::

    pip install -e ".[docs]"
    sphinx-build -W -b html docs docs/_build/html

The lessons are the notebooks in ``lessons/``, rendered from their committed outputs (nothing is
executed). Sphinx reads documents only inside its source folder, so each build mirrors
``lessons/*.ipynb`` into ``docs/lessons/`` (git-ignored, rewritten only when a notebook changed);
the notebooks themselves stay where the course keeps them.
"""
import importlib
import pkgutil
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO))  # document the checkout being built, installed or not
sys.path.insert(0, str(DOCS / "_ext"))

import tinysr  # noqa: E402

try:
    import tinysr_kernels  # noqa: E402,F401  (kernels/ is importable under this name once installed)
except ModuleNotFoundError as exc:
    raise RuntimeError("the API pages need tinysr installed: run pip install -e \".[docs]\" first") from exc

project = "tinysr"
author = "the tinysr authors"
copyright = "the tinysr authors"
release = tinysr.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "plain_docstrings",
    "sphinx.ext.viewcode",
]

# Notebooks are shown as committed (outputs of a full run); the site build never runs them.
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath", "deflist"]
myst_heading_anchors = 3

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]

html_theme = "furo"
html_title = f"tinysr {release}"
html_static_path = []

autosummary_generate = False  # the API pages are written by _api_pages below
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"  # hints stay in the signature; the docstring says what each argument is


def _mirror_lessons():
    """Copy ``lessons/*.ipynb`` to ``docs/lessons/`` when missing or changed; drop stale copies."""
    out = DOCS / "lessons"
    out.mkdir(exist_ok=True)
    wanted = {p.name: p for p in sorted((REPO / "lessons").glob("*.ipynb"))}
    for stale in out.glob("*.ipynb"):
        if stale.name not in wanted:
            stale.unlink()
    for name, src in wanted.items():
        dst = out / name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            shutil.copyfile(src, dst)


def _public_modules(package):
    """``package`` and every submodule below it whose name has no leading underscore, sorted."""
    pkg = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(pkg.__path__, prefix=package + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _api_pages():
    """Write ``docs/api/`` (git-ignored): one page per public module, and an index table of them."""
    out = DOCS / "api"
    out.mkdir(exist_ok=True)
    modules = _public_modules("tinysr") + _public_modules("tinysr_kernels")
    pages = {}
    for name in modules:
        is_pkg = hasattr(importlib.import_module(name), "__path__")
        # a package page shows its docstring only; its members are documented where they are defined
        opts = "   :no-members:\n" if is_pkg else "   :members:\n   :show-inheritance:\n"
        pages[f"{name}.rst"] = f"{name}\n{'=' * len(name)}\n\n.. automodule:: {name}\n{opts}"
    table = "\n".join(f"   {name}" for name in modules)
    toc = "\n".join(f"   {name}" for name in modules)
    pages["index.rst"] = (
        "API reference\n=============\n\n"
        "Every public module of ``tinysr`` and of its kernels package ``tinysr_kernels``, generated from the\n"
        "docstrings (the same text ``help()`` prints).\n\n"
        f".. autosummary::\n\n{table}\n\n.. toctree::\n   :hidden:\n\n{toc}\n")
    for stale in out.glob("*.rst"):
        if stale.name not in pages:
            stale.unlink()
    for fname, text in pages.items():
        path = out / fname
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


_mirror_lessons()
_api_pages()
