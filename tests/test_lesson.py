"""The lessons' shared first cell (tinysr.lesson.setup): quick switch, data folder, relative paths."""
import os
from pathlib import Path

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
