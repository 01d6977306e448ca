"""Model zoo: paper parameter counts, shapes at every supported scale, float64 gradient checks on tiny
instances, a short overfit run, weight sharing (DRCN/DRRN) and the registry's errors."""
import numpy as np
import pytest

import tinysr
from tinysr import nn, optim
from tinysr import functional as F
from tinysr.gradcheck import check_grad_directional
from tinysr.models import build, count_weights, list_models, registry, to_float64
from tinysr.models.common import SRModel
from tinysr.models.drcn import DRCN, drcn_loss
from tinysr.models.drrn import DRRN


def _x(shape, seed=0, dtype=np.float32):
    return tinysr.Tensor(np.random.default_rng(seed).random(shape).astype(dtype))


# ------------------------------------------------------------------ parameter counts (acceptance 1)

@pytest.mark.parametrize("name, kwargs, scale, expected, what", [
    ("srcnn", {"variant": "9-1-5"}, 3, 8_129, "all"),
    ("srcnn", {"variant": "9-5-5"}, 3, 57_281, "all"),
    ("fsrcnn", {}, 3, 12_464, "weights"),
    ("vdsr", {}, 3, 664_704, "weights"),
    ("drrn", {}, 3, 297_216, "weights"),
    ("drrn", {"units": 9}, 3, 297_216, "weights"),      # shared units: U does not change the count
    ("drcn", {}, 3, 1_774_080, "weights"),               # paper: 1,774K
    ("red30", {}, 3, 4_131_072, "weights"),              # 4,131K as listed by DRRN (CVPR'17)
])
def test_exact_paper_counts(name, kwargs, scale, expected, what):
    model = build(name, scale=scale, **kwargs)
    got = model.num_parameters() if what == "all" else count_weights(model)
    print(f"{name} {kwargs}: {got:,} ({what}) vs paper {expected:,}")
    assert got == expected


@pytest.mark.parametrize("name, scale, paper, tol", [
    ("edsr_baseline", 2, 1.37e6, 0.01e6),   # EDSR paper: 1.37M (x2 baseline, from its table's 1.5M at x4)
    ("edsr", 4, 43e6, 0.5e6),               # EDSR paper: 43M
    ("mdsr", 2, 8.0e6, 0.1e6),              # EDSR paper: MDSR 8.0M (all three scales' branches)
    ("srresnet", 4, 1.55e6, 0.05e6),        # ~1.5M
])
def test_approximate_paper_counts(name, scale, paper, tol):
    n = build(name, scale=scale).num_parameters()
    print(f"{name} x{scale}: {n:,} vs paper {paper:,.0f}")
    assert abs(n - paper) <= tol


def test_fsrcnn_count_is_the_same_at_every_scale_and_fsrcnn_s():
    assert {count_weights(build("fsrcnn", scale=s)) for s in (2, 3, 4)} == {12_464}
    # FSRCNN-s (32, 5, 1): 25*32 + 32*5 + 9*25 + 5*32 + 81*32
    assert count_weights(build("fsrcnn", scale=3, d=32, s=5, m=1)) == 800 + 160 + 225 + 160 + 2592


def test_models_table_lists_every_model():
    from tinysr.models import format_models_table, models_table
    rows = models_table()
    assert [r["name"] for r in rows] == list_models()
    text = format_models_table(rows)
    for name in list_models():
        assert name in text
    print("\n" + text)


# ------------------------------------------------------------------ shapes (acceptance 2)

TINY = {
    "srcnn": {}, "fsrcnn": {}, "vdsr": {}, "drcn": {"channels": 32, "recursions": 4},
    "red30": {"channels": 16}, "drrn": {"channels": 32, "units": 3}, "srdensenet": {},
    "srresnet": {}, "edsr_baseline": {}, "edsr": {}, "mdsr": {},
}


def _cases():
    for name, spec in registry().items():
        if name == "srgan_discriminator":
            continue
        for s in spec.scales:
            yield name, s


