"""System level: tinysr.train / evaluate / upscale / load end to end on small data.

Runs are tiny (a few steps on 100x100 crops of the builtin photos) so the whole file takes seconds;
what is checked is the plumbing: patches of the right shapes, the recipe's optimiser, loud resume
messages, a killed run that resumes to exactly the parameters of an uninterrupted one, checkpoints that
rebuild their model, the protocol on Set5, and tiles that do not change the picture.
"""
import json
import os
import platform
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tinysr
from tinysr import api, checkpoint, evaluation, models, nn, shipped
from tinysr.backend import DeviceError
from tinysr.data import ImageError, datasets, imwrite


def _quiet(lines):
    return lambda msg: lines.append(msg)


def test_train_on_cuda_without_cupy_fails_at_once_with_install_sentence():
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    with pytest.raises(DeviceError, match=r"pip install 'tinysr\[gpu\]'"):
        tinysr.train("srcnn", device="cuda", data="does-not-matter", out_dir="/nonexistent/never-written")


def test_train_end_to_end_resume_message_history_and_checkpoint_meta(small_data, tmp_path):
    train, test = small_data
    out = tmp_path / "run"
    lines = []
    kw = dict(scale=3, data=train, eval_data=test, batch_size=4, out_dir=out, seed=7, progress=False,
              log=_quiet(lines), checkpoint_every=3, eval_every=3)
    r = tinysr.train("srcnn", iterations=6, **kw)
    assert any("starting fresh in" in m and str(out) in m for m in lines)
    assert r.resumed_from is None and r.checkpoint.name == "step_0000006.npz"
    assert len(r.history["loss"]) == 6 and [e["step"] for e in r.history["eval"]] == [3, 6]
    assert set(r.metrics) >= {"psnr", "ssim", "images", "protocol"} and "3 px shaved" in r.metrics["protocol"]
    assert (out / "history.json").is_file() and (out / "curves.png").stat().st_size > 1000
    _, _, meta = checkpoint.load(r.checkpoint)
    assert meta["model"] == "srcnn" and meta["scale"] == 3 and meta["recipe"] == "fast" and meta["seed"] == 7
    assert meta["model_kwargs"]["variant"] == "9-1-5" and meta["tinysr_version"] == tinysr.__version__

    lines.clear()
    r2 = tinysr.train("srcnn", iterations=9, **kw)
    assert any(m.startswith("==> resuming from") and "step_0000006.npz" in m and "at step 6" in m for m in lines)
    assert r2.resumed_from.name == "step_0000006.npz" and r2.history["step"] == list(range(1, 10))

    with pytest.raises(ValueError, match="already holds checkpoints"):
        tinysr.train("srcnn", iterations=9, resume=False, **kw)
    with pytest.raises(ValueError, match="another run"):
        tinysr.train("srcnn", iterations=9, **{**kw, "scale": 2})
    # a resumed run must be the run its command describes: a changed batch or data is refused (the rate,
    # the clipping and the patch size may change: tests/test_reliability.py)
    for change in ({"batch_size": 8}, {"data": [train, train]}):
        with pytest.raises(ValueError, match=f"another run.*{next(iter(change))}"):
            tinysr.train("srcnn", iterations=12, **{**kw, **change})
    lines.clear()
    tinysr.train("srcnn", iterations=12, **kw)
    assert any("planned for 9 steps and now runs to 12" in m for m in lines)


def test_resume_accepts_a_checkpoint_older_than_a_recipe_field():
    # Checkpoints written before a recipe field existed lack it; that run used the field's default.
    from tinysr.fit import check_same_run
    from tinysr.recipes import FAST_RECIPES
    params = FAST_RECIPES["srcnn"].to_dict()
    meta = {"model": "srcnn", "scale": 3, "recipe": "fast", "recipe_params": params}
    older = {**meta, "recipe_params": {k: v for k, v in params.items() if k != "loss_border"}}
    check_same_run("old.npz", older, meta)
    changed = {**meta, "recipe_params": {**params, "loss_border": 4}}
    with pytest.raises(ValueError, match="another run.*recipe_params"):
        check_same_run("old.npz", changed, meta)


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import tinysr
    import tinysr.trainer as loop
    out, data, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    save = loop.Trainer.save_checkpoint

    def save_then_maybe_die(self):
        path = save(self)
        if self.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)   # like a power cut: no clean-up at all
        return path

    loop.Trainer.save_checkpoint = save_then_maybe_die
    tinysr.train("fsrcnn", scale=2, data=data, eval_data=None, iterations=12, batch_size=4, patch_size=10,
                 checkpoint_every=4, out_dir=out, seed=3, progress=False, model_kwargs={"d": 16, "s": 8, "m": 1})
