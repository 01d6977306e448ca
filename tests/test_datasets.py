"""Registry, resolver and downloader (against a real HTTP server on 127.0.0.1), and the pair builder."""
import hashlib
import http.server
import io
import threading

import numpy as np
import pytest
from PIL import Image

from tinysr.data import datasets
from tinysr.data.datasets import DatasetError, DatasetInfo, PinnedFile, load, make_pair, resolve
from tinysr.data.io import imread
from tinysr.data.resize import imresize, modcrop


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """An empty TINYSR_DATA and an empty cache, downloads allowed."""
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("TINYSR_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TINYSR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TINYSR_MIRROR", raising=False)
    monkeypatch.delenv("TINYSR_OFFLINE", raising=False)
    return tmp_path


class _Handler(http.server.BaseHTTPRequestHandler):
    files = {}          # url path -> bytes
    cut = set()         # url paths whose transfer stops half way

    def do_GET(self):  # noqa: N802
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if self.path in self.cut else body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A small HTTP server on 127.0.0.1 (only), stopped at teardown and after 120 s at the latest."""
    handler = type("H", (_Handler,), {"files": {}, "cut": set()})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    guard = threading.Timer(120, srv.shutdown)
    guard.daemon = True
    guard.start()
    yield srv, handler, f"http://127.0.0.1:{srv.server_address[1]}"
    guard.cancel()
    srv.shutdown()
    srv.server_close()
    t.join(5)


def _cache_empty(root):
    cache = root / "cache"
    return not cache.exists() or list(cache.iterdir()) == []


def _png_bytes(a, fmt="PNG"):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, fmt)
    return buf.getvalue()


def _sha(b):
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def tiny_set(monkeypatch, server):
    """Register 'TinySet': one PNG original and one BMP original (converted to PNG on download)."""
    _, handler, _ = server
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (9, 15, 3), dtype=np.uint8)
    png, bmp = _png_bytes(a), _png_bytes(b, "BMP")
    im = Image.open(io.BytesIO(bmp))
    im.load()
    pix = _sha(f"{im.mode} {im.size[0]}x{im.size[1]}\n".encode() + im.tobytes())
    files = (PinnedFile("HR/a.png", "someone/repo/0123abc/imgs/a.png", len(png), _sha(png)),
             PinnedFile("HR/b c.png", "someone/repo/0123abc/imgs/b c.bmp", len(bmp), _sha(bmp),
                        png_sha256="0" * 64, pixel_sha256=pix))
    handler.files.update({"/someone/repo/0123abc/imgs/a.png": png,
                          "/someone/repo/0123abc/imgs/b%20c.bmp": bmp})
    monkeypatch.setitem(datasets.REGISTRY, "TinySet",
                        DatasetInfo("TinySet", "two images", "-", "test", "HR/*.png", files, count=2))
    return a, b


def test_registry_lists_the_sets():
    for name in ["Set5", "Set14", "B100", "Urban100", "T91", "General100", "BSD200", "DIV2K", "builtin"]:
        assert name in datasets.names()
    assert len(datasets.info("Set5").files) == 20           # 5 HR + 15 LR_bicubic references
    assert len(datasets.info("b100").files) == 100          # case-insensitive names
    assert datasets.info("T91").files[0].png_sha256          # BMP originals are converted
    with pytest.raises(DatasetError, match="unknown dataset"):
        datasets.info("Set6")


def test_resolves_shared_data(data_dir):
    assert resolve("Set5") == data_dir / "Set5"
    imgs = load("Set14", names=True)
    assert len(imgs) == 14
    by = dict(imgs)
    assert by["bridge"].ndim == 2 and by["baboon"].shape == (480, 500, 3)
    assert len(load("T91")) == 91


def test_builtin_is_offline_and_split(no_data, monkeypatch):
    monkeypatch.setenv("TINYSR_OFFLINE", "1")
    train = load("builtin", split="train", names=True)
    test = load("builtin", split="test", names=True)
    assert {"astronaut"} <= {n for n, _ in train} and {"coffee", "chelsea", "rocket"} == {n for n, _ in test}
    assert not ({n for n, _ in train} & {n for n, _ in test})
    assert all(im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3 for _, im in train + test)
    assert len(load("builtin")) == len(train) + len(test)


def test_download_success_then_cached(no_data, server, tiny_set):
    _, handler, url = server
    a, b = tiny_set
    path = resolve("TinySet", mirror=url, progress=False)
    assert path == no_data / "cache" / "TinySet"
    got = load("TinySet", names=True, mirror=url)
    assert [n for n, _ in got] == ["a", "b c"]
    np.testing.assert_array_equal(got[0][1], a)
    np.testing.assert_array_equal(got[1][1], b)                 # BMP -> PNG, pixels checked
    assert sorted(p.name for p in (no_data / "cache").iterdir()) == ["TinySet"]
    handler.files.clear()                                      # server gone: the cache answers
    assert resolve("TinySet", mirror=url) == path


def test_download_checksum_mismatch_leaves_nothing(no_data, server, tiny_set):
    _, handler, url = server
    handler.files["/someone/repo/0123abc/imgs/b%20c.bmp"] = _png_bytes(np.zeros((9, 15, 3), np.uint8), "BMP")
    with pytest.raises(DatasetError, match="checksum mismatch") as e:
        resolve("TinySet", mirror=url, progress=False)
    assert "Nothing was written" in str(e.value) and str(no_data / "data" / "TinySet") in str(e.value)
    assert _cache_empty(no_data)


def test_download_interrupted_leaves_nothing(no_data, server, tiny_set):
    _, handler, url = server
    handler.cut.add("/someone/repo/0123abc/imgs/b%20c.bmp")
    with pytest.raises(DatasetError, match="interrupted"):
        resolve("TinySet", mirror=url, progress=False)
    assert _cache_empty(no_data)


def test_download_http_error_and_offline(no_data, server, tiny_set, monkeypatch):
    srv, handler, url = server
    del handler.files["/someone/repo/0123abc/imgs/a.png"]
    with pytest.raises(DatasetError, match="HTTP 404"):
        resolve("TinySet", mirror=url, progress=False)
    assert _cache_empty(no_data)
    # Offline: nothing listens on this port any more.
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()
    with pytest.raises(DatasetError, match="offline") as e:
        resolve("TinySet", mirror=dead, progress=False, timeout=5)
    assert str(no_data / "cache" / "TinySet") in str(e.value)
    assert _cache_empty(no_data)
    monkeypatch.setenv("TINYSR_OFFLINE", "1")
    with pytest.raises(DatasetError, match="downloading is switched off"):
        resolve("TinySet", mirror=url)
    monkeypatch.setenv("TINYSR_MIRROR", dead)                  # the env override is used too
    monkeypatch.delenv("TINYSR_OFFLINE")
    with pytest.raises(DatasetError, match="offline"):
        resolve("TinySet", progress=False, timeout=5)


def test_download_real_pinned_table_from_local_mirror(no_data, server, data_dir):
    """Set5's pinned URLs and checksums, served from a mirror made of the shared files."""
    _, handler, url = server
    import urllib.parse
    for pf in datasets.info("Set5").files:
        handler.files["/" + urllib.parse.quote(pf.url_path)] = (data_dir / "Set5" / pf.local).read_bytes()
    path = resolve("Set5", mirror=url, progress=True)
    assert path == no_data / "cache" / "Set5"
    for pf in datasets.info("Set5").files:
        assert (path / pf.local).read_bytes() == (data_dir / "Set5" / pf.local).read_bytes()


