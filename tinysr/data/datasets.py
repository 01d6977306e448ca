"""The SR datasets: a registry, a resolver that finds or downloads them, and the (LR, HR) pair builder.

Where a dataset comes from (first match wins)
---------------------------------------------
1. ``$TINYSR_DATA/<name>`` — a folder you (or your lab) filled, e.g. ``$TINYSR_DATA/Set5/HR/*.png``.
2. ``$TINYSR_CACHE/<name>``, by default ``~/.cache/tinysr/<name>`` — where downloads land.
3. A download from pinned public URLs (raw files of public GitHub repositories at a fixed commit),
   with a progress bar.  Every file is checked against its sha256; BMP/JPEG originals are converted
   to PNG and checked again.  The whole set is assembled in a temporary folder that is renamed into
   place only when every file is good, so a failed, interrupted or corrupt download leaves the cache
   exactly as it was.  ``TINYSR_MIRROR`` (or ``mirror=``) replaces ``https://raw.githubusercontent.com``;
   ``TINYSR_OFFLINE=1`` forbids downloading.
4. Otherwise :class:`DatasetError`, naming the folder to fill.

``"builtin"`` is different: the natural photos that ship inside scikit-image's wheel (astronaut,
coffee, chelsea, rocket, ...), always available offline, split into ``train`` and ``test``.

The pair builder
----------------
:func:`make_pair` turns one HR image into the network's (input, target) pair, float32 in ``[0, 1]``.
For ``channel="y"`` it follows SRCNN's MATLAB code (``generate_train.m``/``test`` scripts, Dong et
al. 2014, also VDSR's): ``Y = rgb2ycbcr(uint8 HR)`` rounded to uint8, ``Y/255``, then
``imresize`` in double (no rounding).  This is the pipeline that reproduces the published Bicubic
row within 0.01 dB (see :func:`tinysr.metrics.evaluate_bicubic`).  For ``channel="rgb"`` it follows
EDSR/SwinIR: the LR image is MATLAB's uint8 bicubic of the uint8 RGB HR (bit-identical to the
published ``LR_bicubic`` files).
"""
from __future__ import annotations

import hashlib
import http.client
import io as _io
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .io import IMAGE_EXTENSIONS, ImageError, imread
from .protocol import prepare

__all__ = ["DatasetError", "DatasetInfo", "PinnedFile", "REGISTRY", "register", "names", "info",
           "data_root", "cache_dir", "resolve", "download", "list_files", "load", "make_pair",
           "make_pairs", "named_images", "DEFAULT_MIRROR"]

DEFAULT_MIRROR = "https://raw.githubusercontent.com"


class DatasetError(RuntimeError):
    """A dataset is not here and cannot be fetched; the message says which folder to fill."""


@dataclass(frozen=True)
class PinnedFile:
    """One downloadable file: where it goes, where it comes from, and the checksums it must have."""
    local: str            # path relative to the dataset folder, e.g. "HR/baby.png"
    url_path: str         # "<repo>/<commit>/<path in repo>", appended to the mirror
    size: int             # bytes of the original
    sha256: str           # of the original bytes
    png_sha256: str = ""  # of the PNG made from a BMP/JPEG original (empty if the original is the PNG)
    pixel_sha256: str = ""  # of "<mode> <W>x<H>\n" + pixel bytes: survives a different zlib


@dataclass(frozen=True)
class DatasetInfo:
    """A registry entry: what the dataset is, where its images live, and how to get it."""
    name: str
    description: str
    citation: str
    role: str                              # "test", "train" or "demo"
    pattern: str = "*.png"                 # HR images, relative to the dataset folder
    files: tuple = ()                      # PinnedFile entries; empty = not downloadable here
    splits: dict = field(default_factory=dict)   # split name -> tuple of file stems
    note: str = ""                         # why it cannot be downloaded, where to get it
    count: int = 0                         # expected number of HR images (0 = unknown)


def _pinned_table():
    from . import _pinned
    sources = {}
    for line in _pinned.SOURCES.strip().splitlines():
        sid, repo, commit = line.split("\t")
        sources[sid] = (repo, commit)
    by_set = {}
    for line in _pinned.FILES.strip().splitlines():
        _ds, local, sid, spath, size, sha, png_sha, pix = line.split("\t")
        top, rel = local.split("/", 1)
        repo, commit = sources[sid]
        same = Path(spath).suffix.lower() == Path(local).suffix.lower()
        by_set.setdefault(top, []).append(PinnedFile(
            local=rel, url_path=f"{repo}/{commit}/{spath}", size=int(size), sha256=sha,
            png_sha256="" if same else png_sha, pixel_sha256=pix))
    return by_set