""")


def test_killed_training_resumes_to_identical_parameters(small_data, tmp_path):
    train, _ = small_data
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)

    def run(out, kill_at):
        return subprocess.run([sys.executable, str(script), str(out), str(train), str(kill_at)],
                              capture_output=True, text=True, timeout=120)

    assert run(tmp_path / "full", -1).returncode == 0
    killed = run(tmp_path / "resumed", 8)
    assert killed.returncode == -signal.SIGKILL
    assert checkpoint.latest(tmp_path / "resumed").name == "step_0000008.npz"
    # the checkpoint holds the training time so far: a killed run (no clean-up) still reports it
    assert checkpoint.load(tmp_path / "resumed" / "step_0000008.npz")[2]["history"]["seconds"] > 0
    again = run(tmp_path / "resumed", -1)
    assert again.returncode == 0, again.stderr
    assert "resuming from" in again.stdout and "at step 8" in again.stdout
    a, _, _ = checkpoint.load(tmp_path / "full" / "step_0000012.npz")
    b, _, _ = checkpoint.load(tmp_path / "resumed" / "step_0000012.npz")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_training_patches_follow_each_family():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (80, 90, 3), dtype=np.uint8) for _ in range(2)]
    nn.init.seed(0)
    srcnn = models.build("srcnn", scale=3)
    fast, _ = api.training_sampler(srcnn, images, 3, recipe=api.FAST_RECIPES["srcnn"], recipe_name="fast",
                                   patch_size=33, batch_size=5)
    x, y = fast(rng)
    assert x.shape == (5, 1, 33, 33) and y.shape == (5, 1, 21, 21)   # valid 9-1-5: the label's centre
    paper, n = api.training_sampler(srcnn, images, 3, recipe=models.get_spec("srcnn").recipe, recipe_name="paper",
                                    patch_size=33, batch_size=5)
    assert paper(rng)[1].shape == (5, 1, 21, 21) and n == 2 * 4 * 5   # 33x33 every 14 px of a 78x90 image
    fsrcnn = models.build("fsrcnn", scale=3)
    s, _ = api.training_sampler(fsrcnn, images, 3, recipe=api.FAST_RECIPES["fsrcnn"], recipe_name="fast",
                                patch_size=8, batch_size=3)
    x, y = s(rng)
    assert x.shape == (3, 1, 8, 8) and y.shape == (3, 1, 24, 24)
    edsr = models.build("edsr_baseline", scale=2, blocks=1, channels=8)
    s, _ = api.training_sampler(edsr, images, 2, recipe=api.FAST_RECIPES["edsr_baseline"], recipe_name="fast",
                                patch_size=12, batch_size=2)
    x, y = s(rng)
    assert x.shape == (2, 3, 12, 12) and y.shape == (2, 3, 24, 24)


def test_paper_optimisers_keep_per_layer_learning_rates():
    srcnn = models.build("srcnn", scale=3)
    opt = api.make_optimizer(srcnn, models.get_spec("srcnn").recipe)
    rates = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert rates[id(srcnn.reconstruction.weight)] == pytest.approx(1e-5)
    assert rates[id(srcnn.patch_extraction.weight)] == pytest.approx(1e-4)
    assert opt.param_groups[0]["momentum"] == 0.9
    fsrcnn = models.build("fsrcnn", scale=3)
    opt = api.make_optimizer(fsrcnn, models.get_spec("fsrcnn").recipe, lr=2e-3)   # ratio kept
    rates = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert rates[id(fsrcnn.deconvolution.weight)] == pytest.approx(2e-4)
    assert rates[id(fsrcnn.mapping[0][0].weight)] == pytest.approx(2e-3)


def test_bad_training_arguments_are_sentences(tmp_path):
    with pytest.raises(ValueError, match="supports scales x2, x3, x4; got x5"):
        tinysr.train("srcnn", scale=5, out_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown model 'srcnm'"):
        tinysr.train("srcnm", out_dir=tmp_path)
    with pytest.raises(ValueError, match="recipe must be"):
        tinysr.train("srcnn", recipe="quick", out_dir=tmp_path, data="builtin")


@pytest.mark.shared
def test_evaluate_reproduces_the_official_srcnn_number_and_bicubic(data_dir, weights_dir):
    """The evaluation pipeline is the protocol: the authors' SRCNN x3 weights give their 32.39 dB."""
    model = models.load_official("srcnn", weights_dir / "srcnn/official_9-1-5_91images/x3.mat", scale=3)
    rep = tinysr.evaluate(model, "Set5", scale=3)
    assert abs(rep["psnr"] - 32.39) < 0.01, rep["psnr"]
    assert [r["name"] for r in rep["images"]] == ["baby", "bird", "butterfly", "head", "woman"]
    assert 0.90 < rep["ssim"] < 0.92 and "3 px shaved" in rep["protocol"]
    bic = tinysr.evaluate("bicubic", "Set5", scale=3)
    assert abs(bic["psnr"] - 30.39) < 0.01


