"""Reliability at the edges: every numeric option checked by one rule table (CLI and Python alike), a
resume that may change the learning rate, clipping and patch size, falls back past a damaged checkpoint
and cleans up after a killed write, a full disk named in one sentence, a resume refusal that shows only
what differs, an upscale that states (and caps) its memory, and a final training line that reads an
early PSNR against bicubic's."""
import errno
import json
import math
import struct
import zlib

import numpy as np
import pytest

import tinysr
from tinysr import api, checkpoint, cli, options, upscaling


def _quiet(lines):
    return lambda msg: lines.append(msg)


# ---------------------------------------------------------------------------------------------------
# item 8: one rule table
# ---------------------------------------------------------------------------------------------------

def _bad_values(rule):
    """Values each rule must refuse: below/above its bounds, the wrong type, non-finite, a bool."""
    bad = ["abc", True, float("nan"), float("inf")]
    if rule.low is not None:
        bad.append(rule.low if rule.low_open else (rule.low - 1 if rule.kind is int else rule.low - 1e-3))
        bad.append(-1 if rule.low >= 0 else rule.low * 2)
    if rule.high is not None:
        bad.append(rule.high + 1 if rule.kind is int else rule.high * 2)
    if rule.kind is int:
        bad.append(2.5)
    return bad


def _good_value(rule):
    if rule.low is None:
        return 1
    v = rule.low + 1 if rule.low_open or rule.kind is int else rule.low
    return rule.kind(v)


@pytest.mark.parametrize("name", sorted(options.RULES))
def test_every_rule_refuses_its_bad_values_in_one_sentence(name):
    rule = options.RULES[name]
    flag = "--" + name.replace("_", "-")
    for bad in _bad_values(rule):
        with pytest.raises(ValueError) as e:
            options.check(name, bad)
        text = str(e.value)
        assert text.startswith(f"{name} ({flag}) must be {rule.describe()}") and repr(bad) in text, text
        assert "\n" not in text
    good = _good_value(rule)
    assert options.check(name, good) == good and options.check(name, str(good)) == good
    assert options.check(name, None) is None
    for word in rule.words:
        assert options.check(name, word.upper()) == word


# every numeric option of every command, with the rule it must follow
CLI_OPTIONS = [
    (["demo"], "--steps", "steps"),
    (["eval", "bicubic"], "--scale", "scale"), (["eval", "bicubic"], "--tile", "tile"),
    (["upscale", "x.png"], "--scale", "scale"), (["upscale", "x.png"], "--tile", "tile"),
    (["upscale", "x.png"], "--max-memory", "max_memory_gb"),
    *[(["train", "srcnn"], "--" + n.replace("_", "-"), n)
      for n in ("scale", "iterations", "epochs", "batch_size", "patch_size", "lr", "clip", "seed", "eval_every",
                "checkpoint_every")],
    *[(["srgan", "g.npz"], "--" + n.replace("_", "-"), n)
      for n in ("iterations", "batch_size", "patch_size", "lr", "adv_weight", "disc_base", "disc_dense",
                "eval_every", "checkpoint_every", "seed")],
]


def test_every_rule_is_used_by_the_command_line():
    assert {n for _, _, n in CLI_OPTIONS} == set(options.RULES)