REGISTRY: dict = {}


def register(entry: DatasetInfo, *, replace: bool = False):
    """Add a dataset to the registry (e.g. your own test set, or a small one for tests)."""
    if entry.name in REGISTRY and not replace:
        raise ValueError(f"dataset {entry.name!r} is already registered (pass replace=True)")
    REGISTRY[entry.name] = entry
    return entry


_BUILTIN_TRAIN = ("astronaut", "motorcycle_left", "motorcycle_right", "hubble_deep_field",
                  "immunohistochemistry", "retina")
_BUILTIN_TEST = ("coffee", "chelsea", "rocket")
# scikit-image file names of the photos above (the stereo pair stays together in train).
_BUILTIN_FILES = {"astronaut": "astronaut.png", "motorcycle_left": "motorcycle_left.png",
                  "motorcycle_right": "motorcycle_right.png", "hubble_deep_field": "hubble_deep_field.jpg",
                  "immunohistochemistry": "ihc.png", "retina": "retina.jpg", "coffee": "coffee.png",
                  "chelsea": "chelsea.png", "rocket": "rocket.jpg"}


def _init_registry():
    pinned = _pinned_table()
    fill = "put the PNG files in $TINYSR_DATA/{name}/ (or ~/.cache/tinysr/{name}/)"
    entries = [
        DatasetInfo("Set5", "5 test images (baby, bird, butterfly, head, woman), RGB",
                    "Bevilacqua et al., BMVC 2012", "test", "HR/*.png", tuple(pinned.get("Set5", ())),
                    count=5),
        DatasetInfo("Set14", "14 test images; bridge is grayscale (used as Y), man is gray RGB",
                    "Zeyde et al., Curves and Surfaces 2010", "test", "HR/*.png",
                    tuple(pinned.get("Set14", ())), count=14),
        DatasetInfo("B100", "100 BSDS300 test images (BSD100), 481x321 or 321x481, RGB",
                    "Martin et al., ICCV 2001; Timofte et al., ACCV 2014", "test", "HR/*.png",
                    tuple(pinned.get("B100", ())), count=100),
        DatasetInfo("T91", "SRCNN's 91 training images (Yang et al.)",
                    "Yang et al., IEEE TIP 2010; Dong et al., ECCV 2014", "train", "*.png",
                    tuple(pinned.get("T91", ())), count=91),
        DatasetInfo("BSD200", "200 BSDS300 train images; T91 + BSD200 = VDSR's '291' set",
                    "Martin et al., ICCV 2001; Kim et al., CVPR 2016", "train", "*.png",
                    tuple(pinned.get("BSD200", ())), count=200),
        DatasetInfo("Urban100", "100 urban scenes, ~1024 px (test)",
                    "Huang et al., CVPR 2015", "test", "HR/*.png",
                    note="not downloadable from here (about 130 MB); a verified copy is "
                         "majedelhelou/denoising_datasets@58234876 CUrban100/img_001..100.png; "
                         + fill.format(name="Urban100") + " with the images in HR/", count=100),
        DatasetInfo("General100", "FSRCNN's 100 extra training images (BMP)",
                    "Dong et al., ECCV 2016", "train", "*.png",
                    note="no reachable public copy is pinned (official: the FSRCNN project page); "
                         + fill.format(name="General100"), count=100),
        DatasetInfo("DIV2K", "800 train + 100 valid 2K images (EDSR, RCAN, SwinIR)",
                    "Agustsson and Timofte, CVPRW 2017", "train", "HR/*.png",
                    splits={},
                    note="too large to fetch here; the official archive is "
                         "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip; "
                         + fill.format(name="DIV2K") + " with the images in HR/", count=0),
        DatasetInfo("builtin", "natural photos shipped inside scikit-image (always offline)",
                    "scikit-image sample data (astronaut: NASA; coffee, chelsea: Stefan van der Walt; "
                    "rocket: SpaceX, public domain)", "demo",
                    splits={"train": _BUILTIN_TRAIN, "test": _BUILTIN_TEST},
                    count=len(_BUILTIN_FILES)),
    ]
    for e in entries:
        register(e, replace=True)


def names():
    """Registered dataset names."""
    return sorted(REGISTRY)


def info(name) -> DatasetInfo:
    """The registry entry for ``name`` (case-insensitive)."""
    key = _canonical(name)
    return REGISTRY[key]