@pytest.mark.shared
def test_evaluate_a_checkpoint_on_set5(data_dir, small_data, tmp_path):
    train, _ = small_data
    r = tinysr.train("srcnn", scale=3, data=train, eval_data=None, iterations=3, batch_size=4, out_dir=tmp_path,
                     progress=False, log=lambda m: None)
    assert r.metrics is None
    rep = tinysr.evaluate(r.checkpoint, "Set5")                   # scale read from the checkpoint
    assert rep["scale"] == 3 and len(rep["images"]) == 5 and np.isfinite(rep["psnr"])
    same = tinysr.evaluate(r.model, "Set5", scale=3, ssim=False)  # the trained valid model, run 'same'/replicate
    assert same["psnr"] == pytest.approx(rep["psnr"], abs=1e-9)
    with pytest.raises(ValueError, match="trained for x3, not x2"):
        tinysr.evaluate(r.checkpoint, "Set5", scale=2)


def test_load_rebuilds_checkpoints_and_explains_what_it_cannot(tmp_path, monkeypatch):
    nn.init.seed(1)
    net = models.build("fsrcnn", scale=2, d=12, s=4, m=1)
    path = api.save_weights(net, tmp_path / "w.npz", {"model": "fsrcnn", "scale": 2,
                                                      "model_kwargs": {"d": 12, "s": 4, "m": 1}})
    back = tinysr.load(path)
    assert back.scale == 2 and back.tinysr_meta["model"] == "fsrcnn" and not back.training
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v)
    valid = models.build("srcnn", scale=3)
    back = tinysr.load(api.save_weights(valid, tmp_path / "s.npz"))
    assert back.padding == "same" and back.patch_extraction.padding_mode == "replicate"   # ready for images
    assert tinysr.load(tmp_path / "s.npz", for_inference=False).padding == "valid"

    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        tinysr.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "plain.npz", w=np.zeros(3))
    with pytest.raises(ValueError, match="without tinysr metadata"):
        tinysr.load(tmp_path / "plain.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable tinysr checkpoint"):
        tinysr.load(tmp_path / "junk.npz")

    empty = tmp_path / "noweights"
    empty.mkdir()
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", empty)
    with pytest.raises(ValueError, match="no weights are shipped"):
        tinysr.load("srcnn-x3")
    (empty / "manifest.json").write_text(json.dumps({"fsrcnn-x2": {"file": "w.npz", "model": "fsrcnn", "scale": 2}}))
    os.replace(tmp_path / "w.npz", empty / "w.npz")
    assert tinysr.load("FSRCNN-x2").tinysr_meta["label"] == "fsrcnn-x2"
    with pytest.raises(ValueError, match="unknown shipped weights 'srcnn-x3'.*shipped: fsrcnn-x2"):
        tinysr.load("srcnn-x3")
    with pytest.raises(ValueError, match="name a scale"):
        tinysr.load("srcnn")


@pytest.mark.parametrize("name,scale,kw", [("srcnn", 3, {}), ("fsrcnn", 3, {"d": 16, "s": 8, "m": 2}),
                                           ("vdsr", 2, {"depth": 5}),
                                           ("edsr_baseline", 2, {"blocks": 2, "channels": 8})],
                         ids=["srcnn-valid", "fsrcnn", "vdsr", "edsr"])
def test_upscale_tiled_equals_untiled_through_the_api(name, scale, kw):
    nn.init.seed(0)
    net = models.build(name, scale=scale, **kw)
    for p in net.parameters():                  # livelier than the papers' tiny initial weights
        p.data = p.data + np.random.default_rng(0).normal(0, 0.05, p.shape).astype(np.float32)
    photo = datasets.load("builtin", split="test")[1][:70, :90]
    whole = tinysr.upscale(photo, model=net, scale=scale, tile=None)
    assert whole.shape == (70 * scale, 90 * scale, 3) and whole.dtype == np.uint8
    for tile in (7, 32):     # the whole colour pipeline runs per tile: tiny tiles are the hardest case
        tiled = tinysr.upscale(photo, model=net, scale=scale, tile=tile)
        # equal up to float32 GEMM rounding, so after rounding to 8 bits at most a rare 1-level flip
        assert np.abs(whole.astype(int) - tiled).max() <= 1 and (whole != tiled).mean() < 1e-4
    gray = photo[..., 1]
    g_whole = tinysr.upscale(gray, model=net, scale=scale, tile=None).astype(int)
    g_tiled = tinysr.upscale(gray, model=net, scale=scale, tile=16)
    assert np.abs(g_whole - g_tiled).max() <= 1 and (g_whole != g_tiled).mean() < 1e-3
    ensemble = tinysr.upscale(photo, model=net, scale=scale, self_ensemble=True)
    assert ensemble.shape == whole.shape


