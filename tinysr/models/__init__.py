"""The model zoo: the classic SR networks, one file per paper, each faithful to its paper.

    import tinysr
    model = tinysr.models.build("vdsr", scale=3)          # the paper's configuration
    tinysr.models.list_models()                           # every name
    print(tinysr.models.format_models_table())            # name, params, receptive field, input
    model = tinysr.models.load_official("srcnn", "x3.mat", scale=3)   # public pretrained weights
    edsr = tinysr.models.public.load("edsr-8-x2")         # a public trained EDSR-8 from ../shared, or None
    vgg = tinysr.models.load_vgg19("vgg19-dcbb9e9d.pth", layer="vgg54")  # SRGAN's perceptual loss

See :mod:`tinysr.models.registry` for the training recipes, :mod:`tinysr.models.official` for the
weight importers and the evaluation protocols of the released weights, and :mod:`tinysr.models.public` for the
catalogue of public trained networks.
"""
from .common import SRModel, count_biases, count_flops, count_weights, to_float64
from .registry import ModelSpec, TrainingRecipe, build, get_spec, list_models, registry
from .vgg import PerceptualLoss, VGG19Features, load_vgg19
from . import public

__all__ = ["build", "list_models", "registry", "get_spec", "ModelSpec", "TrainingRecipe", "load_official",
           "models_table", "format_models_table", "count_flops", "count_weights", "count_biases", "to_float64", "SRModel",
           "VGG19Features", "PerceptualLoss", "load_vgg19"]

#: The scale at which the table reports each model (its paper's headline configuration).
TABLE_SCALES = {"srcnn": 3, "fsrcnn": 3, "vdsr": 3, "drcn": 3, "red30": 3, "drrn": 3, "srdensenet": 4,
                "srresnet": 4, "srgan_discriminator": 4, "edsr_baseline": 2, "edsr": 4, "mdsr": 2}


def load_official(name, path, scale=None, **kwargs):
    """Build ``name`` and load public pretrained weights from ``path`` (see :mod:`tinysr.models.official`)."""
    from .official import load_official as _load
    return _load(name, path, scale=scale, **kwargs)


def models_table():
    """One dict per registered model: name, scale, params (all), weights (conv/linear only),
    receptive field, input convention, supported scales, paper count, citation.

    Builds every model once (EDSR's 43M parameters take a second or two).
    """
    rows = []
    for name, spec in registry().items():
        scale = TABLE_SCALES.get(name, spec.scales[0])
        model = build(name, scale=scale)
        rf = getattr(model, "receptive_field", None) if isinstance(model, SRModel) else None
        rows.append({"name": name, "scale": scale, "params": model.num_parameters(),
                     "weights": count_weights(model), "receptive_field": rf,
                     "input": spec.input_convention, "scales": spec.scales,
                     "paper_params": spec.paper_params, "citation": spec.citation})
    return rows


def format_models_table(rows=None):
    """The rows of :func:`models_table` as an aligned plain-text table (what ``tinysr models`` prints)."""
    rows = models_table() if rows is None else rows
    header = ("name", "scales", "params", "weights", "receptive field", "input", "paper")
    lines = []
    for r in rows:
        rf = "-" if r["receptive_field"] is None else f"{r['receptive_field']}x{r['receptive_field']}"
        lines.append((r["name"], "/".join(f"x{s}" for s in r["scales"]), f"{r['params']:,}",
                      f"{r['weights']:,}", rf, r["input"], r["paper_params"] or "-"))
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(header)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    out = [fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*l).rstrip() for l in lines]
    out.append("params: all learned scalars at the listed scale (table scale: srdensenet/srresnet/edsr x4, "
               "edsr_baseline/mdsr x2, others x3); weights: conv/linear weights only (what most papers count); "
               "receptive field in input pixels")
    return "\n".join(out)