def _canonical(name):
    if name in REGISTRY:
        return name
    low = {k.lower(): k for k in REGISTRY}
    aliases = {"bsd100": "B100", "bsds100": "B100", "91": "T91", "yang91": "T91", "bsd200": "BSD200",
               "urban": "Urban100", "general-100": "General100"}
    key = low.get(str(name).lower()) or aliases.get(str(name).lower())
    if key is None:
        raise DatasetError(f"unknown dataset {name!r}; registered: {', '.join(names())}")
    return key


def data_root():
    """``$TINYSR_DATA`` as a Path, or None when it is unset."""
    d = os.environ.get("TINYSR_DATA")
    return Path(d).expanduser() if d else None


def cache_dir():
    """The download cache: ``$TINYSR_CACHE``, else ``$XDG_CACHE_HOME/tinysr``, else ``~/.cache/tinysr``."""
    d = os.environ.get("TINYSR_CACHE")
    if d:
        return Path(d).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tinysr"


def _has_images(folder: Path, entry: DatasetInfo):
    if not folder.is_dir():
        return False
    if any(folder.glob(entry.pattern)):
        return True
    # A user-filled folder may hold the images directly instead of under HR/.
    return "/" in entry.pattern and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir())


def _builtin_dir():
    import skimage.data
    return Path(skimage.data.__file__).parent


def _fill_message(entry: DatasetInfo, why: str):
    where = [str(data_root() / entry.name)] if data_root() else []
    where.append(str(cache_dir() / entry.name))
    layout = entry.pattern
    msg = (f"dataset {entry.name!r} is not available: {why}. Put its images in "
           + " or ".join(where) + f" (layout: <folder>/{layout})")
    if data_root() is None:
        msg += ", or set TINYSR_DATA to a folder that holds a copy"
    if entry.note:
        msg += f". Note: {entry.note}"
    return msg


def resolve(name, *, download: bool = True, mirror=None, progress: bool = True, timeout: float = 30.0) -> Path:
    """The folder that holds dataset ``name``, fetching it if needed (see the module docstring).

    Order: ``$TINYSR_DATA/<name>`` -> ``cache_dir()/<name>`` -> download (when ``download`` and the
    dataset has pinned files and ``TINYSR_OFFLINE`` is not set) -> :class:`DatasetError`.
    """
    entry = info(name)
    if entry.name == "builtin":
        return _builtin_dir()
    root = data_root()
    if root is not None and _has_images(root / entry.name, entry):
        return root / entry.name
    cached = cache_dir() / entry.name
    if _has_images(cached, entry):
        return cached
    if not entry.files:
        raise DatasetError(_fill_message(entry, "tinysr has no pinned download for it"))
    if not download or os.environ.get("TINYSR_OFFLINE", "") not in ("", "0"):
        raise DatasetError(_fill_message(entry, "it is not on disk and downloading is switched off"))
    return globals()["download"](entry.name, mirror=mirror, progress=progress, timeout=timeout)