def test_upscale_reads_files_and_builtin_photos(tmp_path):
    nn.init.seed(0)
    net = models.build("fsrcnn", scale=2, d=8, s=4, m=1)
    out = tmp_path / "o.png"
    sr = tinysr.upscale("builtin:coffee", model=net, scale=2, out=out, tile=128)
    assert sr.shape == (800, 1200, 3) and tinysr.imread(out).shape == sr.shape
    gray = tmp_path / "g.png"
    imwrite(gray, np.full((10, 12), 90, np.uint8))
    assert tinysr.upscale(gray, model=net, scale=2).shape == (20, 24)
    with pytest.raises(ImageError, match="no such builtin photo"):
        tinysr.upscale("builtin:nothing", model=net, scale=2)
    with pytest.raises(ImageError, match="file not found"):
        tinysr.upscale(tmp_path / "missing.png", model=net, scale=2)
    with pytest.raises(ValueError, match="trained for x2, not x3"):
        tinysr.upscale(gray, model=net, scale=3)


def test_compare_writes_side_by_side_and_refuses_tiny_images(tmp_path):
    nn.init.seed(0)
    net = models.build("fsrcnn", scale=3, d=8, s=4, m=1)
    photo = datasets.load("builtin", split="test")[1][:90, :120]
    res = tinysr.compare(photo, model=net, scale=3, out=tmp_path / "cmp.png")
    assert res["bicubic"]["psnr"] > 20 and (tmp_path / "cmp.png").stat().st_size > 5000
    with pytest.raises(ImageError, match="too small for scale 3"):
        tinysr.compare(photo[:10, :10], model=net, scale=3)


def test_ship_weights_records_what_load_and_the_readme_need(small_data, tmp_path, monkeypatch):
    train, test = small_data
    r = tinysr.train("srcnn", scale=3, data=train, eval_data=None, iterations=2, batch_size=2, out_dir=tmp_path / "r",
                     progress=False, log=lambda m: None)
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path / "weights")
    entry = api.ship_weights(r.checkpoint, "srcnn-x3", command="tinysr train srcnn --scale 3", train_seconds=12.3,
                             datasets=(test,))
    assert entry["psnr"]["test"] == pytest.approx(tinysr.evaluate("srcnn-x3", test)["psnr"], abs=1e-3)
    assert api.shipped_weights()["srcnn-x3"]["command"] == "tinysr train srcnn --scale 3"
    assert (tmp_path / "weights" / "srcnn-x3.npz").stat().st_size < 100_000     # no optimiser state, no history
    # the machine is described from the running process, not assumed
    assert entry["machine"] == f"{os.cpu_count()}-core {platform.machine()} CPU"


def test_fast_srcnn_recipe_trains_centred_and_its_checkpoint_rebuilds_it(tmp_path):
    """The fast recipe's build arguments (offset 0.5) reach the model, the checkpoint and tinysr.load."""
    from tinysr.api import FAST_RECIPES
    assert FAST_RECIPES["srcnn"].model_kwargs == {"offset": 0.5}
    res = tinysr.train("srcnn", scale=3, data="builtin", eval_data=None, iterations=3, batch_size=4,
                       out_dir=tmp_path / "run", progress=False, log=lambda *a: None)
    assert res.model.offset == 0.5
    loaded = tinysr.load(res.checkpoint)
    assert loaded.offset == 0.5 and loaded.padding == "same"       # the whole-image twin for inference
    x = tinysr.Tensor(np.random.default_rng(0).random((1, 1, 40, 40)).astype(np.float32))
    with tinysr.no_grad():
        np.testing.assert_allclose(loaded(x).data[..., 6:-6, 6:-6], res.model(x).data, atol=1e-5)
    # an explicit model_kwargs wins over the recipe's
    res0 = tinysr.train("srcnn", scale=3, data="builtin", eval_data=None, iterations=1, batch_size=2,
                        model_kwargs={"offset": 0.0}, out_dir=tmp_path / "run0", progress=False, log=lambda *a: None)
    assert res0.model.offset == 0.0