def test_not_downloadable_sets_name_the_folder(no_data):
    for name in ("Urban100", "General100", "DIV2K"):
        with pytest.raises(DatasetError) as e:
            resolve(name)
        msg = str(e.value)
        assert str(no_data / "data" / name) in msg and str(no_data / "cache" / name) in msg


def test_user_filled_folder_is_used(no_data):
    d = no_data / "data" / "Urban100" / "HR"
    d.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / "img_001.png")
    with pytest.warns(UserWarning, match="found 1 images"):
        imgs = load("Urban100")
    assert len(imgs) == 1


def test_make_pair_shapes_and_protocol(data_dir):
    hr = imread(data_dir / "Set5" / "HR" / "woman.png")          # 344 x 228
    lr, t = make_pair(hr, 3)
    assert lr.dtype == np.float32 and lr.shape == (114, 76) and t.shape == (342, 228)
    up, t2 = make_pair(hr, 3, upsample=True)
    assert up.shape == t2.shape == (342, 228)
    lr_rgb, t_rgb = make_pair(hr, 3, channel="rgb")
    ref = imread(data_dir / "Set5" / "LR_bicubic" / "X3" / "womanx3.png")
    np.testing.assert_array_equal(np.round(lr_rgb * 255).astype(np.uint8), ref)   # = MATLAB's LR file
    assert t_rgb.shape == (342, 228, 3) and 0 <= t_rgb.min() and t_rgb.max() <= 1
    gray = np.zeros((10, 11), np.uint8)
    x, y = make_pair(gray, 2, channel="rgb", upsample=True)
    assert x.shape == y.shape == (10, 10, 3)
    with pytest.raises(ValueError, match="too small"):
        make_pair(gray, 16)
    with pytest.raises(TypeError):
        make_pair(gray.astype(float), 2)
