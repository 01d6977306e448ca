"""SRGAN support: the VGG-19 feature extractor and its torchvision-file loader (read without torch), the
perceptual and adversarial losses against PyTorch, and a tiny alternating GAN run.

ImageNet VGG-19 weights cannot be downloaded here, so every test writes a *randomly initialised*
state dict in torchvision's layout with torch (the test-time reference) and checks tinysr against a
plain torch.nn network built from the same weights."""
import json

import numpy as np
import pytest

from tinysr import Tensor
from tinysr import functional as F
from tinysr.gan import discriminator_loss, generator_adversarial_loss, train_srgan
from tinysr.models.vgg import (VGG19_CONV_INDICES, VGG19_POOL_INDICES, IMAGENET_MEAN, IMAGENET_STD,
                               PerceptualLoss, VGG19Features, load_vgg19, vgg19_layer_index)

torch = pytest.importorskip("torch", reason="PyTorch is the test-time reference: pip install -e '.[test]'")
tnn = torch.nn


def torch_vgg19(seed=0):
    """torchvision's ``vgg19()`` layout (features + classifier) from plain torch.nn layers, random weights."""
    torch.manual_seed(seed)
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
    layers, cin = [], 3
    for v in cfg:
        if v == "M":
            layers.append(tnn.MaxPool2d(2, 2))
        else:
            layers += [tnn.Conv2d(cin, v, 3, padding=1), tnn.ReLU(inplace=True)]
            cin = v
    net = tnn.Module()
    net.features = tnn.Sequential(*layers)
    net.avgpool = tnn.AdaptiveAvgPool2d((7, 7))
    # a small classifier (torchvision's is 4096 wide): its keys must simply be ignored
    net.classifier = tnn.Sequential(tnn.Linear(8, 4), tnn.ReLU(True), tnn.Linear(4, 3))
    with torch.no_grad():   # larger weights than the default init, so deep features do not vanish
        for m in net.features:
            if isinstance(m, tnn.Conv2d):
                tnn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                m.bias.normal_(0, 0.05)
    return net.eval()


@pytest.fixture(scope="module")
def tvgg():
    return torch_vgg19()


@pytest.fixture(scope="module", params=[False, True], ids=["zip", "legacy"])
def vgg_file(request, tmp_path_factory, tvgg):
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save(tvgg.state_dict(), path, _use_new_zipfile_serialization=not request.param)
    return path