def test_a_built_network_passed_as_a_module_is_checkpointed_so_that_load_rebuilds_it(small_data, tmp_path):
    # e.g. a lesson that builds a reduced VDSR, re-initialises it, and trains the object itself
    train, _ = small_data
    net = tinysr.models.build("vdsr", scale=3, depth=4, channels=8)
    assert net.build_name == "vdsr" and net.build_kwargs == {"depth": 4, "channels": 8}
    r = tinysr.train(net, scale=3, data=train, eval_data=None, iterations=2, batch_size=2, out_dir=tmp_path / "run",
                     progress=False, log=lambda m: None)
    _, _, meta = checkpoint.load(r.checkpoint)
    assert meta["model"] == "vdsr" and meta["model_kwargs"] == {"depth": 4, "channels": 8}
    again = tinysr.load(r.checkpoint)
    x = tinysr.tensor(np.random.default_rng(0).random((1, 1, 20, 20)).astype(np.float32))
    with tinysr.no_grad():
        assert np.array_equal(again.eval()(x).data, r.model.eval()(x).data)


def test_ship_weights_in_float16_halves_the_file_loads_float32_and_refuses_oversized(small_data, tmp_path,
                                                                                   monkeypatch):
    train, test = small_data
    r = tinysr.train("fsrcnn", scale=3, data=train, eval_data=None, iterations=2, batch_size=2, patch_size=10,
                     out_dir=tmp_path / "r", progress=False, log=lambda m: None)
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path / "weights")
    full = api.ship_weights(r.checkpoint, "f32", command="c", train_seconds=1, datasets=(test,))
    half = api.ship_weights(r.checkpoint, "f16", command="c", train_seconds=1, datasets=(test,), dtype="float16")
    with np.load(tmp_path / "weights" / "f16.npz") as z:
        assert all(z[k].dtype == np.float16 for k in z.files if k.startswith("model/"))
    assert (tmp_path / "weights" / "f16.npz").stat().st_size < 0.7 * (tmp_path / "weights" / "f32.npz").stat().st_size
    a, b = tinysr.load("f32"), tinysr.load("f16")
    for (k, va), (_, vb) in zip(sorted(a.state_dict().items()), sorted(b.state_dict().items())):
        assert vb.dtype == np.float32 and np.allclose(va, vb, rtol=1e-3, atol=1e-4), k
    # the manifest holds what the shipped (rounded) file scores, and the dtype it was stored in
    assert half["dtype"] == "float16" and half["psnr"]["test"] == pytest.approx(
        tinysr.evaluate("f16", test)["psnr"], abs=1e-3)
    assert abs(half["psnr"]["test"] - full["psnr"]["test"]) < 0.05
    monkeypatch.setattr(shipped, "SHIP_LIMIT_BYTES", 1000)
    with pytest.raises(ValueError, match="ships weights of at most"):
        api.ship_weights(r.checkpoint, "big", command="c", train_seconds=1, datasets=(test,))
    assert not (tmp_path / "weights" / "big.npz").exists()


def test_ship_weights_takes_a_file_up_to_4_mb_and_refuses_a_larger_one_naming_its_size(small_data, tmp_path,
                                                                                         monkeypatch):
    _, test = small_data
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path / "weights")
    nn.init.seed(0)
    # an FSRCNN with a wide mapping: 1.6M weights, about 3 MB in float16 (as EDSR-baseline's 2.7 MB) and 6 MB
    # in float32; it evaluates on the 20x20 LR test image in a moment
    net = models.build("fsrcnn", scale=3, d=16, s=300, m=2)
    ckpt = api.save_weights(net, tmp_path / "wide.npz")
    entry = api.ship_weights(ckpt, "wide-f16", command="c", train_seconds=1, datasets=(test,), dtype="float16")
    size = (tmp_path / "weights" / "wide-f16.npz").stat().st_size
    assert 2 * 2 ** 20 < size <= 4 * 2 ** 20 and entry["dtype"] == "float16"
    assert "wide-f16" in api.shipped_weights()
    with pytest.raises(ValueError, match=r"^wide-f32 would be a 6\.\d MB file in float32; the package ships weights "
                                         r"of at most 4 MB a file \(try dtype='float16'"):
        api.ship_weights(ckpt, "wide-f32", command="c", train_seconds=1, datasets=(test,))
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == ["manifest.json", "wide-f16.npz"]