@pytest.mark.parametrize("name, scale", list(_cases()))
def test_forward_shape_every_supported_scale(name, scale):
    model = build(name, scale=scale, **TINY[name])
    assert isinstance(model, SRModel) and model.scale == scale
    c = model.in_channels
    h, w = (8, 9) if name == "srcnn" else (6, 7)
    with tinysr.no_grad():
        if model.input_convention == "bicubic-y":
            y = model(_x((1, c, h * scale, w * scale)))
            expect = (1, c, h * scale, w * scale)
            if name == "srcnn":   # the paper's valid convolutions lose 12 px
                expect = (1, c, h * scale - 12, w * scale - 12)
        else:
            y = model(_x((1, c, h, w)))
            expect = (1, c, h * scale, w * scale)
    assert y.shape == expect
    assert model.input_convention in ("bicubic-y", "lr-y", "lr-rgb")
    assert model.receptive_field > 1


def test_paper_scale_full_size_models_run():
    # The registry defaults are the papers' configurations; make sure the big ones run end to end.
    with tinysr.no_grad():
        assert build("drcn", scale=2)(_x((1, 1, 12, 12))).shape == (1, 1, 12, 12)
        assert build("drrn", scale=2)(_x((1, 1, 10, 10))).shape == (1, 1, 10, 10)
        assert build("red30", scale=2)(_x((1, 1, 10, 10))).shape == (1, 1, 10, 10)


def test_srcnn_same_padding_and_variants():
    for v, rf in (("9-1-5", 13), ("9-3-5", 15), ("9-5-5", 17)):
        m = build("srcnn", scale=3, variant=v, padding="same", padding_mode="replicate")
        assert m.receptive_field == rf
        assert m(_x((1, 1, 20, 21))).shape == (1, 1, 20, 21)
    assert build("srcnn", scale=3, variant="9-5-5")(_x((1, 1, 30, 30))).shape == (1, 1, 14, 14)


def test_fsrcnn_replicate_variant_keeps_size():
    for s in (2, 3, 4):
        m = build("fsrcnn", scale=s, padding_mode="replicate")
        assert m(_x((1, 1, 5, 6))).shape == (1, 1, 5 * s, 6 * s)


def test_mdsr_serves_all_scales_with_one_model():
    m = build("mdsr", scale=2, blocks=2, channels=8)
    with tinysr.no_grad():
        for s in (2, 3, 4):
            assert m(_x((1, 3, 5, 5)), scale=s).shape == (1, 3, 5 * s, 5 * s)
    with pytest.raises(ValueError, match="scales"):
        m.set_scale(8)


def test_srgan_discriminator_shape():
    d = build("srgan_discriminator", input_size=32, base=8, dense=16)
    assert d(_x((2, 3, 32, 32))).shape == (2, 1)
    with pytest.raises(ValueError, match="32x32"):
        d(_x((1, 3, 48, 48)))
    assert build("srgan_discriminator").num_parameters() > 20e6   # dense 1024 on 512*6*6 features


# ------------------------------------------------------------------ registry errors (acceptance 4)

def test_unknown_name_lists_choices():
    with pytest.raises(ValueError) as e:
        build("srcnnn", scale=3)
    for name in list_models():
        assert name in str(e.value)


def test_unsupported_scale_lists_choices():
    with pytest.raises(ValueError, match=r"x4"):
        build("srdensenet", scale=3)
    with pytest.raises(ValueError, match=r"x2, x3, x4"):
        build("vdsr", scale=5)


def test_every_entry_has_a_recipe_and_citation():
    for name, spec in registry().items():
        r = spec.recipe.to_dict()
        assert r["lr"] > 0 and r["batch_size"] > 0 and r["optimizer"] in ("sgd", "adam") and r["loss"]
        assert spec.citation and spec.scales


def test_seeded_init_is_reproducible():
    nn.init.seed(123)
    a = build("vdsr", scale=2).state_dict()
    nn.init.seed(123)
    b = build("vdsr", scale=2).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_paper_initialisations():
    nn.init.seed(0)
    srcnn = build("srcnn", scale=3)
    assert abs(float(srcnn.patch_extraction.weight.data.std()) - 1e-3) < 2e-4
    assert not srcnn.patch_extraction.bias.data.any()
    vdsr = build("vdsr", scale=3)
    w = vdsr.layers[5].weight.data
    assert abs(float(w.std()) - np.sqrt(2 / (64 * 9))) < 0.01
    drcn = build("drcn", scale=3, channels=8, recursions=2)
    w = drcn.inference.weight.data
    assert w[np.arange(8), np.arange(8), 1, 1].tolist() == [1.0] * 8 and float(np.abs(w).sum()) == 8.0


# ------------------------------------------------------------------ gradient checks (float64, tiny)

