"""The ``tinysr`` command line: every subcommand's --help teaches with examples, the commands work end to
end on small inputs, and every bad input (missing, unreadable, truncated, too small, RGBA, a folder, no
GPU, unknown names) reaches the user as one sentence with exit code 1 -- never a traceback."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tinysr import api, cli, models, nn
from tinysr.data import datasets, imwrite


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_sentence(err, command):
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"tinysr {command}: ") and "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A small FSRCNN x2 saved as a tinysr checkpoint (random weights: the plumbing is under test)."""
    nn.init.seed(0)
    net = models.build("fsrcnn", scale=2, d=8, s=4, m=1)
    return api.save_weights(net, tmp_path_factory.mktemp("w") / "fsrcnn_x2.npz")


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "cat.png"
    imwrite(path, datasets.load("builtin", split="test")[1][:60, :80])
    return path


@pytest.mark.parametrize("command", ["train", "eval", "upscale", "models", "srgan"])
def test_help_teaches(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: tinysr {command}" in out
    if command != "models":
        assert "examples:" in out


def test_upscale_and_compare(ckpt, photo, tmp_path, capsys):
    out = tmp_path / "up.png"
    code, text, err = run(["upscale", str(photo), "--model", str(ckpt), "--scale", "2", "--out", str(out)], capsys)
    assert code == 0, err
    assert "wrote" in text and Image.open(out).size == (160, 120)
    cmp_png = tmp_path / "cmp.png"
    code, text, err = run(["upscale", str(photo), "--model", str(ckpt), "--scale", "2", "--compare", str(cmp_png)],
                          capsys)
    assert code == 0, err
    assert "bicubic" in text and "PSNR" in text and "shaved" in text and cmp_png.stat().st_size > 5000


@pytest.mark.shared
def test_eval_checkpoint_and_bicubic(ckpt, data_dir, capsys):
    code, text, err = run(["eval", str(ckpt), "--dataset", "Set5", "--summary"], capsys)
    assert code == 0, err
    assert "x2" in text and "PSNR" in text and "protocol: Y of BT.601" in text
    code, text, err = run(["eval", "bicubic", "--dataset", "Set5", "--scale", "2", "--summary"], capsys)
    assert code == 0 and "33.66" in text   # the paper's row beside ours


def _bad_images(tmp_path):
    (tmp_path / "page.png").write_text("<html>404 Not Found</html>")
    imwrite(tmp_path / "full.png", np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    return {"missing": (tmp_path / "nothere.png", "file not found"),
            "unreadable": (tmp_path / "page.png", "not an image file"),
            "truncated": (tmp_path / "cut.png", "truncated or corrupt"),
            "folder": (tmp_path, "is a folder")}


@pytest.mark.parametrize("case", ["missing", "unreadable", "truncated", "folder"])
def test_bad_images_are_one_sentence(case, ckpt, tmp_path, capsys):
    path, words = _bad_images(tmp_path)[case]
    code, _, err = run(["upscale", str(path), "--model", str(ckpt), "--scale", "2"], capsys)
    assert code == 1
    line = one_sentence(err, "upscale")
    assert words in line and path.name in line
    assert not list(tmp_path.glob("*_x2.png"))          # nothing written


def test_too_small_for_the_scale_is_one_sentence(ckpt, tmp_path, capsys):
    imwrite(tmp_path / "tiny.png", np.zeros((9, 7, 3), np.uint8))
    code, _, err = run(["upscale", str(tmp_path / "tiny.png"), "--model", str(ckpt), "--scale", "2", "--compare",
                        str(tmp_path / "c.png")], capsys)
    assert code == 1
    assert "too small for scale 2" in one_sentence(err, "upscale")
    folder = tmp_path / "set"
    imwrite(folder / "tiny.png", np.zeros((9, 7, 3), np.uint8))
    code, _, err = run(["eval", "bicubic", "--dataset", str(folder), "--scale", "3"], capsys)
    assert code == 1 and "too small for scale 3" in one_sentence(err, "eval")


def test_rgba_input_warns_in_one_line_and_works(ckpt, tmp_path, capsys):
    rgba = np.random.default_rng(1).integers(0, 256, (12, 10, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    code, out, err = run(["upscale", str(tmp_path / "a.png"), "--model", str(ckpt), "--scale", "2", "--out",
                          str(tmp_path / "o.png")], capsys)
    assert code == 0
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("tinysr: warning:") and "alpha channel dropped" in lines[0]
    assert Image.open(tmp_path / "o.png").size == (20, 24)


def test_other_bad_inputs_are_one_sentence(ckpt, photo, tmp_path, capsys):
    cases = [
        (["upscale", str(photo), "--model", "vdsr", "--scale", "2"], "upscale", "vdsr-x2"),     # not shipped
        (["upscale", str(photo), "--model", str(ckpt), "--scale", "3"], "upscale", "trained for x2, not x3"),
        (["upscale", "builtin:dog", "--scale", "2"], "upscale", "no such builtin photo"),
        (["eval", str(tmp_path / "none.npz")], "eval", "no checkpoint at"),
        (["eval", "bicubic", "--dataset", "Set6"], "eval", "unknown dataset 'Set6'"),
        (["train", "srcnn", "--scale", "5"], "train", "supports scales x2, x3, x4"),
        (["train", "vdsrr"], "train", "unknown model 'vdsrr'"),
    ]
    for argv, command, words in cases:
        code, _, err = run(argv, capsys)
        assert code == 1, argv
        assert words in one_sentence(err, command), (argv, err)
    # a malformed number is a wrong command line (exit 2, argparse's convention), still one sentence
    with pytest.raises(SystemExit) as e:
        run(["upscale", str(photo), "--model", str(ckpt), "--scale", "2", "--tile", "big"], capsys)
    assert e.value.code == 2 and "--tile: must be an integer from 1 to 65536 or 'auto' or 'off', got 'big'" \
        in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["train", "srcnn"], ["eval", "fsrcnn-x3", "--dataset", "builtin"],
                                  ["upscale", "builtin:chelsea"], ["upscale", "builtin:chelsea", "--compare", "x.png"]])
def test_cuda_without_gpu_says_how_to_install(argv, capsys, tmp_path, monkeypatch):
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    monkeypatch.chdir(tmp_path)
    code, _, err = run(argv + ["--device", "cuda"], capsys)
    assert code == 1
    assert "pip install 'tinysr[gpu]'" in one_sentence(err, argv[0])
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_train_command_end_to_end(photo, tmp_path, capsys):
    data = tmp_path / "data"
    imwrite(data / "a.png", np.asarray(Image.open(photo)))
    out = tmp_path / "run"
    argv = ["train", "fsrcnn", "--scale", "2", "--iterations", "3", "--batch-size", "2", "--patch-size", "8",
            "--data", str(data), "--eval-data", str(data), "--out", str(out), "--no-progress"]
    code, text, err = run(argv, capsys)
    assert code == 0, err
    assert "starting fresh in" in text and "protocol:" in text and (out / "step_0000003.npz").is_file()
    argv[argv.index("--iterations") + 1] = "5"
    code, text, err = run(argv, capsys)
    assert code == 0 and "resuming from" in text and "at step 3" in text


def test_usage_errors_exit_2_and_no_traceback_in_a_real_process():
    r = subprocess.run([sys.executable, "-m", "tinysr", "upscale"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "usage: tinysr upscale" in r.stderr
    r = subprocess.run([sys.executable, "-m", "tinysr", "eval", "fsrcnn-x9"], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.startswith("tinysr eval: ")


def test_diverging_training_stops_with_one_sentence(photo, tmp_path, capsys):
    data = tmp_path / "data"
    imwrite(data / "a.png", np.asarray(Image.open(photo)))
    # (the fast recipe warms the rate up over 500 steps, so it must be absurd to overflow within 40)
    code, _, err = run(["train", "fsrcnn", "--scale", "2", "--lr", "1e30", "--iterations", "40", "--batch-size", "2",
                        "--patch-size", "8", "--data", str(data), "--eval-data", "none", "--out", str(tmp_path / "r"),
                        "--no-progress"], capsys)
    assert code == 1
    line = one_sentence(err, "train")
    assert "the training loss became" in line and "Lower the learning rate" in line


def test_srgan_trains_resumes_and_refuses_a_y_network(ckpt, small_data, tmp_path, capsys):
    train, test = small_data
    nn.init.seed(0)
    gen = api.save_weights(models.build("srresnet", scale=2, blocks=1, channels=8), tmp_path / "srresnet.npz")
    out = tmp_path / "srgan"
    args = ["srgan", str(gen), "--data", str(train), "--batch-size", "2", "--patch-size", "8", "--disc-base", "4",
            "--disc-dense", "8", "--eval-data", str(test), "--eval-every", "2", "--checkpoint-every", "1",
            "--out", str(out), "--no-progress"]
    code, text, err = run(args + ["--iterations", "2"], capsys)
    assert code == 0, err
    assert "PSNR" in text and str(out / "generator.npz") in text and "starting fresh" in text
    first = api.load(out / "generator.npz")
    code, text, err = run(args + ["--iterations", "3"], capsys)
    assert code == 0, err
    assert "resuming from" in text and "step 2 of 3" in text
    assert any(not np.array_equal(v, first.state_dict()[k])
               for k, v in api.load(out / "generator.npz").state_dict().items())
    code, _, err = run(["srgan", str(ckpt), "--data", str(train), "--out", str(tmp_path / "y")], capsys)
    assert code == 1 and "not an RGB network" in one_sentence(err, "srgan")