def test_ship_weights_refuses_a_file_that_takes_the_weights_folder_over_20_mb(small_data, tmp_path, monkeypatch):
    train, test = small_data
    r = tinysr.train("fsrcnn", scale=3, data=train, eval_data=None, iterations=1, batch_size=2, patch_size=10,
                     out_dir=tmp_path / "r", progress=False, log=lambda m: None)
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", folder)
    # five shipped files, each within the 4 MB limit, filling the folder to 10 KB short of 20 MB
    for i in range(5):
        with open(folder / f"big{i}.npz", "wb") as f:
            f.truncate(4 * 2 ** 20 - 2000)
    with pytest.raises(ValueError, match=r"^one-more \(0\.\d MB in float32\) would bring tinysr/weights/ to 20\.0 MB, "
                                         r"above the 20 MB the package ships in all"):
        api.ship_weights(r.checkpoint, "one-more", command="c", train_seconds=1, datasets=(test,))
    assert sorted(p.name for p in folder.iterdir()) == [f"big{i}.npz" for i in range(5)]
    # replacing a shipped file frees its bytes
    api.ship_weights(r.checkpoint, "big0", command="c", train_seconds=1, datasets=(test,))
    assert (folder / "big0.npz").stat().st_size < 100_000 and "big0" in api.shipped_weights()


def test_evaluate_border_zeros_runs_the_network_on_the_image_alone(small_data):
    _, test = small_data
    nn.init.seed(0)
    net = models.build("vdsr", scale=3, depth=4, channels=8).eval()
    zeros = tinysr.evaluate(net, test, scale=3, border="zeros", ssim=False)
    rep = tinysr.evaluate(net, test, scale=3, ssim=False)
    # by hand: the bicubic input straight through the network (its own zero padding), clipped, 8-bit, shaved
    from tinysr.metrics import psnr
    (name, hr), = datasets.named_images(test)[1]
    net_in, ref = evaluation.prepare_eval(hr, 3, "bicubic-y")
    with tinysr.no_grad():
        out = net(tinysr.tensor(net_in.astype(np.float32))).data[0, 0]
    assert zeros["psnr"] == pytest.approx(psnr(np.clip(out, 0, 1), ref, 3), abs=1e-9)
    assert zeros["psnr"] != rep["psnr"]


def test_evaluate_routes_mdsr_to_the_requested_scale(small_data):
    _, test = small_data
    nn.init.seed(0)
    net = models.build("mdsr", scale=2, blocks=1, channels=8).eval()
    for s in (3, 2, 4):
        rep = tinysr.evaluate(net, test, scale=s, ssim=False)
        assert net.scale == s and np.isfinite(rep["psnr"])


def test_drcn_paper_recipe_trains_with_recursive_supervision_alpha_falling_to_zero(small_data, tmp_path,
                                                                                   monkeypatch):
    from tinysr.models import drcn
    train, _ = small_data
    seen = []
    original = drcn.drcn_loss

    def recording(model, x, target, alpha, beta=1e-4):
        seen.append((alpha, beta, len(model.forward_all(x)[0])))
        return original(model, x, target, alpha, beta)
    monkeypatch.setattr(drcn, "drcn_loss", recording)
    r = tinysr.train("drcn", scale=3, recipe="paper", data=train, eval_data=None, iterations=3, batch_size=2,
                     model_kwargs={"recursions": 2, "channels": 4}, out_dir=tmp_path / "run", progress=False,
                     log=lambda m: None)
    # each step's loss, then (a checkpoint follows every step here) the same step's loss on the updated
    # parameters, which the divergence guard checks before writing a checkpoint
    assert [a for a, _, _ in seen] == [1.0, 1.0, 0.5, 0.5, 0.0, 0.0]
    assert all(b == 0.0 and d == 2 for _, b, d in seen)      # weight decay stays in SGD, not counted twice
    assert np.all(np.isfinite(r.history["loss"]))
    # the fast recipe keeps plain MSE on the ensemble output
    seen.clear()
    tinysr.train("drcn", scale=3, data=train, eval_data=None, iterations=1, batch_size=2,
                 model_kwargs={"recursions": 2, "channels": 4}, out_dir=tmp_path / "fast", progress=False,
                 log=lambda m: None)
    assert seen == []


