"""The documentation describes the code that exists: the architecture map names every module, the course
site lists every lesson, and the README stays a short front page (tests/test_setup.py)."""
import re

import pytest
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_architecture_map_names_every_module():
    """docs/architecture.md is the map of the code: a module added, moved or renamed must appear there (as
    ``name.py`` or `` `name` ``), so that the map cannot fall behind the tree unnoticed."""
    text = (REPO / "docs" / "architecture.md").read_text()
    modules = [p for root in ("tinysr", "kernels") for p in sorted((REPO / root).rglob("*.py"))
               if p.name != "__init__.py" and "__pycache__" not in p.parts]
    assert len(modules) > 40
    missing = [str(p.relative_to(REPO)) for p in modules if f"{p.stem}.py" not in text and f"`{p.stem}`" not in text]
    assert not missing, f"docs/architecture.md does not name these modules: {missing}"


def test_course_site_lists_every_lesson():
    """docs/lessons/index.md's table of contents names each notebook in lessons/, in order (the site build
    mirrors lessons/*.ipynb next to it; a lesson missing from the list would not be reachable)."""
    toc = re.search(r"```\{toctree\}(.*?)```", (REPO / "docs" / "lessons" / "index.md").read_text(), re.S)
    assert toc, "docs/lessons/index.md has a toctree"
    listed = [line.strip() for line in toc.group(1).splitlines() if line.strip() and not line.startswith(":")]
    assert listed == sorted(p.stem for p in (REPO / "lessons").glob("*.ipynb"))


def test_training_cost_figure_reads_the_shipped_curves_and_extrapolates_only_a_rising_trend(tmp_path):
    import importlib.util
    import json
    import math
    spec = importlib.util.spec_from_file_location("training_cost", Path(__file__).resolve().parents[1] / "docs" /
                                                  "training_cost.py")
    tc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tc)
    manifest = {"a-x2": {"scale": 2, "curve": [{"step": 1000, "cpu_hours": 0.5, "psnr": 35.0},
                                                {"step": 2000, "cpu_hours": 1.0, "psnr": 36.0}]},
                "b-x3": {"scale": 3}}
    found = tc.curves(manifest)
    assert found == {"a-x2": (2, [0.5, 1.0], [35.0, 36.0])}
    assert tc.draw(found, tmp_path / "cost.png").stat().st_size > 5000
    # points on PSNR = 36 + 2 log(hours) reach 37 dB at exp(0.5) hours; a falling or flat trend never does
    hours = [1.0, 2.0, 4.0, 8.0]
    assert tc.projected_hours(hours, [36 + 2 * math.log(h) for h in hours], 37.0) == pytest.approx(math.exp(0.5))
    assert tc.projected_hours(hours, [36.0, 35.9, 35.8, 35.7], 37.0) is None
    # only the second half of the hours counts: points before it may lie anywhere
    assert tc.projected_hours([0.5, 1.0] + hours[2:], [30.0, 40.0] + [36 + 2 * math.log(h) for h in hours[2:]],
                              37.0) == pytest.approx(math.exp(0.5))
    shipped = json.loads(tc.MANIFEST.read_text())
    assert set(tc.curves(shipped)) == {n for n, e in shipped.items() if e.get("curve")}
