"""PSNR/SSIM under the papers' protocol, and the bicubic baseline against the published table."""
import math

import numpy as np
import pytest

from tinysr import metrics
from tinysr.data.color import y_from_uint8
from tinysr.metrics import evaluate_bicubic, format_report, protocol, psnr, ssim

PAPER_BICUBIC = {"Set5": (33.66, 30.39, 28.42), "Set14": (30.24, 27.55, 26.00), "B100": (29.56, 27.21, 25.96)}


def _rand(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_psnr_definition_y_and_border():
    hr = _rand((40, 50, 3))
    assert psnr(hr, hr, 2) == math.inf
    sr = hr.astype(int)
    sr[..., :] += np.where(hr < 128, 3, -3)      # shifts every channel by 3 towards the middle
    sr = sr.astype(np.uint8)
    a, b = y_from_uint8(sr)[4:-4, 4:-4], y_from_uint8(hr)[4:-4, 4:-4]
    expect = 20 * math.log10(255 / math.sqrt(np.mean((a - b) ** 2)))
    assert psnr(sr, hr, 4) == pytest.approx(expect, abs=1e-12)
    # RGB option and explicit border
    c, d = sr[1:-1, 1:-1].astype(float), hr[1:-1, 1:-1].astype(float)
    expect_rgb = 20 * math.log10(255 / math.sqrt(np.mean((c - d) ** 2)))
    assert psnr(sr, hr, 4, channel="rgb", border=1) == pytest.approx(expect_rgb, abs=1e-12)


def test_only_the_shaved_border_is_ignored():
    hr = _rand((30, 30, 3), 1)
    sr = hr.copy()
    sr[:3] = 0                                   # damage only the 3-px border strip
    assert psnr(sr, hr, 3) == math.inf
    assert psnr(sr, hr, 3, border=2) < 30


def test_float_sr_is_rounded_to_8_bits_first():
    hr = _rand((24, 24, 3), 2)
    sr_f = hr / 255.0 + 0.4 / 255.0              # rounds back to hr
    assert psnr(sr_f, hr, 2) == math.inf
    assert ssim(sr_f, hr, 2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        psnr(hr.astype(np.float64), hr, 2)       # 0..255 floats are refused, not guessed
    with pytest.raises(ValueError, match="modcrop"):
        psnr(hr[:-1], hr, 2)


def test_ssim_matches_skimage_random_images():
    from skimage.metrics import structural_similarity
    rng = np.random.default_rng(3)
    hr = _rand((64, 70, 3), 3)
    sr = np.clip(hr.astype(int) + rng.integers(-20, 21, hr.shape), 0, 255).astype(np.uint8)
    for s in (2, 3, 4):
        a, b = y_from_uint8(sr)[s:-s, s:-s], y_from_uint8(hr)[s:-s, s:-s]
        ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=255)
        assert abs(ssim(sr, hr, s) - ref) < 1e-10


def test_ssim_matches_skimage_on_set5_and_reproduces_paper(data_dir, paper_table):
    """Acceptance 3: agreement with scikit-image to 1e-6; Bicubic Set5 x3 SSIM 0.8682 within 0.002."""
    from skimage.metrics import structural_similarity
    from tinysr.data.datasets import load
    from tinysr.metrics import bicubic_sr
    worst = 0.0
    for hr in load("Set5"):
        sr, ref = bicubic_sr(hr, 3, channel="rgb")
        a, b = y_from_uint8(sr)[3:-3, 3:-3], y_from_uint8(ref)[3:-3, 3:-3]
        sk = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                   data_range=255)
        worst = max(worst, abs(ssim(sr, ref, 3) - sk))
    assert worst < 1e-6
    rep = evaluate_bicubic("Set5", 3)
    assert rep["ssim"] == pytest.approx(paper_table["Bicubic"]["Set5"]["x3"][1], abs=0.002)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["Set5", "Set14", "B100"])
def test_bicubic_row_matches_paper(data_dir, paper_table, dataset):
    """Acceptance 2: the Bicubic row, every cell within 0.02 dB (PSNR) and 0.002 (SSIM)."""
    for i, s in enumerate((2, 3, 4)):
        rep = evaluate_bicubic(dataset, s)
        p_psnr, p_ssim = paper_table["Bicubic"][dataset][f"x{s}"]
        assert p_psnr == PAPER_BICUBIC[dataset][i]
        assert abs(rep["psnr"] - p_psnr) <= 0.02, format_report(rep, per_image=False, paper=(p_psnr, p_ssim))
        assert abs(rep["ssim"] - p_ssim) <= 0.002, format_report(rep, per_image=False, paper=(p_psnr, p_ssim))


@pytest.mark.parametrize("dataset", ["Set5", "Set14"])
def test_bicubic_rgb_uint8_pipeline_also_within_tolerance(data_dir, paper_table, dataset):
    # Upsampling MATLAB's uint8 LR files themselves: the other common way, also within 0.02 dB.
    for s in (2, 3, 4):
        rep = evaluate_bicubic(dataset, s, pipeline="rgb")
        assert abs(rep["psnr"] - paper_table["Bicubic"][dataset][f"x{s}"][0]) <= 0.02


def test_report_and_protocol_line(data_dir, capsys):
    rep = evaluate_bicubic("Set5", 4)
    assert [r["name"] for r in rep["images"]] == ["baby", "bird", "butterfly", "head", "woman"]
    text = format_report(rep, paper=(28.42, 0.8104))
    assert "baby" in text and "28.4" in text and rep["protocol"] in text
    assert "Y of BT.601" in protocol(4) and "4 px shaved" in protocol(4)
    assert "RGB" in protocol(2, channel="rgb")
    assert metrics.main(["bicubic", "--dataset", "Set5", "--scale", "3", "--summary"]) == 0
    out = capsys.readouterr().out
    assert "bicubic on Set5 x3" in out and "30.39" in out and "protocol:" in out


def test_evaluate_bicubic_on_arrays_and_builtin():
    imgs = [_rand((36, 36, 3), k) for k in range(2)]
    rep = evaluate_bicubic(imgs, 2)
    assert len(rep["images"]) == 2 and rep["psnr"] > 0
    rep = evaluate_bicubic("builtin", 4, split="test")
    assert len(rep["images"]) == 3 and 20 < rep["psnr"] < 40