GRAD_TINY = {
    "srcnn": ({"n1": 3, "n2": 2, "padding": "same", "padding_mode": "replicate"}, 3, (1, 1, 8, 8)),
    "fsrcnn": ({"d": 3, "s": 2, "m": 2, "padding_mode": "replicate"}, 2, (1, 1, 4, 5)),
    "vdsr": ({"depth": 3, "channels": 3}, 2, (1, 1, 6, 6)),
    "drcn": ({"channels": 3, "recursions": 2}, 2, (1, 1, 6, 6)),
    "red30": ({"depth": 2, "channels": 3}, 2, (1, 1, 6, 6)),
    "drrn": ({"channels": 3, "units": 2}, 2, (1, 1, 6, 6)),
    "srdensenet": ({"blocks": 2, "layers": 2, "growth": 2, "low_channels": 3, "bottleneck": 3}, 4, (1, 1, 3, 3)),
    "srresnet": ({"blocks": 2, "channels": 3}, 2, (2, 3, 4, 4)),
    "edsr_baseline": ({"blocks": 2, "channels": 3}, 2, (1, 3, 4, 4)),
    "edsr": ({"blocks": 2, "channels": 3}, 3, (1, 3, 3, 3)),
    "mdsr": ({"blocks": 2, "channels": 3}, 4, (1, 3, 3, 3)),
}


def _nudge_prelu(model, rng):
    # PReLU slopes start equal; make them distinct so the check sees each one's gradient.
    for p in model.parameters():
        if p.ndim == 1 and p.size < 8:
            p.data = p.data + rng.uniform(-0.1, 0.1, p.shape)


@pytest.mark.parametrize("name", sorted(GRAD_TINY))
def test_gradient_check_tiny_float64(name):
    kwargs, scale, shape = GRAD_TINY[name]
    nn.init.seed(1)
    model = to_float64(build(name, scale=scale, **kwargs))
    rng = np.random.default_rng(2)
    _nudge_prelu(model, rng)
    # Gaussian 1e-3 (SRCNN) or identity (DRCN) inits make an almost-linear net; widen the weights so
    # that ReLU kinks and all paths matter.
    for p in model.parameters():
        if p.ndim >= 2:
            p.data = p.data + rng.normal(0, 0.3, p.shape)
    x = tinysr.Tensor(rng.random(shape), requires_grad=True)
    params = list(model.parameters())
    check_grad_directional(lambda x, *ps: model(x), x, *params, directions=3, rtol=1e-5, atol=1e-8)


def test_gradient_check_drcn_loss_and_discriminator():
    nn.init.seed(3)
    rng = np.random.default_rng(3)
    model = to_float64(build("drcn", scale=2, channels=3, recursions=3))
    for p in model.parameters():
        if p.ndim >= 2:
            p.data = p.data + rng.normal(0, 0.3, p.shape)
    x = tinysr.Tensor(rng.random((2, 1, 5, 5)), requires_grad=True)
    t = tinysr.Tensor(rng.random((2, 1, 5, 5)))
    check_grad_directional(lambda x, *ps: drcn_loss(model, x, t, alpha=0.3, beta=1e-3), x, *model.parameters(),
                           directions=3, rtol=1e-5)
    d = to_float64(build("srgan_discriminator", input_size=16, base=2, dense=4))
    xd = tinysr.Tensor(rng.random((3, 3, 16, 16)), requires_grad=True)
    check_grad_directional(lambda x, *ps: d(x), xd, *d.parameters(), directions=3, rtol=1e-5)


def test_drcn_loss_matches_formula():
    model = build("drcn", scale=2, channels=4, recursions=3)
    x, t = _x((2, 1, 5, 5), 1), _x((2, 1, 5, 5), 2)
    preds, out = model.forward_all(x)
    alpha, beta = 0.4, 1e-3
    l1 = sum(((p.data - t.data) ** 2).sum() for p in preds) / (2 * 3 * 2)
    l2 = ((out.data - t.data) ** 2).sum() / (2 * 2)
    wd = sum((p.data.astype(np.float64) ** 2).sum() for p in model.parameters() if p.ndim >= 2)
    got = float(drcn_loss(model, x, t, alpha, beta).data)
    assert np.isclose(got, alpha * l1 + (1 - alpha) * l2 + beta * wd, rtol=1e-4)
    # ensemble = weighted sum of the intermediate predictions
    w = model.ensemble_weights.data
    assert np.allclose(out.data, sum(w[d] * preds[d].data for d in range(3)), atol=1e-6)