def reference(tvgg, x, last):
    """torch features up to index ``last`` (inclusive) of an ImageNet-normalised [0, 1] RGB input."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype).view(1, 3, 1, 1)
    h = (x - mean) / std
    for layer in list(tvgg.features)[:last + 1]:
        h = layer(h) if not isinstance(layer, tnn.ReLU) else torch.relu(h)
    return h


def test_layout_matches_torchvision():
    from tinysr.models.vgg import _LAYOUT
    assert tuple(i for i, k, _ in _LAYOUT if k == "conv") == VGG19_CONV_INDICES
    assert tuple(i for i, k, _ in _LAYOUT if k == "pool") == VGG19_POOL_INDICES
    # the SRGAN paper's phi_{i,j}: the j-th convolution (after activation) before the i-th max-pooling
    assert vgg19_layer_index("vgg22") == vgg19_layer_index("relu2_2") == 8
    assert vgg19_layer_index("vgg54") == vgg19_layer_index("relu5_4") == 35
    assert vgg19_layer_index("conv5_4") == 34 and vgg19_layer_index("pool4") == 27
    full = VGG19Features("relu5_4")
    assert len(full.features) == 36 and full.out_channels == 512
    assert full.num_parameters() == 20_024_384          # torchvision's vgg19().features
    assert all(not p.requires_grad for p in full.parameters())
    with pytest.raises(ValueError, match="unknown VGG-19 layer"):
        VGG19Features("relu6_1")


@pytest.mark.parametrize("layer", ["vgg22", "vgg54"])
def test_loader_and_forward_match_torch(vgg_file, tvgg, layer):
    ours = load_vgg19(vgg_file, layer=layer)
    last = vgg19_layer_index(layer)
    assert len(ours.features) == last + 1
    sd = tvgg.state_dict()
    for k, v in ours.state_dict().items():
        assert np.array_equal(v, sd[k].numpy()), k
    x = np.random.default_rng(1).uniform(0, 1, (2, 3, 32, 40)).astype(np.float32)
    y = ours(Tensor(x)).numpy()
    with torch.no_grad():
        yt = reference(tvgg, torch.from_numpy(x), last).numpy()
    assert y.shape == yt.shape
    scale = max(1.0, float(np.abs(yt).max()))
    assert np.abs(y - yt).max() <= 1e-5 * scale


def test_loader_accepts_wrapped_and_prefixed_state_dicts(tmp_path, tvgg):
    sd = {"module." + k: v for k, v in tvgg.state_dict().items() if k.startswith("features.")}
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": sd, "epoch": 3}, path)
    ours = load_vgg19(path, layer="vgg22")
    assert np.array_equal(ours.features[0].weight.numpy(), tvgg.features[0].weight.detach().numpy())


def test_bad_files_say_what_to_do(tmp_path, tvgg):
    with pytest.raises(FileNotFoundError, match="vgg19-dcbb9e9d.pth"):
        load_vgg19(tmp_path / "nothing.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a pickle at all" * 10)
    with pytest.raises(ValueError, match=r"not a readable PyTorch weights file.*vgg19-dcbb9e9d\.pth"):
        load_vgg19(corrupt)
    truncated = tmp_path / "truncated.pth"
    good = tmp_path / "good.pth"
    torch.save(tvgg.state_dict(), good)
    truncated.write_bytes(good.read_bytes()[: 5000])
    with pytest.raises(ValueError, match="vgg19-dcbb9e9d.pth"):
        load_vgg19(truncated)
    other = tmp_path / "other.pth"
    torch.save(tnn.Sequential(tnn.Conv2d(3, 8, 3)).state_dict(), other)
    with pytest.raises(ValueError, match=r"not a torchvision VGG-19 state dict.*features\.0\.weight"):
        load_vgg19(other)
    bn = tmp_path / "bn.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3), "features.1.running_mean": torch.zeros(64)}, bn)
    with pytest.raises(ValueError, match="vgg19_bn"):
        load_vgg19(bn)
    shapes = tmp_path / "shapes.pth"
    sd = dict(tvgg.state_dict())
    sd["features.2.weight"] = torch.zeros(64, 32, 3, 3)
    torch.save(sd, shapes)
    with pytest.raises(ValueError, match=r"wrong shapes.*features\.2\.weight"):
        load_vgg19(shapes, layer="vgg22")


def test_perceptual_loss_and_its_gradient_match_torch(vgg_file, tvgg):
    vgg = load_vgg19(vgg_file, layer="vgg22")
    loss_fn = PerceptualLoss(vgg)
    rng = np.random.default_rng(2)
    sr = rng.uniform(0, 1, (2, 3, 24, 24)).astype(np.float32)
    hr = rng.uniform(0, 1, (2, 3, 24, 24)).astype(np.float32)
    t = Tensor(sr.copy(), requires_grad=True)
    loss = loss_fn(t, Tensor(hr))
    loss.backward()
    st = torch.tensor(sr, requires_grad=True)
    last = vgg19_layer_index("vgg22")
    with torch.no_grad():
        ft = reference(tvgg, torch.from_numpy(hr), last) / 12.75
    lt = torch.nn.functional.mse_loss(reference(tvgg, st, last) / 12.75, ft)
    lt.backward()
    assert abs(loss.item() - lt.item()) <= 1e-5 * max(1.0, abs(lt.item()))
    g, gt = t.grad, st.grad.numpy()
    assert np.abs(g - gt).max() <= 1e-4 * np.abs(gt).max()
    assert all(p.grad is None for p in vgg.parameters())     # VGG itself is frozen


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adversarial_losses_match_torch(dtype):
    rng = np.random.default_rng(3)
    real = (rng.standard_normal((5, 1)) * 30).astype(dtype)     # large logits: the stable form matters
    fake = (rng.standard_normal((5, 1)) * 30).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-10      # as tests/test_torch_parity.py
    # generator: mean(-log D(G(x))) = mean(-log sigmoid(fake))
    f = Tensor(fake.copy(), requires_grad=True)
    g = generator_adversarial_loss(f)
    g.backward()
    ft = torch.tensor(fake, requires_grad=True)
    gt = torch.nn.functional.softplus(-ft).mean()
    gt.backward()
    assert np.isfinite(g.item()) and abs(g.item() - gt.item()) <= tol * max(1.0, abs(gt.item()))
    assert np.abs(f.grad - ft.grad.numpy()).max() <= tol
    # discriminator: BCE(real, 1) + BCE(fake, 0)
    r, f = Tensor(real.copy(), requires_grad=True), Tensor(fake.copy(), requires_grad=True)
    d = discriminator_loss(r, f)
    d.backward()
    rt, ft = torch.tensor(real, requires_grad=True), torch.tensor(fake, requires_grad=True)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    dt = bce(rt, torch.ones_like(rt)) + bce(ft, torch.zeros_like(ft))
    dt.backward()
    assert abs(d.item() - dt.item()) <= tol * max(1.0, abs(dt.item()))
    assert np.abs(r.grad - rt.grad.numpy()).max() <= tol and np.abs(f.grad - ft.grad.numpy()).max() <= tol


def _tiny_setup():
    from tinysr import nn
    from tinysr.models import build
    nn.init.seed(0)
    gen = build("srresnet", scale=2, blocks=1, channels=8)
    rng0 = np.random.default_rng(0)
    hr_pool = rng0.uniform(0, 1, (6, 3, 16, 16)).astype(np.float32)

    def sample(rng):
        idx = rng.integers(0, len(hr_pool), 3)
        hr = hr_pool[idx]
        lr = hr.reshape(3, 3, 8, 2, 8, 2).mean(axis=(3, 5))      # a 2x2 box downscale: enough for a test
        return lr, hr
    return gen, sample


@pytest.mark.parametrize("with_vgg", [False, True])
def test_tiny_gan_run_changes_both_networks(with_vgg, tmp_path, tvgg):
    gen, sample = _tiny_setup()
    vgg = None
    if with_vgg:
        vgg = tmp_path / "vgg.pth"
        torch.save(tvgg.state_dict(), vgg)
    before = {k: v.copy() for k, v in gen.state_dict().items()}
    logs = []
    res = train_srgan(gen, sample=sample, patch_size=8, batch_size=3, iterations=3, seed=0, vgg=vgg,
                      vgg_layer="vgg22", discriminator_kwargs={"base": 4, "dense": 8}, log=logs.append,
                      evaluate=lambda g: {"probe": 1.0}, eval_every=2)
    assert ("pixel MSE" in logs[0]) != with_vgg
    assert res.generator is not gen                                   # the SRResNet itself is kept
    assert all(np.array_equal(v, gen.state_dict()[k]) for k, v in before.items())
    after = res.generator.state_dict()
    assert any(not np.array_equal(after[k], before[k]) for k in before if k.endswith("weight"))
    from tinysr import nn
    nn.init.seed(0)                                                   # train_srgan's seed: the same init
    d_init = type(res.discriminator)(input_size=16, base=4, dense=8)
    d_after = res.discriminator.state_dict()
    assert any(not np.array_equal(d_after[k], v) for k, v in d_init.state_dict().items() if k.endswith("weight"))
    h = res.history
    assert h["step"] == [1, 2, 3] and [e["step"] for e in h["eval"]] == [2, 3]
    for key in ("d_loss", "g_loss", "content", "adversarial", "d_real", "d_fake"):
        assert len(h[key]) == 3 and np.all(np.isfinite(h[key])), key
    assert all(0 < p < 1 for p in h["d_real"] + h["d_fake"])
    np.testing.assert_allclose(h["g_loss"], np.array(h["content"]) + 1e-3 * np.array(h["adversarial"]), rtol=1e-5)


def test_gan_run_is_seeded():
    runs = []
    for _ in range(2):
        gen, sample = _tiny_setup()
        res = train_srgan(gen, sample=sample, patch_size=8, batch_size=3, iterations=2, seed=5,
                          discriminator_kwargs={"base": 4, "dense": 8}, log=lambda m: None)
        runs.append((res.history["g_loss"], res.generator.state_dict()))
    assert runs[0][0] == runs[1][0]
    assert all(np.array_equal(v, runs[1][1][k]) for k, v in runs[0][1].items())


def test_killed_gan_run_resumes_to_the_same_networks(tmp_path):
    kw = dict(patch_size=8, batch_size=3, iterations=4, seed=2, discriminator_kwargs={"base": 4, "dense": 8},
              checkpoint_every=2)

    class Killed(Exception):
        """Stands for the process dying right after a checkpoint."""

    def die_at_2(step, history):
        if step == 2:
            raise Killed

    gen, sample = _tiny_setup()
    whole = train_srgan(gen, sample=sample, out_dir=tmp_path / "whole", log=lambda m: None, **kw)
    gen, sample = _tiny_setup()
    with pytest.raises(Killed):
        train_srgan(gen, sample=sample, out_dir=tmp_path / "cut", log=lambda m: None, on_step=die_at_2, **kw)
    logs = []
    gen, sample = _tiny_setup()
    again = train_srgan(gen, sample=sample, out_dir=tmp_path / "cut", log=logs.append, **kw)
    assert any("resuming from" in m and "step 2 of 4" in m for m in logs)
    assert again.history["step"] == [1, 2, 3, 4] and again.history["g_loss"] == whole.history["g_loss"]
    for a, b in ((whole.generator, again.generator), (whole.discriminator, again.discriminator)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(np.array_equal(v, sb[k]) for k, v in sa.items())
    # the finished generator is a checkpoint tinysr.load reads
    import tinysr
    loaded = tinysr.load(tmp_path / "cut" / "generator.npz")
    assert all(np.array_equal(v, loaded.state_dict()[k]) for k, v in again.generator.state_dict().items())
    # a changed setting is another run, not a continuation
    gen, sample = _tiny_setup()
    with pytest.raises(ValueError, match="another run.*adv_weight"):
        train_srgan(gen, sample=sample, out_dir=tmp_path / "cut", log=lambda m: None, adv_weight=1e-2,
                    **{**kw, "iterations": 6})


_TINY = dict(patch_size=8, batch_size=3, discriminator_kwargs={"base": 4, "dense": 8}, log=lambda m: None)


def test_gan_run_resumed_equals_the_uninterrupted_run_and_keeps_the_trainers_records(tmp_path):
    """6 steps in one go against 3 steps then a second call to 6: the same generator, discriminator and both
    Adam states to the last bit; the Trainer's history.json and curves.png are written."""
    gen, sample = _tiny_setup()
    whole = train_srgan(gen, sample=sample, iterations=6, seed=4, out_dir=tmp_path / "whole", **_TINY)
    gen, sample = _tiny_setup()
    train_srgan(gen, sample=sample, iterations=3, seed=4, out_dir=tmp_path / "parts", **_TINY)
    logs = []
    gen, sample = _tiny_setup()
    parts = train_srgan(gen, sample=sample, iterations=6, seed=4, out_dir=tmp_path / "parts",
                        **{**_TINY, "log": logs.append})
    assert any("resuming from" in m and "step 3 of 6" in m for m in logs)
    for a, b in ((whole.generator, parts.generator), (whole.discriminator, parts.discriminator)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(np.array_equal(v, sb[k]) for k, v in sa.items())
    from tinysr import checkpoint
    (mw, ow, meta), (mp, op, _) = (checkpoint.load(d / "step_0000006.npz") for d in (tmp_path / "whole",
                                                                                      tmp_path / "parts"))
    assert {k.split(".")[0] for k in mw} == {"generator", "discriminator"}
    assert all(np.array_equal(v, mp[k]) for k, v in mw.items())
    assert ow["param_groups"] == op["param_groups"] and ow["state"].keys() == op["state"].keys()
    assert len(ow["state"]) == len(list(whole.generator.parameters())) + len(list(whole.discriminator.parameters()))
    assert all(np.array_equal(v, op["state"][i][k]) for i, s in ow["state"].items() for k, v in s.items()
               if isinstance(v, np.ndarray))
    assert meta["seed"] == 4 and meta["adv_weight"] == 1e-3 and "tinysr_version" in meta
    assert parts.history["g_loss"] == whole.history["g_loss"]
    saved = json.loads((tmp_path / "parts" / "history.json").read_text())
    assert saved["step"] == list(range(1, 7)) and saved["g_loss"] == whole.history["g_loss"]
    assert (tmp_path / "parts" / "curves.png").stat().st_size > 1000


def _poisoned(sample, at, factor):
    calls = {"n": 0}

    def poisoned(rng):
        calls["n"] += 1
        lr, hr = sample(rng)
        return (lr, hr * factor) if calls["n"] == at else (lr, hr)
    return poisoned


@pytest.mark.filterwarnings("error::RuntimeWarning")      # the guard's sentence says it all
@pytest.mark.parametrize("factor, says", [(np.nan, "discriminator loss became nan at step 2"),
                                          (1e6, r"generator loss became .* at step 2 \(the median")])
def test_gan_run_whose_loss_turns_nan_or_explodes_stops_at_step_2_without_a_checkpoint(tmp_path, factor, says):
    from tinysr.trainer import TrainingDiverged
    gen, sample = _tiny_setup()
    with pytest.raises(TrainingDiverged, match=f"{says}.*no checkpoint was written.*Lower the learning rates"):
        train_srgan(gen, sample=_poisoned(sample, 2, factor), iterations=5, seed=0, out_dir=tmp_path,
                    checkpoint_every=4, **_TINY)
    assert not list(tmp_path.glob("step_*.npz"))
    assert json.loads((tmp_path / "history.json").read_text())["step"] == [1]


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_gan_checkpoint_is_never_written_from_a_diverged_state(tmp_path):
    """lr=1e30 for the generator: its first update wrecks it after a finite loss; the checkpoint due after
    step 1 tests the updated networks first and is not written."""
    from tinysr.trainer import TrainingDiverged
    gen, sample = _tiny_setup()
    with pytest.raises(TrainingDiverged, match="after step 1 .*no checkpoint is written"):
        train_srgan(gen, sample=sample, iterations=3, seed=0, out_dir=tmp_path, checkpoint_every=1, lr=1e30,
                    d_lr=1e-4, **_TINY)
    assert not list(tmp_path.glob("step_*.npz"))


def test_resumed_gan_run_may_lower_its_rates_and_records_it(tmp_path):
    gen, sample = _tiny_setup()
    train_srgan(gen, sample=sample, iterations=2, seed=0, out_dir=tmp_path, checkpoint_every=1, **_TINY)
    stale = tmp_path / ".step_0000003.npz.x1y2z3.tmp"      # a run killed while writing its next checkpoint
    stale.write_bytes(b"half")
    logs = []
    gen, sample = _tiny_setup()
    res = train_srgan(gen, sample=sample, iterations=3, seed=0, out_dir=tmp_path, lr=5e-5,
                      **{**_TINY, "log": logs.append})
    assert not stale.exists() and any("removed" in m and stale.name in m for m in logs)
    assert res.history["changes"] == [{"step": 2, "lr": {"from": 1e-4, "to": 5e-5},
                                       "d_lr": {"from": 1e-4, "to": 5e-5}}]
    from tinysr import checkpoint
    groups = checkpoint.load(tmp_path / "step_0000003.npz")[1]["param_groups"]
    assert groups["g"][0]["lr"] == groups["d"][0]["lr"] == 5e-5
    assert json.loads((tmp_path / "history.json").read_text())["changes"] == res.history["changes"]


def test_max_pool2d_ties_route_to_the_first_maximum():
    x = Tensor(np.ones((1, 1, 2, 2), np.float32), requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    assert x.grad.tolist() == [[[[1.0, 0.0], [0.0, 0.0]]]]
