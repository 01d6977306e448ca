"""The model registry: name -> builder, supported scales, input convention, paper and training recipe.

``build("vdsr", scale=3)`` makes a network; ``registry()`` gives every :class:`ModelSpec`. Each spec
carries the paper's training recipe (:class:`TrainingRecipe`) as plain data, for the training
pipeline to follow. Recipes are transcribed from the papers' "implementation details" sections;
``notes`` says where a paper is silent or ambiguous.
"""
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Tuple


@dataclass(frozen=True)
class TrainingRecipe:
    """How a paper trained its network (units: patch sizes in pixels; ``iterations`` in updates).

    ``patch_size`` is the *input* patch side (LR for post-upsampling networks, HR-size for
    pre-upsampling ones); ``label_size`` the target's side when it differs (SRCNN's valid output).
    ``lr_schedule`` is a small dict, e.g. ``{"type": "step", "every_epochs": 20, "gamma": 0.1}`` or
    ``{"type": "cosine", "warmup": 500}``.
    """

    data: str
    patch_size: int
    batch_size: int
    optimizer: str
    lr: float
    loss: str
    iterations: Optional[int] = None
    epochs: Optional[int] = None
    label_size: Optional[int] = None
    lr_schedule: dict = field(default_factory=dict)
    momentum: Optional[float] = None
    weight_decay: float = 0.0
    betas: Optional[Tuple[float, float]] = None
    grad_clip: Optional[dict] = None
    augment: Tuple[str, ...] = ()
    per_layer_lr: Optional[dict] = None
    notes: str = ""
    #: output pixels cropped from each side of prediction and label before the loss: an int, or
    #: ``"receptive_field"`` for half the network's receptive field (times the scale for networks that
    #: upsample) -- the outputs that saw the zero padding of a small training patch.
    loss_border: object = 0
    #: build arguments the recipe trains with (e.g. tinysr's fast SRCNN: ``{"offset": 0.5}``); the
    #: caller's ``model_kwargs`` override them.
    model_kwargs: dict = field(default_factory=dict)

    def to_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry (see :func:`build`).

    ``builder(scale=..., **kwargs)`` returns the model; ``defaults`` are the keyword arguments that
    make the paper's main configuration; ``scales`` the scales it supports.
    """

    name: str
    builder: Callable
    scales: Tuple[int, ...]
    input_convention: str
    citation: str
    description: str
    recipe: TrainingRecipe
    defaults: dict = field(default_factory=dict)
    paper_params: Optional[str] = None

    def build(self, scale, **kwargs):
        return self.builder(scale=scale, **{**self.defaults, **kwargs})


_REGISTRY = {}
_SEQUENCE = {}          # name -> registration count, for a stable listing order

#: The model files, in the papers' chronological order: importing one registers its networks.
_PAPERS = ("srcnn", "fsrcnn", "vdsr", "drcn", "red", "drrn", "srdensenet", "srresnet", "edsr")


def register(name, scales, input_convention, citation, description, recipe, *, defaults=None, paper_params=None):
    """Class (or function) decorator: enter a network into the registry under ``name``.

    Each model file decorates its architecture with its paper's entry (BasicSR's
    ``@ARCH_REGISTRY.register()``)::

        @register("vdsr", (2, 3, 4), "bicubic-y", "Kim, Lee, Lee ... CVPR 2016", "20 3x3 convs ...",
                  TrainingRecipe(data="T91 + BSD200", patch_size=41, ...))
        class VDSR(SRModel): ...

    The decorated object is the builder: ``builder(scale=..., **kwargs)`` returns the network.  Two
    entries may share a class (EDSR's baseline and full configurations differ in ``defaults``).  A name
    that another builder already holds raises ``ValueError``.  Returns the object unchanged.
    """
    def add(builder):
        old = _REGISTRY.get(name)
        if old is not None and (old.builder.__module__, old.builder.__qualname__) != \
                (builder.__module__, builder.__qualname__):
            raise ValueError(f"model {name!r} is already registered (by {_REGISTRY[name].builder.__qualname__})")
        _SEQUENCE.setdefault(name, len(_SEQUENCE))
        _REGISTRY[name] = ModelSpec(name, builder, tuple(scales), input_convention, citation, description, recipe,
                                    dict(defaults or {}), paper_params)
        return builder
    return add


def _registered():
    """The registry, with every model file imported (each registers its own networks)."""
    import importlib
    for module in _PAPERS:
        importlib.import_module(f"{__package__}.{module}")

    def order(item):
        # papers in chronological order, a file's entries in the order they are registered (stacked
        # decorators apply bottom-up), networks registered elsewhere last
        module = item[1].builder.__module__.rsplit(".", 1)[-1]
        return (_PAPERS.index(module) if module in _PAPERS else len(_PAPERS)), _SEQUENCE[item[0]]
    return dict(sorted(_REGISTRY.items(), key=order))


def registry():
    """``{name: ModelSpec}`` of every network (a copy)."""
    return dict(_registered())


def list_models():
    """The registered model names, in the papers' chronological order."""
    return list(_registered())


def get_spec(name):
    """The :class:`ModelSpec` of ``name``; unknown names raise ``ValueError`` listing the valid ones."""
    key = str(name).lower().replace("-", "_")
    known = _registered()
    if key not in known:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(known)}")
    return _REGISTRY[key]


def build(name, scale=None, **kwargs):
    """Build the network ``name`` for ``scale`` with the paper's configuration (``kwargs`` override it).

    ``scale`` defaults to the first supported scale of the model. An unsupported scale raises
    ``ValueError`` naming the supported ones. Examples::

        build("srcnn", scale=3, variant="9-5-5", padding="same")
        build("fsrcnn", scale=2, d=32, s=5, m=1)      # FSRCNN-s
        build("drrn", scale=4, units=9)               # B1U9
    """
    spec = get_spec(name)
    if scale is None:
        scale = spec.scales[0]
    if scale not in spec.scales:
        raise ValueError(f"{spec.name} supports scales {', '.join(f'x{s}' for s in spec.scales)}; got x{scale}")
    model = spec.build(scale, **kwargs)
    # Remember how the network was made, so that a checkpoint of it (tinysr.train, save_weights) can
    # name what rebuilds it even when the module itself is what the user passes around.
    model.build_name, model.build_kwargs = spec.name, dict(kwargs)
    return model