def test_multi_scale_training_one_vdsr_and_one_mdsr_for_several_scales(small_data, tmp_path, monkeypatch):
    train, test = small_data
    kw = dict(data=train, eval_data=test, iterations=4, batch_size=2, progress=False, log=lambda m: None,
              eval_every=4)
    r = tinysr.train("vdsr", scale=(2, 3), model_kwargs={"depth": 3, "channels": 4}, out_dir=tmp_path / "v", **kw)
    assert r.model.scales == (2, 3)
    assert set(r.history["eval"][-1]) == {"step", "seconds", "threads", "psnr_x2", "psnr_x3"}
    assert set(r.metrics["per_scale"]) == {2, 3}
    _, _, meta = checkpoint.load(r.checkpoint)
    assert meta["scales"] == [2, 3]
    loaded = tinysr.load(r.checkpoint)            # rebuilt as a multi-scale network: both scales evaluate
    for s in (2, 3):
        assert tinysr.evaluate(loaded, test, scale=s, ssim=False)["psnr"] == pytest.approx(
            r.metrics["per_scale"][s]["psnr"], abs=1e-6)
    # MDSR: each batch is routed through its scale's branches; both branches learn
    seen = []
    from tinysr.models.edsr import MDSR
    original = MDSR.set_scale

    def spy(self, s):
        seen.append(s)
        return original(self, s)
    monkeypatch.setattr(MDSR, "set_scale", spy)
    nn.init.seed(0)
    m = tinysr.train("mdsr", scale=(2, 4), model_kwargs={"blocks": 1, "channels": 4, "scales": (2, 4)},
                     patch_size=10, out_dir=tmp_path / "m", **{**kw, "iterations": 6})
    assert {2, 4} <= set(seen) and set(m.history["eval"][-1]) == {"step", "seconds", "threads", "psnr_x2", "psnr_x4"}
    nn.init.seed(0)
    start = models.build("mdsr", scale=2, blocks=1, channels=4, scales=(2, 4)).state_dict()
    after = m.model.state_dict()
    for branch in ("upsample.0.0.weight", "upsample.1.0.weight"):          # x2's and x4's upsamplers
        assert not np.array_equal(start[branch], after[branch]), f"{branch} never trained"
    # a network that upsamples by a fixed factor cannot, and says why
    with pytest.raises(ValueError, match="cannot train on several scales"):
        tinysr.train("fsrcnn", scale=(2, 3), out_dir=tmp_path / "f", **kw)


def test_evaluate_can_show_a_progress_bar_over_the_images(small_data, capsys):
    _, test = small_data
    quiet = tinysr.evaluate("fsrcnn-x3", str(test), scale=3)
    assert "image" not in capsys.readouterr().err
    shown = tinysr.evaluate("fsrcnn-x3", str(test), scale=3, progress=True)
    assert "test x3" in capsys.readouterr().err and shown["psnr"] == quiet["psnr"]


def test_ship_weights_records_the_curve_and_a_run_started_from_them_continues_it(small_data, tmp_path, monkeypatch):
    train, test = small_data
    kw = dict(scale=2, data=train, eval_data=test, batch_size=2, progress=False, log=lambda m: None,
              model_kwargs={"blocks": 1, "channels": 8}, eval_every=2)
    first = tinysr.train("edsr_baseline", iterations=4, out_dir=tmp_path / "a", **kw)
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path / "weights")
    entry = api.ship_weights(first.checkpoint, "tiny-x2", command="c", train_seconds=1, datasets=(test,))
    evals = first.history["eval"]
    assert [p["step"] for p in entry["curve"]] == [e["step"] for e in evals] == [2, 4]
    assert entry["curve"][-1]["cpu_hours"] == pytest.approx(evals[-1]["seconds"] * evals[-1]["threads"] / 3600,
                                                            abs=1e-3)
    # a fresh folder started from the shipped weights: the same network at step 0, and the curve goes on
    lines = []
    second = tinysr.train("edsr_baseline", iterations=2, out_dir=tmp_path / "b", init_from="tiny-x2",
                          **{**kw, "log": lines.append})
    assert any("starting from the weights tiny-x2" in m and "arrays copied" in m for m in lines), lines
    _, _, meta = checkpoint.load(second.checkpoint)
    start = meta["init_from"]
    assert {k: start[k] for k in ("weights", "steps")} == {"weights": "tiny-x2", "steps": 4}
    assert start["train_seconds"] == 1 and [p["step"] for p in start["curve"]] == [2, 4]
    again = api.ship_weights(second.checkpoint, "tiny-x2", command="c", datasets=(test,))
    assert again["steps"] == 6 and [p["step"] for p in again["curve"]] == [2, 4, 6]
    assert again["curve"][2]["cpu_hours"] >= again["curve"][1]["cpu_hours"]
    assert again["train_seconds"] == round(1 + meta["history"]["seconds"])
    # the run goes on after its source was re-shipped from it: it resumes, keeps the start it was made from,
    # and shipping it again counts neither the re-shipped steps nor their hours twice
    third = tinysr.train("edsr_baseline", iterations=4, out_dir=tmp_path / "b", init_from="tiny-x2", **kw)
    assert third.resumed_from is not None
    _, _, meta = checkpoint.load(third.checkpoint)
    assert meta["init_from"] == start
    last = api.ship_weights(third.checkpoint, "tiny-x2", command="c", datasets=(test,))
    assert last["steps"] == 8 and [p["step"] for p in last["curve"]] == [2, 4, 6, 8]
    assert last["train_seconds"] == round(1 + meta["history"]["seconds"])
    # another source is another run
    with pytest.raises(ValueError, match="belongs to another run .*init_from 'tiny-x2' there, None now"):
        tinysr.train("edsr_baseline", iterations=6, out_dir=tmp_path / "b", **kw)


