"""tinysr.viz.draw_architecture: one box per layer, read from the model; no pyplot state touched."""
import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.figure import Figure  # noqa: E402

from tinysr import nn  # noqa: E402
from tinysr.models import build, get_spec, list_models  # noqa: E402
from tinysr.viz import draw_architecture  # noqa: E402


def _gids(fig, prefix):
    return [p.get_gid().split(":", 1)[1] for ax in fig.axes for p in ax.patches
            if (p.get_gid() or "").startswith(prefix)]


def _leaf_names(model):
    return [n for n, m in model.named_modules() if n and not m._modules]


@pytest.mark.parametrize("name, n_layers, n_functional, skip", [
    ("srcnn", 3, 2, False),        # 3 convs; F.relu after the first two
    ("fsrcnn", 15, 0, False),      # 7 x (conv + PReLU module) + the deconvolution
    ("vdsr", 20, 19, True),        # 20 convs, a ReLU fused into all but the last, x + residual
])
def test_one_box_per_layer(name, n_layers, n_functional, skip):
    model = build(name, scale=3)
    fig = draw_architecture(model)
    assert isinstance(fig, Figure)
    layers = _gids(fig, "layer:")
    assert layers == _leaf_names(model)            # every leaf module, once, in data-flow order
    assert len(layers) == n_layers
    assert len(_gids(fig, "activation:")) == n_functional
    assert ("skip" in [p.get_gid() for p in fig.axes[0].patches]) == skip


def test_labels_and_groups_come_from_the_model():
    fig = draw_architecture(build("fsrcnn", scale=3))
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "conv 5x5, 1->56" in texts and "deconv 9x9, 56->1, upsample x3" in texts
    for part in ("feature\nextraction", "shrinking", "mapping", "expanding", "deconvolution"):
        assert any(t.startswith(part) for t in texts), part
    # a different configuration draws different boxes: nothing is hard-coded per paper
    small = draw_architecture(build("fsrcnn", scale=2, d=32, s=5, m=1))
    assert len(_gids(small, "layer:")) == 9
    assert "deconv 9x9, 32->1, upsample x2" in [t.get_text() for t in small.axes[0].texts]


def test_draws_into_a_given_axes_and_leaves_the_model_alone():
    fig = Figure()
    axes = fig.subplots(1, 2)
    model = build("vdsr", scale=3, depth=5)
    model.train()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    assert draw_architecture(build("srcnn", scale=3), ax=axes[0], title="SRCNN") is fig
    assert draw_architecture(model, ax=axes[1]) is fig
    assert axes[0].get_title() == "SRCNN" and "VDSR" in axes[1].get_title()
    assert len(_gids(fig, "layer:")) == 3 + 5
    assert model.training and "forward" not in vars(model.layers[0])     # patches undone
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_draws(name):
    model = build(name, scale=get_spec(name).scales[-1])
    fig = draw_architecture(model)
    layers, blocks = _gids(fig, "layer:"), _gids(fig, "block:")
    assert layers or blocks
    if blocks:                                     # big networks: a plain stack of top-level blocks
        assert blocks == list(model._modules)
    else:
        assert layers == _leaf_names(model)


def test_a_bare_layer_draws():
    fig = draw_architecture(nn.Conv2d(1, 8, 3))
    assert len(_gids(fig, "layer:")) == 1


def test_no_pyplot_state_is_touched():
    code = ("import sys, matplotlib; backend = matplotlib.rcParams._get_backend_or_none() "
            "if hasattr(matplotlib.rcParams, '_get_backend_or_none') else None\n"
            "from tinysr.models import build; from tinysr.viz import draw_architecture\n"
            "fig = draw_architecture(build('fsrcnn', scale=3)); fig.savefig(__import__('io').BytesIO())\n"
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
            "assert backend is None or matplotlib.rcParams._get_backend_or_none() == backend\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    plt = pytest.importorskip("matplotlib.pyplot")
    open_before = plt.get_fignums()
    draw_architecture(build("srcnn", scale=3))
    assert plt.get_fignums() == open_before        # no figure registered with pyplot


def test_inner_skip_connections_are_read_from_the_graph():
    # RED30: 7 symmetric skips, encoder 2k -> the decoder layer that reads the sum, nested; plus the input skip
    red = draw_architecture(build("red30", scale=3, channels=4))
    skips = sorted(g for g in _gids(red, "skip:"))
    assert len(skips) == 7 and "encoder.0->decoder.14" in skips and "encoder.12->decoder.2" in skips
    # EDSR: a chain of residual blocks (each adds the previous sum), and the long skip over the body
    edsr = draw_architecture(build("edsr_baseline", scale=2, blocks=3, channels=4))
    skips = set(_gids(edsr, "skip:"))
    assert {"head->body.1.conv1", "body.1.conv1->body.2.conv1", "head->upsample.0"} <= skips
    # DRRN: the recursive block's input is added at each of its 25 units -- one arc, labelled x24 (+ the last)
    drrn = draw_architecture(build("drrn", scale=3, channels=4))
    assert "blocks.0.conv_in->blocks.0.conv1" in _gids(drrn, "skip:")
    assert "x24" in [t.get_text() for t in drrn.axes[0].texts]
    # a plain stack has none
    assert _gids(draw_architecture(build("srcnn", scale=3)), "skip:") == []


def test_draw_graph_numbers_functions_in_backwards_order_and_draws_each_leaf_once():
    import tinysr
    from tinysr.autograd import topological_order
    from tinysr.viz import draw_graph
    x = tinysr.tensor([3.0], requires_grad=True)
    x.name = "x"
    a = x * x
    y = a * x + a                                  # x is read twice, a twice
    fig = draw_graph(y, labels={"Mul": "a"})
    texts = fig.axes[0].texts
    numbered = sorted((t.get_gid(), t.get_text()) for t in texts if (t.get_gid() or "").startswith("function:"))
    assert [t for _, t in numbered] == [f"{k + 1}. {type(f).__name__}"
                                        for k, f in enumerate(topological_order(y.creator))]
    assert [t.get_text() for t in texts if t.get_gid() == "leaf"] == ["x"]
    arrows = [t for t in texts if getattr(t, "arrow_patch", None) is not None]
    assert len(arrows) == 7        # x->Mul1 (twice: x * x), x->Mul2, Mul1->Mul2, Mul1->Add, Mul2->Add, Add->y
    assert [t.get_text() for t in texts if t.get_text() == "a"] == ["a"] * 3   # both Muls are labelled "a"