# ------------------------------------------------------------------ weight sharing

def test_drcn_shares_one_recursive_conv_and_sums_its_gradient():
    nn.init.seed(4)
    model = to_float64(DRCN(scale=2, channels=3, recursions=3))
    names = [n for n, _ in model.named_parameters()]
    assert sum(n.startswith("inference.") for n in names) == 2   # one weight, one bias for all 3 uses
    rng = np.random.default_rng(4)
    for p in model.parameters():
        if p.ndim >= 2:
            p.data = p.data + rng.normal(0, 0.3, p.shape)
    x = tinysr.Tensor(rng.random((1, 1, 5, 5)))
    model(x).sum().backward()
    shared = model.inference.weight.grad.copy()

    # Unroll the recursion with three independent copies of the weight: the shared gradient must be
    # the sum of the three copies' gradients.
    copies = [nn.Parameter(model.inference.weight.data.copy()) for _ in range(3)]
    h = model.embedding(x)
    out = None
    for d in range(3):
        h = F.relu(F.conv2d(h, copies[d], model.inference.bias, 1, 1))
        y = (model.reconstruction(h) + x) * model.ensemble_weights[d]
        out = y if out is None else out + y
    out.sum().backward()
    assert np.allclose(shared, sum(c.grad for c in copies), rtol=1e-10, atol=1e-12)


def test_drrn_shares_unit_weights_and_sums_their_gradient():
    nn.init.seed(5)
    model = to_float64(DRRN(scale=2, channels=3, units=3))
    block = model.blocks[0]
    assert len(list(model.parameters())) == 4                     # conv_in, conv1, conv2, conv_out
    x = tinysr.Tensor(np.random.default_rng(5).random((1, 1, 6, 6)))
    model(x).sum().backward()
    g1, g2 = block.conv1.weight.grad.copy(), block.conv2.weight.grad.copy()
    c1 = [nn.Parameter(block.conv1.weight.data.copy()) for _ in range(3)]
    c2 = [nn.Parameter(block.conv2.weight.data.copy()) for _ in range(3)]
    h0 = block.conv_in(F.relu(x))
    h = h0
    for u in range(3):
        h = F.conv2d(F.relu(F.conv2d(F.relu(h), c1[u], None, 1, 1)), c2[u], None, 1, 1) + h0
    (model.conv_out(F.relu(h)) + x).sum().backward()
    assert np.allclose(g1, sum(c.grad for c in c1)) and np.allclose(g2, sum(c.grad for c in c2))


def test_drrn_skip_variants_differ():
    nn.init.seed(6)
    a = DRRN(scale=2, channels=4, units=2, skip="pre")
    b = DRRN(scale=2, channels=4, units=2, skip="relu")
    b.load_state_dict(a.state_dict())
    x = _x((1, 1, 6, 6))
    assert not np.allclose(a(x).data, b(x).data)
    assert DRRN(scale=2, units=25).receptive_field == 105 and DRRN(scale=2, units=9).receptive_field == 41


def test_red30_skip_structure():
    m = build("red30", scale=2, channels=4)
    assert len(m.encoder) == 15 and len(m.decoder) == 15 and m.receptive_field == 61


# ------------------------------------------------------------------ short overfit

OVERFIT = {
    "srcnn": ({"n1": 8, "n2": 4, "padding": "same"}, 2),
    "fsrcnn": ({"d": 8, "s": 4, "m": 1}, 2),
    "vdsr": ({"depth": 4, "channels": 8}, 2),
    "drcn": ({"channels": 8, "recursions": 3}, 2),
    "red30": ({"depth": 2, "channels": 8}, 2),
    "drrn": ({"channels": 8, "units": 2}, 2),
    "srdensenet": ({"blocks": 2, "layers": 2, "growth": 4, "low_channels": 8, "bottleneck": 8}, 4),
    "srresnet": ({"blocks": 1, "channels": 8}, 2),
    "edsr_baseline": ({"blocks": 2, "channels": 8}, 2),
    "mdsr": ({"blocks": 1, "channels": 8}, 2),
}