@pytest.mark.parametrize("argv, flag, name", CLI_OPTIONS, ids=[f"{a[0]}{f}" for a, f, _ in CLI_OPTIONS])
def test_command_line_refuses_each_bad_number_with_the_rule(argv, flag, name, capsys):
    rule = options.RULES[name]
    bad = _bad_values(rule)[-1] if rule.low is not None else "abc"
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(argv + [flag, str(bad)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"argument {flag}: must be {rule.describe()}, got {str(bad)!r}" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("kw, words", [
    ({"batch_size": 0}, "batch_size (--batch-size) must be an integer from 1 to 65536, got 0"),
    ({"batch_size": -1}, "batch_size (--batch-size) must be"),
    ({"patch_size": 0}, "patch_size (--patch-size) must be"),
    ({"checkpoint_every": 0}, "checkpoint_every (--checkpoint-every) must be"),
    ({"epochs": 0}, "epochs (--epochs) must be an integer >= 1, got 0"),
    ({"iterations": 0}, "iterations (--iterations) must be"),
    ({"lr": 0.0}, "lr (--lr) must be a finite number > 0, got 0.0"),
    ({"clip": -1.0}, "clip (--clip) must be"),
    ({"scale": -3}, "scale (--scale) must be an integer from 2 to 16, got -3"),
    ({"scale": 0}, "scale (--scale) must be"),
    ({"seed": -1}, "seed (--seed) must be"),
])
def test_train_checks_every_number_before_anything_is_written(tmp_path, kw, words):
    out = tmp_path / "never"
    with pytest.raises(ValueError) as e:
        tinysr.train("srcnn", data="no-such-data", out_dir=out, progress=False, log=lambda m: None, **kw)
    assert words in str(e.value)
    assert not out.exists()


def test_eval_and_upscale_check_scale_and_tile(tmp_path):
    with pytest.raises(ValueError, match=r"scale \(--scale\) must be .* got 0"):
        api.evaluate("bicubic", "builtin", scale=0)
    with pytest.raises(ValueError, match=r"scale \(--scale\) must be .* got -3"):
        api.upscale(np.zeros((20, 20, 3), np.uint8), "fsrcnn", scale=-3)
    with pytest.raises(ValueError, match=r"tile \(--tile\) must be .* got 0"):
        api.upscale(np.zeros((20, 20, 3), np.uint8), "fsrcnn", scale=3, tile=0)
    with pytest.raises(ValueError, match=r"tile \(--tile\) must be .* got 0"):
        api.evaluate("fsrcnn-x3", "builtin", tile=0)


def test_upscale_to_an_unshipped_scale_says_which_scales_exist(capsys):
    code = cli.main(["upscale", "builtin:chelsea", "--scale", "5"])
    err = capsys.readouterr().err
    assert code == 1 and "no shipped weights 'fsrcnn-x5': tinysr ships fsrcnn for x2, x3, x4 only" in err, err
    with pytest.raises(SystemExit):
        cli.main(["upscale", "builtin:chelsea", "--scale", "100"])
    assert "must be an integer from 2 to 16, got '100'" in capsys.readouterr().err


def test_fresh_on_a_used_folder_speaks_of_the_flag(small_data, tmp_path, capsys):
    train, test = small_data
    out = tmp_path / "run"
    argv = ["train", "srcnn", "--iterations", "1", "--batch-size", "2", "--data", str(train), "--eval-data", "none",
            "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert cli.main(argv + ["--fresh"]) == 1
    err = capsys.readouterr().err
    assert "run without --fresh" in err and "resume=True" in err and "pass resume" not in err


# ---------------------------------------------------------------------------------------------------
# items 5, 6, 7 and 9: resume
# ---------------------------------------------------------------------------------------------------

def _kw(small_data, out, **extra):
    train, test = small_data
    return dict(scale=3, data=train, eval_data=None, batch_size=4, out_dir=out, seed=7, progress=False,
                checkpoint_every=2, **extra)


def test_resume_may_change_lr_clip_and_patch_size_and_records_it(small_data, tmp_path):
    lines = []
    tinysr.train("srcnn", iterations=4, lr=1e-3, **_kw(small_data, tmp_path / "ref", log=_quiet([])))
    ref = tinysr.train("srcnn", iterations=6, lr=1e-3, **_kw(small_data, tmp_path / "ref", log=_quiet([])))
    tinysr.train("srcnn", iterations=4, lr=1e-3, **_kw(small_data, tmp_path / "run", log=_quiet([])))
    r = tinysr.train("srcnn", iterations=6, lr=1e-2, clip=0.5, patch_size=25,
                     **_kw(small_data, tmp_path / "run", log=_quiet(lines)))
    assert r.resumed_from.name == "step_0000004.npz"
    assert any("written with" in m and "lr 0.001" in m and "goes on with" in m and "lr 0.01" in m and "patch_size" in m
               for m in lines), lines
    # the new rate rules from the resumed step on, through the same schedule (ten times the reference's)
    np.testing.assert_allclose(r.history["lr"][4:], [10 * v for v in ref.history["lr"][4:]], rtol=1e-12)
    assert r.history["lr"][:4] == ref.history["lr"][:4]
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    (change,) = hist["changes"]
    assert change["step"] == 4 and change["lr"] == {"from": 1e-3, "to": 1e-2}
    assert change["grad_clip"]["to"] == {"type": "norm", "max_norm": 0.5}
    assert change["patch_size"]["to"] == 25
    _, _, meta = checkpoint.load(tmp_path / "run" / "step_0000006.npz")
    assert meta["lr"] == 1e-2 and meta["patch_size"] == 25     # the next resume compares with the new values


def test_a_refused_resume_names_only_the_fields_that_differ(small_data, tmp_path):
    tinysr.train("srcnn", iterations=2, **_kw(small_data, tmp_path / "run", log=_quiet([])))
    with pytest.raises(ValueError) as e:
        tinysr.train("srcnn", iterations=4, **{**_kw(small_data, tmp_path / "run", log=_quiet([])), "batch_size": 8})
    text = str(e.value)
    assert "recipe_params.batch_size 4 there, 8 now" in text
    assert "optimizer" not in text and "lr_schedule" not in text and len(text) < 400, text


@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_resume_falls_back_to_the_newest_checkpoint_that_reads(small_data, tmp_path, damage):
    out = tmp_path / "run"
    tinysr.train("srcnn", iterations=4, **_kw(small_data, out, log=_quiet([])))
    newest = out / "step_0000004.npz"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2] if damage == "truncated"
                       else np.random.default_rng(0).bytes(len(data)))
    lines = []
    r = tinysr.train("srcnn", iterations=6, **_kw(small_data, out, log=_quiet(lines)))
    assert r.resumed_from.name == "step_0000002.npz"
    skip = [m for m in lines if m.startswith("==> skipping")]
    assert len(skip) == 1 and str(newest) in skip[0] and "not a readable tinysr checkpoint" in skip[0], lines
    assert r.history["step"] == list(range(1, 7))


def test_resume_with_no_readable_checkpoint_says_so(small_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "step_0000002.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"no checkpoint in .* can be read \(1 tried"):
        tinysr.train("srcnn", iterations=4, **_kw(small_data, out, log=_quiet([])))
    assert (out / "step_0000002.npz").read_bytes() == b"junk"       # nothing the user had is deleted


def test_stale_temporaries_of_a_killed_write_are_removed_on_start(small_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stale = [out / ".step_0000002.npz.k3j2h1.tmp", out / ".history.json.a1b2c3.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    keep = out / "notes.tmp"
    keep.write_text("mine")
    lines = []
    tinysr.train("srcnn", iterations=2, **_kw(small_data, out, log=_quiet(lines)))
    assert not any(p.exists() for p in stale) and keep.read_text() == "mine"
    assert sum("removed .step_0000002.npz.k3j2h1.tmp" in m or "removed .history.json" in m for m in lines) == 2


def test_disk_full_names_the_file_and_what_to_free(tmp_path, monkeypatch):
    from tinysr.demo import TinyESPCN
    model = TinyESPCN()
    target = tmp_path / "step_0000010.npz"
    checkpoint.save(target, model)
    before = target.read_bytes()

    def full(file, **arrays):
        file.write(b"x" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(OSError) as e:
        checkpoint.save(target, model)
    text = str(e.value)
    assert e.value.errno == errno.ENOSPC
    assert f"the disk holding {tmp_path} is full: writing step_0000010.npz needs about" in text
    assert "MB free" in text and "free that much there" in text and "run the same command again" in text
    assert target.read_bytes() == before and not list(tmp_path.glob(".*.tmp"))


# ---------------------------------------------------------------------------------------------------
# item 4 end to end, and the final line
# ---------------------------------------------------------------------------------------------------

def test_lr_1e6_fails_with_rc_1_and_writes_no_checkpoint(small_data, tmp_path, capsys):
    train, _ = small_data
    out = tmp_path / "run"
    code = cli.main(["train", "srcnn", "--lr", "1e6", "--iterations", "12", "--checkpoint-every", "1",
                     "--batch-size", "2", "--data", str(train), "--eval-data", "none", "--out", str(out),
                     "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "--clip" in err and "no checkpoint" in err, err
    assert not list(out.glob("step_*.npz"))


def test_final_line_reads_the_psnr_against_bicubic_and_the_shipped_steps(small_data, tmp_path, capsys):
    train, test = small_data
    code = cli.main(["train", "fsrcnn", "--scale", "2", "--iterations", "2", "--batch-size", "2", "--patch-size", "10",
                     "--data", str(train), "--eval-data", str(test), "--out", str(tmp_path / "run"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    last = out.strip().splitlines()[-1]
    steps = api.shipped_weights()["fsrcnn-x2"]["steps"]
    bic = api.evaluate("bicubic", str(test), scale=2)["psnr"]
    assert "PSNR" in last and "after 2 steps" in last and f"bicubic {bic:.2f} dB on the same set" in last, last
    assert f"the shipped weights fsrcnn-x2 took {steps:,} steps" in last, last


# ---------------------------------------------------------------------------------------------------
# item 10: the memory an upscale needs
# ---------------------------------------------------------------------------------------------------

def _png_header_only(path, w, h):
    """A PNG that declares ``w`` x ``h`` RGB pixels (263 KB would hold a real 9500x9500 one)."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


def test_a_huge_upscale_is_refused_before_the_image_is_decoded(tmp_path, monkeypatch, capsys):
    big = _png_header_only(tmp_path / "big.png", 9500, 9500)
    monkeypatch.setattr(upscaling, "read_image", lambda image: pytest.fail("decoded before the memory check"))
    with pytest.raises(MemoryError) as e:
        api.upscale(big, "fsrcnn", scale=3)
    text = str(e.value)
    assert "upscaling 9500x9500 to 28500x28500 needs about" in text and "above the 4 GB limit" in text
    assert "--max-memory" in text
    need = float(text.split("needs about ")[1].split(" GB")[0])
    assert 9500 * 9500 * 3 * (1 + 2 * 9) / 1e9 <= need < 12, need     # input + output twice, + a tile
    code = cli.main(["upscale", str(big), "--scale", "3", "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("tinysr upscale: upscaling 9500x9500") and not (tmp_path / "o.png").exists()


def test_even_a_header_past_pils_bomb_limit_gets_the_memory_sentence(tmp_path, monkeypatch):
    from PIL import Image
    before = Image.MAX_IMAGE_PIXELS
    big = _png_header_only(tmp_path / "huge.png", 30000, 30000)      # 900 Mpx: PIL alone would refuse
    monkeypatch.setattr(upscaling, "read_image", lambda image: pytest.fail("decoded before the memory check"))
    with pytest.raises(MemoryError, match="upscaling 30000x30000 to 60000x60000 needs about"):
        api.upscale(big, "fsrcnn", scale=2)
    assert Image.MAX_IMAGE_PIXELS == before and before is not None      # PIL's own guard is restored


def test_upscale_states_its_memory_and_the_limit_can_be_lifted(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    lines = []
    sr = api.upscale(img, "fsrcnn", scale=2, log=lines.append)
    assert sr.shape == (80, 60, 3) and len(lines) == 1 and "upscaling 30x40 to 60x80 needs about" in lines[0]
    with pytest.raises(MemoryError, match="above the 1e-06 GB limit"):
        api.upscale(img, "fsrcnn", scale=2, max_memory_gb=1e-6)
    again = api.upscale(img, "fsrcnn", scale=2, max_memory_gb=None)
    np.testing.assert_array_equal(again, sr)


@pytest.mark.parametrize("name", ["fsrcnn-x3", "srcnn-x3"])          # (VDSR: 1.1-1.4x, but 90 s)
def test_memory_estimate_follows_the_measured_peak(name):
    """The estimate is within a factor of 2.5 of tracemalloc's peak, tiled and untiled."""
    import tracemalloc
    from tinysr.functional.dispatch import cpu_kernels
    net = tinysr.load(name)
    for shape, tile in (((300, 300, 3), 128), ((120, 100, 3), None)):
        img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
        if cpu_kernels() is not None:       # buffers recycled from an earlier call would not be traced
            cpu_kernels().memory.release()
        tracemalloc.start()
        api.upscale(img, net, scale=3, tile=tile if tile else "off", max_memory_gb=None)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        est = upscaling.upscale_memory(shape, net, 3, tile)
        assert math.isfinite(est) and peak / 2.5 <= est <= peak * 2.5, (shape, tile, peak, est)


def test_srgan_and_demo_check_their_numbers_in_python():
    from tinysr.demo import run
    from tinysr.gan import train_srgan
    with pytest.raises(ValueError, match=r"steps \(--steps\) must be an integer >= 1, got 0"):
        run(steps=0)
    with pytest.raises(ValueError, match=r"batch_size \(--batch-size\) must be .* got 0"):
        train_srgan(object(), sample=lambda rng: None, batch_size=0)
    with pytest.raises(ValueError, match=r"adv_weight \(--adv-weight\) must be a finite number >= 0, got -1"):
        train_srgan(object(), sample=lambda rng: None, adv_weight=-1)
