"""The lessons' shared first cell (tinysr.lesson.setup): quick switch, data folder, relative paths."""
import os
from pathlib import Path

import numpy as np
import pytest

from tinysr import lesson


def test_setup_finds_the_data_and_prints_it_relative_to_the_repository(monkeypatch, capsys):
    data = Path(os.environ.get("TINYSR_DATA", "../shared/data")).resolve()
    if not (data / "Set5").is_dir():
        pytest.skip("the benchmark images are not here")
    monkeypatch.setenv("TINYSR_DATA", str(data))
    monkeypatch.setenv("TINYSR_QUICK", "1")
    s = lesson.setup("lesson-test", train="T91", test="Set5")
    out = capsys.readouterr().out
    assert s.quick and s.train_data == "T91" and s.test_data == "Set5"
    shown = os.path.relpath(data, lesson.repo_root()).replace(os.sep, "/")
    assert out.strip() == f"quick mode | data {shown} | training on T91 | testing on Set5"
    assert str(lesson.repo_root()) not in out and not out.split("data ")[1].startswith("/")
    assert s.pick(quick=40, full=3000) == 40
    assert Path(s.out_dir).name == "lesson-test" and Path(s.out_dir).is_absolute()   # a fresh temporary folder


def test_setup_falls_back_to_the_builtin_photos_in_full_mode(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TINYSR_DATA", str(tmp_path))          # a data folder without the wanted sets
    monkeypatch.setenv("TINYSR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TINYSR_QUICK", "0")
    s = lesson.setup("lesson-x", train="T91", test="Set14")
    assert not s.quick and s.pick(quick=40, full=3000) == 3000
    assert s.train_data == "builtin" and s.test_data == "builtin"
    assert s.out_dir == os.path.join("runs", "lesson-x")
    assert capsys.readouterr().out.startswith("full mode | data ")


def test_relative_paths_never_start_at_the_filesystem_root():
    assert lesson.relative(lesson.repo_root() / "lessons") == "lessons"
    assert lesson.relative(lesson.repo_root().parent / "shared" / "data") == "../shared/data"


def test_centre_crop_takes_the_middle_window_and_keeps_short_sides():
    im = np.arange(7 * 9).reshape(7, 9)
    c = lesson.centre_crop(im, 3)
    assert c.shape == (3, 3) and c[0, 0] == im[2, 3] and c[2, 2] == im[4, 5]
    assert lesson.centre_crop(im, 8).shape == (7, 8)              # a side shorter than the crop stays whole


def test_test_images_are_centre_crops_of_the_smallest_in_quick_mode(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYSR_DATA", str(tmp_path))              # no benchmark sets: the builtin photos
    monkeypatch.setenv("TINYSR_CACHE", str(tmp_path / "cache"))
    full = lesson.setup("t", test="Set5", quick=False, verbose=False)
    quick = lesson.setup("t", test="Set5", quick=True, verbose=False)
    everything = full.test_images(crop=40)
    assert len(everything) > 2 and all(im.shape[0] > 40 for _, im in everything)
    crops = quick.test_images(crop=40)
    smallest = sorted(everything, key=lambda t: t[1].size)[:2]
    assert [n for n, _ in crops] == [n for n, _ in smallest]
    assert all(im.shape[:2] == (40, 40) for _, im in crops)
    assert np.array_equal(crops[0][1], lesson.centre_crop(smallest[0][1], 40))
    assert len(full.test_images(crop=40, count=3, always=True)) == 3
    assert all(min(im.shape[:2]) >= 200 for im in full.train_images(min_side=200))


def test_shared_dir_is_the_data_folders_parent_when_it_holds_the_references(monkeypatch, tmp_path):
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("TINYSR_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TINYSR_CACHE", str(tmp_path / "cache"))
    assert lesson.setup("t", quick=True, verbose=False).shared_dir is None
    (tmp_path / "reference").mkdir()
    assert lesson.setup("t", quick=True, verbose=False).shared_dir == tmp_path.resolve()


LESSONS = sorted((lesson.repo_root() / "lessons").glob("*.ipynb"))


def _code_cells(path):
    import json
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def test_every_lesson_starts_with_the_shared_setup():
    """The first code cell of each notebook calls tinysr.lesson.setup; no notebook finds the data itself."""
    assert len(LESSONS) >= 12
    for path in LESSONS:
        cells = _code_cells(path)
        assert "from tinysr.lesson import setup" in cells[0] and "S = setup(" in cells[0], path.name
        source = "\n".join(cells)
        assert "TINYSR_DATA" not in source and 'environ.get("TINYSR_QUICK"' not in source, path.name


def test_lesson_cells_are_short_and_reach_only_public_names():
    """A reader sees one idea per cell (25 lines at most), and no lesson leans on a name the library keeps
    private (``_name``): what a lesson needs, the library offers publicly."""
    import re
    private = re.compile(r"import _|\b_[a-z]\w* import|import .*\b_[a-z]|\._[a-z]")
    for path in LESSONS:
        for k, source in enumerate(_code_cells(path)):
            lines = source.rstrip("\n").split("\n")
            assert len(lines) <= 25, f"{path.name}, code cell {k + 1}: {len(lines)} lines"
            bad = [line for line in lines if private.search(line)]
            assert not bad, f"{path.name}, code cell {k + 1}: {bad}"