@pytest.mark.parametrize("name", sorted(OVERFIT))
def test_short_overfit(name):
    kwargs, scale = OVERFIT[name]
    nn.init.seed(7)
    model = build(name, scale=scale, **kwargs)
    rng = np.random.default_rng(7)
    c = model.in_channels
    hr = rng.random((2, c, 8, 8)).astype(np.float32)
    if model.input_convention == "bicubic-y":
        inp = tinysr.Tensor(0.5 * hr + 0.25)      # a crude "blurred" input of the same size
    else:
        r = scale
        inp = tinysr.Tensor(hr.reshape(2, c, 8 // r, r, 8 // r, r).mean(axis=(3, 5)))
    target = tinysr.Tensor(hr)
    opt = optim.Adam(model.parameters(), lr=3e-3 if name != "srcnn" else 1e-2)
    losses = []
    for _ in range(60):
        opt.zero_grad() if hasattr(opt, "zero_grad") else model.zero_grad()
        loss = F.mse_loss(model(inp), target)
        loss.backward()
        opt.step()
        losses.append(float(loss.data))
    print(f"{name}: loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    assert losses[-1] < 0.5 * losses[0]


def test_count_flops_matches_hand_counts():
    """SRCNN 9-1-5 ('same'): 9*9*64 + 64*32 + 5*5*32 MACs per pixel; FSRCNN x3: its 12,464 conv weights
    per LR pixel (the paper's complexity formula), i.e. /9 per HR pixel; DRRN counts each of its 25
    weight-shared units (the work, not the parameters)."""
    from tinysr.models import count_flops
    assert count_flops(build("srcnn", scale=3, padding="same"))["macs"] == 9 * 9 * 64 + 64 * 32 + 5 * 5 * 32
    f = count_flops(build("fsrcnn", scale=3))
    assert abs(f["macs"] - 12_464 / 9) < 1e-9 and f["flops"] == 2 * f["macs"] and f["output"] == (48, 48)
    drrn = build("drrn", scale=3)
    assert count_flops(drrn)["macs"] == 9 * 128 * (1 + 2 * 25 * 128 + 1)


@pytest.mark.parametrize("padding, mode", [("valid", "zeros"), ("same", "replicate")])
def test_srcnn_offset_folds_exactly_into_the_biases(padding, mode):
    """tinysr's fast recipe trains SRCNN on centred intensities, f(x - 0.5) + 0.5; folding the constant
    into the first and last biases leaves the paper's network computing the same function."""
    init_seed = np.random.default_rng(5)
    m = build("srcnn", scale=3, padding=padding, padding_mode=mode, offset=0.5)
    for p in m.parameters():
        p.data = init_seed.normal(0, 0.1, p.shape).astype(np.float32)
    x = tinysr.Tensor(init_seed.random((2, 1, 30, 30)).astype(np.float32))
    with tinysr.no_grad():
        before = m(x).data
        m.fold_offset_()
        after = m(x).data
    assert m.offset == 0.0
    np.testing.assert_allclose(after, before, atol=2e-5)


def test_srcnn_offset_refuses_to_fold_over_zero_padding():
    m = build("srcnn", scale=3, padding="same", offset=0.5)
    with pytest.raises(ValueError, match="zero"):
        m.fold_offset_()


def test_fsrcnn_deconvolution_puts_each_lr_pixel_on_its_hr_centre():
    """LR pixel i of a x3 image is the mean of HR pixels 3i..3i+2: the deconvolution's centre tap must
    land on HR 3i+1 (not 3i, the authors' one-pixel x3 offset); x2/x4 within half a pixel."""
    for r in (2, 3, 4):
        m = build("fsrcnn", scale=r, d=1, s=1, m=0)
        de = m.deconvolution
        de.weight.data[...] = 0
        de.weight.data[0, 0, 4, 4] = 1.0
        de.bias.data[...] = 0
        x = np.zeros((1, 1, 6, 6), np.float32)
        x[0, 0, 2, 3] = 1.0
        with tinysr.no_grad():
            y = de(tinysr.Tensor(x)).data[0, 0]
        assert y.shape == (6 * r, 6 * r)
        row, col = np.unravel_index(np.argmax(y), y.shape)
        centre_row, centre_col = 2 * r + (r - 1) / 2, 3 * r + (r - 1) / 2
        assert abs(row - centre_row) <= 0.5 and abs(col - centre_col) <= 0.5, (r, row, col)
