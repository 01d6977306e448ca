"""Acceptance 1 of issue 5: every weight file shipped in ``tinysr/weights`` reproduces the Set5 PSNR of its
manifest entry (the number in the results table of docs/results.md) within 0.01 dB, under the protocol; SRCNN x3 and
FSRCNN x3 reach the papers' 91-image numbers (and every shipped x2/x4 its paper's).  Without shipped weights there is nothing to check (the
parametrisation is empty and pytest reports it as skipped)."""
import re
from pathlib import Path

import pytest

import tinysr
from tinysr.api import shipped_weights

pytestmark = pytest.mark.shared
SHIPPED = shipped_weights()
RESULTS_PAGE = (Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text()
# Set5 PSNR of the papers: SRCNN 9-1-5 trained on 91 images (ECCV'14); FSRCNN x3 trained on 91 images (ECCV'16,
# the figure issue 5 sets), FSRCNN x2/x4 from the ECCV'16 table (91 images + General-100).
PAPER = {"srcnn-x2": 36.34, "srcnn-x3": 32.39, "srcnn-x4": 30.09,
         "fsrcnn-x2": 37.00, "fsrcnn-x3": 33.06, "fsrcnn-x4": 30.71}
# tinysr's own deep networks (issue 22) aim at VDSR's published Set5 PSNR (CVPR 2016, Table 3): the residual
# designs must beat the 20-layer plain network, trained by tinysr on a CPU.
TARGETS = {"edsr_baseline-x2": 37.53, "edsr_baseline-x4": 31.35, "srresnet-x4": 31.35}
# Shipped weights known to fall short of the paper: strict xfails, so that better weights make them fail
# loudly (remove the entry then) and the shortfall is visible in every test report.
_SHORT = "trained by tinysr (20k-100k Adam steps on 2 CPU cores) stops short of the paper's {} dB (issue 5, still open)"
BELOW_PAPER = {n: f"{n} " + _SHORT.format(PAPER[n]) for n in PAPER if n != "srcnn-x3"}  # srcnn-x3 reaches it


def _short_of_target(name, target):
    """The xfail reason: how far the shipped weights stand from the target, from their manifest entry."""
    e = SHIPPED.get(name, {})
    got, curve = e.get("psnr", {}).get("Set5"), e.get("curve") or [{}]
    if got is None:
        return f"{name} is not shipped"
    return (f"{name} trained by tinysr: Set5 {got:.2f} dB after {e['steps']:,} steps and "
            f"{curve[-1].get('cpu_hours', 0):.1f} CPU hours, {target - got:.2f} dB short of VDSR's {target} dB "
            "(issue 22: docs/results.md gives the measured curve and the projected CPU hours)")


BELOW_TARGET = {n: _short_of_target(n, t) for n, t in TARGETS.items()}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_weights_reproduce_their_row(name, data_dir):
    entry = SHIPPED[name]
    for key in ("model", "scale", "command", "train_seconds", "psnr"):
        assert key in entry, f"manifest entry {name} lacks {key}"
    rep = tinysr.evaluate(name, "Set5")
    print(f"\n[shipped] {name}: Set5 {rep['psnr']:.3f} dB (manifest {entry['psnr']['Set5']:.3f})")
    assert abs(rep["psnr"] - entry["psnr"]["Set5"]) < 0.01, (rep["psnr"], entry["psnr"]["Set5"])
    assert f"{entry['psnr']['Set5']:.2f}" in RESULTS_PAGE and f"`{name}`" in RESULTS_PAGE, \
        "the results table of docs/results.md lacks this row"
    assert re.search(re.escape(entry["command"].split(" --out")[0]), RESULTS_PAGE), "docs/results.md lacks the command"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=BELOW_PAPER[n]))
                                  if n in BELOW_PAPER else n for n in sorted(set(PAPER) & set(SHIPPED))])
def test_shipped_weights_reach_the_papers_number(name, data_dir):
    assert SHIPPED[name]["psnr"]["Set5"] >= PAPER[name], (name, SHIPPED[name]["psnr"]["Set5"], PAPER[name])


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=BELOW_TARGET[n]))
                                  for n in sorted(set(TARGETS) & set(SHIPPED))])
def test_own_deep_networks_beat_vdsrs_paper(name, data_dir):
    assert SHIPPED[name]["psnr"]["Set5"] >= TARGETS[name], (name, SHIPPED[name]["psnr"]["Set5"], TARGETS[name])


def test_results_table_lists_every_shipped_weight():
    table = tinysr.api.results_table()
    for name, e in SHIPPED.items():
        assert f"`{name}`" in table and e["command"] in table


README_ROWS = {"SRCNN 9-1-5": "srcnn", "FSRCNN": "fsrcnn", "VDSR": "vdsr", "SRResNet": "srresnet",
               "EDSR-baseline": "edsr_baseline"}


def test_readme_results_give_the_manifests_set5_numbers():
    """The README's "Results in brief" table shows each shipped weight's Set5 PSNR as the manifest records it
    (which test_shipped_weights_reproduce_their_row checks against tinysr.evaluate), and no number for weights
    that do not ship."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    seen = 0
    for label, net in README_ROWS.items():
        row = re.search(rf"^\| {re.escape(label)} \|([^|]*)\|([^|]*)\|([^|]*)\|", readme, flags=re.M)
        assert row, f"README.md has no results row for {label}"
        for scale, cell in zip((2, 3, 4), row.groups()):
            value, entry = cell.strip().strip("*"), SHIPPED.get(f"{net}-x{scale}")
            assert value == (f"{entry['psnr']['Set5']:.2f}" if entry else "-"), (label, scale, value)
            seen += entry is not None
    assert seen == sum(1 for n in SHIPPED if n.rsplit("-x", 1)[0] in README_ROWS.values())