def test_init_from_copies_what_matches_and_refuses_weights_of_another_design(small_data, tmp_path, monkeypatch):
    train, _ = small_data
    kw = dict(data=train, eval_data=None, batch_size=2, progress=False, log=lambda m: None, iterations=1)
    x2 = tinysr.train("edsr_baseline", scale=2, out_dir=tmp_path / "x2", model_kwargs={"blocks": 1, "channels": 8},
                      **kw)
    lines = []
    net = tinysr.models.build("edsr_baseline", scale=4, blocks=1, channels=8)
    from tinysr.fit import _init_from
    start = _init_from(net, x2.checkpoint, lines.append)
    ours, theirs = net.state_dict(), x2.model.state_dict()
    body = [k for k in ours if k in theirs and ours[k].shape == theirs[k].shape]
    fresh = [k for k in ours if k not in body]
    assert body and fresh and start["copied"] == len(body)          # head and body copied, the x4 tail is new
    assert all(np.array_equal(ours[k], theirs[k]) for k in body)
    assert all(k in lines[0] for k in fresh)
    with pytest.raises(ValueError, match="share no parameter .* give weights of the same architecture"):
        tinysr.train("srcnn", scale=2, out_dir=tmp_path / "s", init_from=x2.checkpoint, **kw)


def test_training_curve_counts_each_interval_at_its_own_thread_count():
    history = {"eval": [{"step": 1000, "seconds": 3600.0, "threads": 1, "psnr": 35.0},
                        {"step": 2000, "seconds": 5400.0, "threads": 2, "psnr": 36.0},
                        {"step": 3000, "seconds": 7200.0, "threads": 2, "psnr": 36.5, "ssim": 0.9}]}
    curve = shipped.training_curve(history, manifest={})
    assert [p["cpu_hours"] for p in curve] == [1.0, 2.0, 3.0] and [p["step"] for p in curve] == [1000, 2000, 3000]
    # continued from shipped weights: the earlier curve first, then this one shifted by its steps and hours
    earlier = {"w-x2": {"curve": [{"step": 500, "cpu_hours": 0.5, "psnr": 34.0}]}}
    more = shipped.training_curve(history, {"weights": "w-x2", "steps": 500}, manifest=earlier)
    assert [p["step"] for p in more] == [500, 1500, 2500, 3500] and more[-1]["cpu_hours"] == 3.5
    # from weights of another scale (x4 from x2): their steps and hours carry over, their PSNR points do not
    earlier["w-x2"]["scale"] = 2
    other = shipped.training_curve(history, {"weights": "w-x2", "steps": 500}, manifest=earlier, scale=4)
    assert [p["step"] for p in other] == [1500, 2500, 3500] and other[0]["cpu_hours"] == 1.5
    same = shipped.training_curve(history, {"weights": "w-x2", "steps": 500}, manifest=earlier, scale=2)
    assert same == more


def test_a_shipped_name_loads_even_beside_a_run_folder_of_that_name(tmp_path, monkeypatch):
    (tmp_path / "srcnn-x3").mkdir()                 # e.g. runs kept under the shipped names
    monkeypatch.chdir(tmp_path)
    assert tinysr.load("srcnn-x3").tinysr_meta["model"] == "srcnn"
    with pytest.raises(FileNotFoundError, match="it is a folder"):
        tinysr.load("./srcnn-x3")                   # a path names the folder


def test_a_run_names_named_images_in_one_short_line():
    from tinysr.evaluation import describe
    img = np.zeros((4, 4, 3), dtype=np.float32)
    assert describe([("baby", img), ("bird", img)]) == "<2 images: baby, bird>"
    assert describe([(f"i{k}", img) for k in range(8)]) == "<8 images: i0, i1, i2, i3, i4, i5, ...>"
    assert describe([img, img]) == "<2 arrays>" and describe("Set5") == "Set5"
