"""Acceptance 1 of issue 5: every weight file shipped in ``tinysr/weights`` reproduces the Set5 PSNR of its
manifest entry (the number in the README's results table) within 0.01 dB, under the protocol; SRCNN x3 and
FSRCNN x3 reach the papers' 91-image numbers.  Without shipped weights there is nothing to check (the
parametrisation is empty and pytest reports it as skipped)."""
import re
from pathlib import Path

import pytest

import tinysr
from tinysr.api import shipped_weights

pytestmark = pytest.mark.shared
SHIPPED = shipped_weights()
README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
PAPER_X3 = {"srcnn-x3": 32.39, "fsrcnn-x3": 33.06}   # SRCNN ECCV'14 (91 images); FSRCNN ECCV'16 (91 images)
# Shipped weights known to fall short of the paper: strict xfails, so that better weights make them fail
# loudly (remove the entry then) and the shortfall is visible in every test report.
BELOW_PAPER = {"srcnn-x3": "SRCNN x3 trained by tinysr (20k Adam steps) stops 0.13 dB short of the paper's 32.39 dB "
                           "(issue 5, acceptance 1, still open)",
               "fsrcnn-x3": "FSRCNN x3 trained by tinysr on 2 CPU cores stops short of the paper's 33.06 dB "
                            "(issue 5, acceptance 1, still open)"}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_weights_reproduce_their_row(name, data_dir):
    entry = SHIPPED[name]
    for key in ("model", "scale", "command", "train_seconds", "psnr"):
        assert key in entry, f"manifest entry {name} lacks {key}"
    rep = tinysr.evaluate(name, "Set5")
    print(f"\n[shipped] {name}: Set5 {rep['psnr']:.3f} dB (manifest {entry['psnr']['Set5']:.3f})")
    assert abs(rep["psnr"] - entry["psnr"]["Set5"]) < 0.01, (rep["psnr"], entry["psnr"]["Set5"])
    assert f"{entry['psnr']['Set5']:.2f}" in README and name in README, "the README's results table lacks this row"
    assert re.search(re.escape(entry["command"].split(" --out")[0]), README), "the README lacks the command"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=BELOW_PAPER[n]))
                                  if n in BELOW_PAPER else n for n in sorted(set(PAPER_X3) & set(SHIPPED))])
def test_shipped_x3_weights_reach_the_papers_number(name, data_dir):
    assert SHIPPED[name]["psnr"]["Set5"] >= PAPER_X3[name], (name, SHIPPED[name]["psnr"]["Set5"], PAPER_X3[name])


def test_results_table_lists_every_shipped_weight():
    table = tinysr.api.results_table()
    for name, e in SHIPPED.items():
        assert f"`{name}`" in table and e["command"] in table