def _fetch(url, dest: Path, expected_size: int, bar, timeout):
    h = hashlib.sha256()
    n = 0
    req = urllib.request.Request(url, headers={"User-Agent": "tinysr-downloader"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as f:
        while True:
            chunk = resp.read(1 << 16)
            if not chunk:
                break
            f.write(chunk)
            h.update(chunk)
            n += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
    if expected_size and n != expected_size:
        raise DatasetError(f"{url}: transfer interrupted or wrong file ({n} bytes received, "
                           f"{expected_size} expected)")
    return h.hexdigest()


def _pixel_sha(im):
    return hashlib.sha256(f"{im.mode} {im.size[0]}x{im.size[1]}\n".encode() + im.tobytes()).hexdigest()


def _to_png(src: Path, dest: Path, pf: PinnedFile, url: str):
    from PIL import Image
    with Image.open(src) as im:
        im.load()
        pix = _pixel_sha(im)
        buf = _io.BytesIO()
        im.save(buf, "PNG", optimize=True)
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    # The PNG bytes depend on the zlib build; the decoded pixels are what must match.
    if sha != pf.png_sha256 and pf.pixel_sha256 and pix != pf.pixel_sha256:
        raise DatasetError(f"{url}: converted pixels do not match the pinned checksum "
                           f"(got {pix}, expected {pf.pixel_sha256})")
    dest.write_bytes(data)


def download(name, *, dest=None, mirror=None, progress: bool = True, timeout: float = 30.0) -> Path:
    """Download dataset ``name`` from its pinned URLs into ``dest`` (default ``cache_dir()/<name>``).

    Each file is fetched from ``<mirror>/<repo>/<commit>/<path>`` (``mirror`` defaults to
    ``$TINYSR_MIRROR`` or ``https://raw.githubusercontent.com``), its sha256 checked, and BMP/JPEG
    converted to PNG (pixels checked).  Everything is written to a temporary folder beside ``dest``
    that is renamed to ``dest`` at the end; on any error (HTTP error, no network, interrupted
    transfer, checksum mismatch) the temporary folder is removed and :class:`DatasetError` raised,
    so nothing is left behind.  Returns ``dest``.
    """
    entry = info(name)
    if not entry.files:
        raise DatasetError(_fill_message(entry, "tinysr has no pinned download for it"))
    dest = Path(dest) if dest is not None else cache_dir() / entry.name
    base = (mirror or os.environ.get("TINYSR_MIRROR") or DEFAULT_MIRROR).rstrip("/")
    made_parent = not dest.parent.exists()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".partial", dir=dest.parent))
    bar = None
    try:
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=sum(f.size for f in entry.files), unit="B", unit_scale=True,
                       unit_divisor=1024, desc=f"downloading {entry.name}", leave=False)
        for pf in entry.files:
            url = base + "/" + urllib.parse.quote(pf.url_path)
            target = tmp / pf.local
            target.parent.mkdir(parents=True, exist_ok=True)
            raw = target if not pf.png_sha256 else target.with_name(target.name + ".orig")
            try:
                sha = _fetch(url, raw, pf.size, bar, timeout)
            except urllib.error.HTTPError as e:
                raise DatasetError(f"{url}: HTTP {e.code} {e.reason}") from e
            except urllib.error.URLError as e:
                raise DatasetError(f"cannot reach {base} ({e.reason}): offline, or the mirror is down") from e
            except (OSError, ValueError, http.client.HTTPException) as e:  # IncompleteRead, resets, timeouts
                raise DatasetError(f"{url}: transfer interrupted ({e!r})") from e
            if sha != pf.sha256:
                raise DatasetError(f"{url}: checksum mismatch (sha256 {sha}, expected {pf.sha256}); "
                                   "the file on the server is not the pinned one")
            if pf.png_sha256:
                try:
                    _to_png(raw, target, pf, url)
                except DatasetError:
                    raise
                except Exception as e:
                    raise DatasetError(f"{url}: cannot convert to PNG ({e})") from e
                raw.unlink()
        if bar is not None:
            bar.close()
            bar = None
        if dest.exists():
            if _has_images(dest, entry):            # someone else finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return dest
            dest.rmdir()                             # an empty leftover folder
        os.replace(tmp, dest)
        return dest
    except BaseException as e:
        if bar is not None:
            bar.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if made_parent:                              # leave no empty cache folder behind either
            try:
                dest.parent.rmdir()
            except OSError:
                pass
        if isinstance(e, DatasetError):
            raise DatasetError(f"{e}. Nothing was written to {dest}. "
                               + _fill_message(entry, "the download failed")) from e.__cause__
        raise


def list_files(name, split=None, **resolve_kw):
    """Sorted ``(stem, path)`` of the HR images of dataset ``name`` (optionally one ``split``)."""
    entry = info(name)
    folder = resolve(entry.name, **resolve_kw)
    if entry.name == "builtin":
        stems = entry.splits[split] if split else _BUILTIN_TRAIN + _BUILTIN_TEST
        out = [(s, folder / _BUILTIN_FILES[s]) for s in stems]
        return out
    paths = sorted(folder.glob(entry.pattern))
    if not paths:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if entry.count and len(paths) != entry.count:
        warnings.warn(f"{folder}: found {len(paths)} images, {entry.name} has {entry.count}", UserWarning,
                      stacklevel=2)
    if split is not None:
        if split not in entry.splits:
            raise DatasetError(f"dataset {entry.name!r} has no split {split!r}"
                               + (f" (splits: {', '.join(entry.splits)})" if entry.splits else
                                  " (it has no splits; use split=None)"))
        wanted = set(entry.splits[split])
        paths = [p for p in paths if p.stem in wanted]
    # Numeric-aware order (t2 before t10) is what people expect when they look at the folder.
    def key(p):
        import re
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.stem)]
    return [(p.stem, p) for p in sorted(paths, key=key)]


def load(name, split=None, *, names: bool = False, **resolve_kw):
    """The HR images of dataset ``name`` as a list of uint8 arrays (``(H, W, 3)``, or ``(H, W)`` for
    grayscale files such as Set14's *bridge*), in file order.

    ``split``: ``"train"``/``"test"`` for ``"builtin"``; None elsewhere.  ``names=True`` returns
    ``(stem, image)`` pairs instead.  Extra keywords go to :func:`resolve` (``download``, ``mirror``,
    ``progress``).  Images are full size; ``modcrop`` them for evaluation.
    """
    items = [(stem, imread(path)) for stem, path in list_files(name, split, **resolve_kw)]
    return items if names else [im for _, im in items]


def named_images(dataset, split=None):
    """``(label, [(name, uint8 HR image)])`` for the test-set argument every evaluation takes.

    ``dataset`` is a registered name (``"Set5"``, ``"builtin"``: its held-out ``"test"`` split unless
    ``split`` says otherwise), a folder of images (a path, or a string naming a folder that is not a
    registered name), a list of uint8 arrays (named ``img_001``, ...), or a list of ``(name, image)``.
    """
    if isinstance(dataset, (str, os.PathLike)):
        p = Path(dataset)
        if isinstance(dataset, os.PathLike) or (p.is_dir() and str(dataset) not in REGISTRY):
            if not p.is_dir():
                raise ValueError(f"{p} is not a folder of images")
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise ValueError(f"{p} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
            return p.name, [(f.stem, imread(f)) for f in files]
        label = info(str(dataset)).name
        if label == "builtin" and split is None:
            split = "test"                       # the builtin photos held out from training
        return label, load(label, split=split, names=True)
    items = list(dataset)
    if items and isinstance(items[0], tuple):
        return "images", items
    return "images", [(f"img_{i:03d}", im) for i, im in enumerate(items, 1)]


def make_pair(hr, scale: int, *, upsample: bool = False, channel: str = "y"):
    """One training/evaluation pair ``(input, target)`` from an HR image, float32 in ``[0, 1]``.

    Parameters
    ----------
    hr : uint8 ``(H, W, 3)`` or ``(H, W)`` (grayscale is used as Y directly)
    scale : int
        The HR image is ``modcrop``-ed to a multiple of ``scale`` first.
    upsample : bool
        False: input is the LR image, ``(H/s, W/s)`` (post-upsampling networks: FSRCNN, ESPCN,
        SRResNet, EDSR).  True: input is the LR image bicubic-upsampled back to ``(H, W)``
        (pre-upsampling networks: SRCNN, VDSR, DRCN, DRRN, RED).
    channel : ``"y"`` or ``"rgb"``
        ``"y"``: returns ``(H', W')`` arrays.  SRCNN's MATLAB recipe: Y = rgb2ycbcr(uint8 HR) rounded
        to uint8, divided by 255, then ``imresize`` in double, unrounded and unclipped (bicubic may
        overshoot [0, 1] slightly, as in the papers).  ``"rgb"``: returns ``(H', W', 3)``; the LR is
        MATLAB's uint8 bicubic of the uint8 RGB HR (EDSR's ``LR_bicubic`` files), upsampled, if asked,
        by uint8 bicubic too, then divided by 255.

    Returns ``(input, target)``, float32.
    """
    hr = np.asarray(hr)
    if hr.dtype != np.uint8:
        raise TypeError(f"make_pair expects a uint8 HR image, got {hr.dtype} (use imread)")
    s = int(scale)
    if hr.shape[0] < s or hr.shape[1] < s:
        raise ImageError("<array>", f"image is {hr.shape[1]}x{hr.shape[0]} px, too small for scale {s}",
                         "use a larger image or a smaller scale")
    ch = channel.lower()
    if ch not in ("y", "rgb"):
        raise ValueError(f"channel must be 'y' or 'rgb', got {channel!r}")
    inp, ref = prepare(hr, s, ("bicubic-" if upsample else "lr-") + ch)
    if ch == "y":
        return inp.astype(np.float32), (ref.astype(np.float64) / 255.0).astype(np.float32)
    if ref.ndim == 2:
        ref = np.repeat(ref[..., None], 3, axis=2)
    return inp.astype(np.float32) / 255.0, ref.astype(np.float32) / 255.0


def make_pairs(images, scale: int, **kw):
    """:func:`make_pair` for each image of a list (or a dataset name, loaded with :func:`load`)."""
    if isinstance(images, str):
        images = load(images)
    return [make_pair(im, scale, **kw) for im in images]


_init_registry()
