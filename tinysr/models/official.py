"""Import public pretrained weights into tinysr models, and the protocols that reproduce their PSNR.

Formats read (see ``shared/reference-weights/README.md`` for each file's provenance and layout):

The byte-level readers live in :mod:`tinysr.readers` (re-exported here); this module maps
what they return onto tinysr models:

* ``.npz`` -- the README's conversions (and tinysr's own files), read without pickle;
* ``.mat`` -- the SRCNN and FSRCNN authors' MATLAB files and VDSR's MatConvNet file, via SciPy;
* ``.pth`` -- PyTorch pickles (legacy and zip formats), read **without torch** by
  :class:`RestrictedUnpickler`, which admits only the globals that rebuild tensors;
* ``.params`` -- MXNet NDArray lists (the DRRN port).

``load_official(name, path, scale=...)`` builds the right model (replicate borders for the
SRCNN/FSRCNN author weights, shared PReLU, DRRN's after-ReLU skip, bias-free VDSR for the PyTorch
port) and loads the weights. :func:`evaluate_official` then scores it under the protocol that the
weights' source used (:data:`PROTOCOLS`), so that the numbers can be compared with what it reports.

Why pickles are dangerous, and how the readers stay memory-safe on crafted files: see
:mod:`tinysr.readers`.
"""
import math
from pathlib import Path

import numpy as np

from ..readers import (ModuleStub, RestrictedUnpickler, UnsafePickleError, WeightsFileError, read_mat,
                      read_mxnet_params, read_npz, read_torch_file, state_dict_of)
from .registry import build

__all__ = ["load_official", "read_weights", "read_torch_file", "read_mxnet_params", "RestrictedUnpickler",
           "UnsafePickleError", "WeightsFileError", "evaluate_official", "prepare_pair", "PROTOCOLS"]


# ---------------------------------------------------------------------------------------------------
# MATLAB layouts -> OIHW
# ---------------------------------------------------------------------------------------------------

def _taps(column, k):
    """One MATLAB filter stored as a column of k*k taps (column-major) -> (k, k) with rows = image y."""
    return np.asarray(column, dtype=np.float64).reshape(k, k, order="F")


def _mat_conv(w, k):
    """``[in, k*k, out]`` (SRCNN/FSRCNN authors' layout) -> OIHW ``(out, in, k, k)``."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 2:
        w = w[:, :, None] if k * k == w.shape[1] else w[:, None, :]
    cin, _, cout = w.shape
    return np.stack([np.stack([_taps(w[i, :, o], k) for i in range(cin)]) for o in range(cout)])


def _srcnn_from_mat(m):
    k1 = int(round(math.sqrt(m["weights_conv1"].shape[0])))
    w2 = np.asarray(m["weights_conv2"])
    k2 = 1 if w2.ndim == 2 else int(round(math.sqrt(w2.shape[1])))
    k3 = int(round(math.sqrt(m["weights_conv3"].shape[1])))
    w1 = m["weights_conv1"]   # [81, 64]: column i is filter i
    return {"conv1.weight": np.stack([_taps(w1[:, o], k1) for o in range(w1.shape[1])])[:, None],
            "conv1.bias": m["biases_conv1"].ravel(),
            "conv2.weight": _mat_conv(w2 if w2.ndim == 3 else w2[:, None, :], k2),
            "conv2.bias": m["biases_conv2"].ravel(),
            "conv3.weight": np.stack([_taps(m["weights_conv3"][i], k3) for i in range(m["weights_conv3"].shape[0])])[None],
            "conv3.bias": m["biases_conv3"].ravel()}


def _fsrcnn_from_mat(m):
    ws, bs, ps = (m[k].ravel() for k in ("weights_conv", "biases_conv", "prelu_conv"))
    n = len(ws)
    names = ["feature", "shrink"] + [f"map{i}" for i in range(1, n - 3)] + ["expand"]
    out = {}
    for i, name in enumerate(names):
        w = np.asarray(ws[i])
        k = int(round(math.sqrt(w.shape[1])))
        out[f"{name}.weight"] = _mat_conv(w, k)
        out[f"{name}.bias"] = np.asarray(bs[i]).ravel()
        out[f"{name}.prelu"] = np.asarray(ps[i]).ravel()
    wd = np.asarray(ws[-1])          # [1, 81, d]: filter of input channel c is reshape(w(1,:,c), 9, 9)
    out["deconv.weight"] = np.stack([_taps(wd[0, :, c], 9) for c in range(wd.shape[2])])[:, None]
    out["deconv.bias"] = np.asarray(bs[-1]).ravel()
    return out


def _vdsr_from_mat(m):
    model = m["model"][0, 0]
    ws, bs = model["weight"].ravel(), model["bias"].ravel()
    out = {}
    for i, (w, b) in enumerate(zip(ws, bs), start=1):
        w = np.asarray(w, dtype=np.float64)
        if w.ndim == 3:
            w = w[..., None]       # MATLAB drops the trailing singleton of [3, 3, 64, 1]
        out[f"conv{i}.weight"] = np.transpose(w, (3, 2, 0, 1))   # [h, w, in, out] -> OIHW
        out[f"conv{i}.bias"] = np.asarray(b).ravel()
    return out


# ---------------------------------------------------------------------------------------------------
# reading any file into a raw {name: array} dict (in the source's own names)
# ---------------------------------------------------------------------------------------------------

def read_weights(path, kind=None):
    """Read a weights file into ``{name: float32 ndarray}`` in the *source's* names.

    ``.npz``: :func:`~tinysr.readers.read_npz` (no pickle); ``.mat``: ``kind`` (``"srcnn"``,
    ``"fsrcnn"``, ``"vdsr"``) picks the layout; ``.pth``: :func:`read_torch_file` (a ``{"model": module}``
    pickle is read with module stubs and turned into its state dict); ``.params``: MXNet. A file whose
    contents do not fit its format or the layout raises :class:`WeightsFileError`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        raw = read_npz(path)
    elif suffix == ".mat":
        m = read_mat(path)
        if kind is None:
            kind = "vdsr" if "model" in m else "fsrcnn" if "weights_conv" in m else "srcnn"
        layouts = {"srcnn": _srcnn_from_mat, "fsrcnn": _fsrcnn_from_mat, "vdsr": _vdsr_from_mat}
        if kind not in layouts:
            raise ValueError(f"unknown .mat layout {kind!r}; use one of {sorted(layouts)}")
        try:
            raw = layouts[kind](m)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as e:
            raise WeightsFileError.bad(path, f"the {kind.upper()} authors' .mat layout",
                                       f"{type(e).__name__}: {e}") from None
    elif suffix in (".pth", ".pt"):
        obj = read_torch_file(path, module_stubs=True, extra_classes={("vdsr", "Net"), ("vdsr", "Conv_ReLU_Block")})
        if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], ModuleStub):
            try:
                obj = state_dict_of(obj["model"])
            except ValueError as e:
                raise WeightsFileError.bad(path, "a pickled module tree", str(e)) from None
        elif isinstance(obj, dict) and "state_dict" in obj:
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise WeightsFileError.bad(path, "a state dict", f"a {type(obj).__name__}")
        raw = dict(obj)
    elif suffix == ".params":
        raw = {k.split(":", 1)[-1]: v for k, v in read_mxnet_params(path).items()}
        if set(raw) == {f"learned_{i}" for i in range(4)}:   # the zoo's DRRN export
            raw = dict(zip(["input.weight", "conv1.weight", "conv2.weight", "output.weight"],
                           (raw[f"learned_{i}"] for i in range(4))))
    else:
        raise ValueError(f"{path}: unknown weights format {suffix!r} (use .npz, .mat, .pth or .params)")
    bad = [k for k, v in raw.items() if np.asarray(v).dtype.kind not in "biuf"]
    if bad:
        raise WeightsFileError.bad(path, "numeric tensors only", f"{bad[0]!r} holding a "
                                   f"{type(raw[bad[0]]).__name__}")
    return {k: np.asarray(v, dtype=np.float32) for k, v in raw.items()}


# ---------------------------------------------------------------------------------------------------
# source names -> tinysr models
# ---------------------------------------------------------------------------------------------------

def _srcnn_model(raw, scale, **kw):
    k2 = raw["conv2.weight"].shape[-1]
    model = build("srcnn", scale=scale, variant=f"9-{k2}-5", n1=raw["conv1.weight"].shape[0],
                  n2=raw["conv2.weight"].shape[0], **{"padding": "same", "padding_mode": "replicate", **kw})
    state = {"patch_extraction.weight": raw["conv1.weight"], "patch_extraction.bias": raw["conv1.bias"],
             "non_linear_mapping.weight": raw["conv2.weight"], "non_linear_mapping.bias": raw["conv2.bias"],
             "reconstruction.weight": raw["conv3.weight"], "reconstruction.bias": raw["conv3.bias"]}
    return model, state


def _fsrcnn_model(raw, scale, **kw):
    if "first_part.0.weight" in raw:           # yjn870 PyTorch port: per-channel PReLU, zero padding
        m = (len([k for k in raw if k.startswith("mid_part.") and k.endswith(".bias")]) - 2)
        d, s = raw["first_part.0.weight"].shape[0], raw["mid_part.0.weight"].shape[0]
        # yjn870's ConvTranspose2d(padding=4, output_padding=scale-1), not tinysr's centred default
        model = build("fsrcnn", scale=scale, d=d, s=s, m=m, **{"prelu": "channel", "padding_mode": "zeros",
                                                                "deconv_padding": 4, **kw})
        state = {"feature_extraction.0.weight": raw["first_part.0.weight"],
                 "feature_extraction.0.bias": raw["first_part.0.bias"],
                 "feature_extraction.1.weight": raw["first_part.1.weight"],
                 "shrinking.0.weight": raw["mid_part.0.weight"], "shrinking.0.bias": raw["mid_part.0.bias"],
                 "shrinking.1.weight": raw["mid_part.1.weight"]}
        for i in range(m):
            j = 2 + 2 * i
            state[f"mapping.{i}.0.weight"] = raw[f"mid_part.{j}.weight"]
            state[f"mapping.{i}.0.bias"] = raw[f"mid_part.{j}.bias"]
            state[f"mapping.{i}.1.weight"] = raw[f"mid_part.{j + 1}.weight"]
        j = 2 + 2 * m
        state.update({"expanding.0.weight": raw[f"mid_part.{j}.weight"], "expanding.0.bias": raw[f"mid_part.{j}.bias"],
                      "expanding.1.weight": raw[f"mid_part.{j + 1}.weight"],
                      "deconvolution.weight": raw["last_part.weight"], "deconvolution.bias": raw["last_part.bias"]})
        return model, state
    m = len([k for k in raw if k.startswith("map") and k.endswith(".weight")])
    d, s = raw["feature.weight"].shape[0], raw["shrink.weight"].shape[0]
    # The authors' x3 files were trained one HR pixel off their own deconv.m placement (their demo
    # compares SR pixel (y-1, x-1) with GT (y, x)); a deconvolution padding of 3 instead of 4 moves the
    # output by that pixel, so tinysr.evaluate / upscale get an aligned image.
    align = {"deconv_padding": 3} if int(scale) == 3 else {}
    model = build("fsrcnn", scale=scale, d=d, s=s, m=m, **{"prelu": "shared", "padding_mode": "replicate",
                                                           **align, **kw})
    parts = [("feature", "feature_extraction"), ("shrink", "shrinking")] + \
            [(f"map{i + 1}", f"mapping.{i}") for i in range(m)] + [("expand", "expanding")]
    state = {}
    for src, dst in parts:
        state[f"{dst}.0.weight"] = raw[f"{src}.weight"]
        state[f"{dst}.0.bias"] = raw[f"{src}.bias"]
        state[f"{dst}.1.weight"] = raw[f"{src}.prelu"].reshape(-1)
    state["deconvolution.weight"] = raw["deconv.weight"]
    state["deconvolution.bias"] = raw["deconv.bias"]
    return model, state


def _vdsr_model(raw, scale, **kw):
    if "input.weight" in raw:                   # twtygqyy PyTorch port: no biases
        n = len([k for k in raw if k.startswith("residual_layer.")])
        weights = [raw["input.weight"]] + [raw[f"residual_layer.{i}.conv.weight"] for i in range(n)] + \
                  [raw["output.weight"]]
        model = build("vdsr", scale=scale, depth=len(weights), bias=False, **kw)
        return model, {f"layers.{i}.weight": w for i, w in enumerate(weights)}
    n = len([k for k in raw if k.endswith(".weight")])
    model = build("vdsr", scale=scale, depth=n, **kw)
    state = {}
    for i in range(n):
        state[f"layers.{i}.weight"] = raw[f"conv{i + 1}.weight"]
        state[f"layers.{i}.bias"] = raw[f"conv{i + 1}.bias"]
    return model, state


def _drrn_model(raw, scale, **kw):
    kw = {"skip": "relu", "units": 25, **kw}
    model = build("drrn", scale=scale, blocks=1, channels=raw["conv1.weight"].shape[0], **kw)
    state = {"blocks.0.conv_in.weight": raw["input.weight"], "blocks.0.conv1.weight": raw["conv1.weight"],
             "blocks.0.conv2.weight": raw["conv2.weight"], "conv_out.weight": raw["output.weight"]}
    return model, state


def _stages_scale(n_stages, channels, conv_out):
    """The scale of a sub-pixel upsampler from its conv count and widths (x2 stages, or one x3 stage)."""
    r2 = conv_out // channels
    if n_stages == 1 and r2 == 9:
        return 3
    if r2 == 4:
        return 2 ** n_stages
    raise ValueError(f"an upsampler of {n_stages} stage(s) with {conv_out} outputs from {channels} channels")


def _check_scale(scale, found, what):
    if scale is not None and int(scale) != found:
        raise ValueError(f"expected x{scale} weights, found {what} trained for x{found}")


def dcr_to_pixel_shuffle(weight, bias, r):
    """Permute a conv's output channels from depth_to_space's DCR order to :class:`PixelShuffle`'s order.

    TensorFlow/MXNet ``depth_to_space`` reads ``out[c, r*h+i, r*w+j] = in[(r*i + j) * C + c]``, PyTorch's
    ``pixel_shuffle`` ``in[c * r*r + r*i + j]``. Reordering the ``C * r * r`` filters (and biases) of the
    conv before it so that new filter ``c*r*r + k`` is old filter ``k*C + c`` makes the two equal.
    ``weight``: ``(C*r*r, in, kh, kw)``; returns ``(weight, bias)`` permuted.
    """
    c = weight.shape[0] // (r * r)
    idx = np.arange(r * r)[None, :] * c + np.arange(c)[:, None]     # [c, k] -> k*C + c
    idx = idx.reshape(-1)
    return weight[idx], (None if bias is None else bias[idx])


def _edsr_model(raw, scale, **kw):
    """krasserm's EDSR (Keras, via the MXNet zoo): mean shift, x' = 2 (x - mean), DCR depth_to_space."""
    n = len([k for k in raw if k.startswith("convolution") and k.endswith("_weight")])
    w = [raw[f"convolution{i}_weight"] for i in range(n)]
    b = [raw[f"convolution{i}_bias"] for i in range(n)]
    channels = w[0].shape[0]
    # head, 2 per block, body's last conv, upsampler convs, tail: the upsampler convs have > channels outputs
    up = [i for i in range(n - 1) if w[i].shape[0] > channels]
    blocks = (up[0] - 2) // 2
    found = _stages_scale(len(up), channels, w[up[0]].shape[0])
    _check_scale(scale, found, f"EDSR ({blocks} blocks)")
    mean = tuple(float(v) for v in raw["DIV2K_mean"].ravel())
    model = build("edsr", scale=found, **{"blocks": blocks, "channels": channels, "res_scale": 1.0,
                                          "rgb_mean": mean, "rgb_range": 2.0, **kw})
    state = {"head.weight": w[0], "head.bias": b[0]}
    for k in range(blocks):
        for j in (1, 2):
            state[f"body.{k}.conv{j}.weight"] = w[2 * k + j]
            state[f"body.{k}.conv{j}.bias"] = b[2 * k + j]
    state[f"body.{blocks}.weight"], state[f"body.{blocks}.bias"] = w[up[0] - 1], b[up[0] - 1]
    r = 3 if found == 3 else 2
    for s_i, i in enumerate(up):
        wi, bi = dcr_to_pixel_shuffle(w[i], b[i], r)
        state[f"upsample.{2 * s_i}.weight"], state[f"upsample.{2 * s_i}.bias"] = wi, bi
    state["tail.weight"], state["tail.bias"] = w[n - 1], b[n - 1]
    return model, state


def _bn(state, dst, raw, src_w, src_b, src_m, src_v):
    state.update({f"{dst}.weight": raw[src_w], f"{dst}.bias": raw[src_b],
                  f"{dst}.running_mean": raw[src_m], f"{dst}.running_var": raw[src_v]})


def _srresnet_model(raw, scale, **kw):
    """PyTorch's demo SRResNet (MXNet zoo: ``convolution*``) or leftthomas's SRGAN generator (``block*``)."""
    if "block1.0.weight" in raw:
        return _srgan_leftthomas(raw, scale, **kw)
    n_conv = len([k for k in raw if k.startswith("convolution") and k.endswith("_weight")])
    n_bn = len([k for k in raw if k.startswith("batchnorm") and k.endswith("_gamma")])
    blocks = (n_bn - 1) // 2
    channels = raw["convolution0_weight"].shape[0]
    up = list(range(2 * blocks + 2, n_conv - 1))
    found = _stages_scale(len(up), channels, raw[f"convolution{up[0]}_weight"].shape[0])
    _check_scale(scale, found, f"SRResNet ({blocks} blocks)")
    model = build("srresnet", scale=found, **{"blocks": blocks, "channels": channels, "bias": False,
                                              "prelu": "channel", "output": "affine", **kw})
    st = {"head.0.weight": raw["convolution0_weight"], "head.0.bias": raw["convolution0_bias"],
          "head.1.weight": raw["leakyrelu0_weight"]}
    for k in range(blocks):
        d = f"residual_blocks.{k}"
        st[f"{d}.conv1.weight"], st[f"{d}.conv2.weight"] = raw[f"convolution{1 + 2 * k}_weight"], \
            raw[f"convolution{2 + 2 * k}_weight"]
        st[f"{d}.prelu.weight"] = raw[f"leakyrelu{1 + k}_weight"]
        for j, bn in ((1, 2 * k), (2, 2 * k + 1)):
            _bn(st, f"{d}.bn{j}", raw, *(f"batchnorm{bn}_{p}" for p in ("gamma", "beta", "moving_mean", "moving_var")))
    st["post_residual.0.weight"] = raw[f"convolution{2 * blocks + 1}_weight"]
    _bn(st, "post_residual.1", raw, *(f"batchnorm{2 * blocks}_{p}" for p in ("gamma", "beta", "moving_mean",
                                                                             "moving_var")))
    for s_i, i in enumerate(up):
        st[f"upsampling.{3 * s_i}.weight"], st[f"upsampling.{3 * s_i}.bias"] = raw[f"convolution{i}_weight"], \
            raw[f"convolution{i}_bias"]
        st[f"upsampling.{3 * s_i + 2}.weight"] = raw[f"leakyrelu{blocks + 1 + s_i}_weight"]
    st["tail.weight"], st["tail.bias"] = raw[f"convolution{n_conv - 1}_weight"], raw[f"convolution{n_conv - 1}_bias"]
    return model, st


def _srgan_leftthomas(raw, scale, **kw):
    """leftthomas/SRGAN's generator: shared PReLU, biases everywhere, conv + PReLU after the body,
    output ``(tanh(y) + 1) / 2``."""
    blocks = len([k for k in raw if k.endswith(".conv1.weight")])
    channels = raw["block1.0.weight"].shape[0]
    last = blocks + 2                                   # block7 (conv + PReLU) follows blocks 2 .. blocks+1
    tail_key = f"block{last + 1}"
    stages = len([k for k in raw if k.startswith(tail_key + ".") and k.endswith(".conv.weight")])
    found = _stages_scale(stages, channels, raw[f"{tail_key}.0.conv.weight"].shape[0])
    _check_scale(scale, found, f"SRGAN generator ({blocks} blocks)")
    model = build("srresnet", scale=found, **{"blocks": blocks, "channels": channels, "prelu": "shared",
                                              "post_residual": "prelu", "output": "tanh", **kw})
    st = {"head.0.weight": raw["block1.0.weight"], "head.0.bias": raw["block1.0.bias"],
          "head.1.weight": raw["block1.1.weight"]}
    for k in range(blocks):
        src, d = f"block{k + 2}", f"residual_blocks.{k}"
        for name in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "prelu.weight"):
            st[f"{d}.{name}"] = raw[f"{src}.{name}"]
        for bn in ("bn1", "bn2"):
            _bn(st, f"{d}.{bn}", raw, *(f"{src}.{bn}.{p}" for p in ("weight", "bias", "running_mean", "running_var")))
    st.update({"post_residual.0.weight": raw[f"block{last}.0.weight"], "post_residual.0.bias": raw[f"block{last}.0.bias"],
               "post_residual.1.weight": raw[f"block{last}.1.weight"]})
    for i in range(stages):
        st[f"upsampling.{3 * i}.weight"] = raw[f"{tail_key}.{i}.conv.weight"]
        st[f"upsampling.{3 * i}.bias"] = raw[f"{tail_key}.{i}.conv.bias"]
        st[f"upsampling.{3 * i + 2}.weight"] = raw[f"{tail_key}.{i}.prelu.weight"]
    st["tail.weight"], st["tail.bias"] = raw[f"{tail_key}.{stages}.weight"], raw[f"{tail_key}.{stages}.bias"]
    return model, st


def _drcn_model(raw, scale, **kw):
    """jiny2001's TensorFlow DRCN (the .npz of its checkpoint): pixels in 0..255, no skip, the input
    concatenated into the last reconstruction conv, ReLU on every output, normalised ensemble weights."""
    channels = raw["W_conv"].shape[0]
    recursions = raw["LayerWeights"].shape[0]
    concat = raw["WD2_conv_1"].shape[1] == channels + 1
    model = build("drcn", scale=scale, **{"recursions": recursions, "channels": channels, "skip": False,
                                          "concat_input": concat, "output_relu": True,
                                          "normalise_ensemble": True, "value_range": 255.0, **kw})
    st = {"embedding.0.weight": raw["W-1_conv/conv_W_1"], "embedding.0.bias": raw["W-1_conv/conv_B"],
          "embedding.2.weight": raw["W0_conv/conv_W_1"], "embedding.2.bias": raw["W0_conv/conv_B"],
          "inference.weight": raw["W_conv"], "inference.bias": raw["B"],
          "reconstruction.0.weight": raw["WD1_conv_1"], "reconstruction.0.bias": raw["BD1"],
          "reconstruction.2.weight": raw["WD2_conv_1"], "reconstruction.2.bias": raw["BD2"],
          "ensemble_weights": raw["LayerWeights"]}
    return model, st


def _vgg_normalised_model(raw, scale, layer="relu2_2", **kw):
    from .vgg import load_vgg19_normalised
    return load_vgg19_normalised(raw, layer=layer, **kw), None


_IMPORTERS = {"srcnn": _srcnn_model, "fsrcnn": _fsrcnn_model, "vdsr": _vdsr_model, "drrn": _drrn_model,
              "drcn": _drcn_model, "srresnet": _srresnet_model, "srgan": _srresnet_model, "edsr": _edsr_model,
              "vgg19_normalised": _vgg_normalised_model}

#: what each importer expects, for the one-sentence error when a file holds something else
_EXPECTED = {"srcnn": "SRCNN (keys conv1..conv3)", "fsrcnn": "FSRCNN (keys feature/shrink/map/expand/deconv or "
             "first_part/mid_part/last_part)", "vdsr": "VDSR (keys conv1..conv20 or input/residual_layer/output)",
             "drrn": "DRRN (keys input/conv1/conv2/output)", "drcn": "jiny2001's DRCN (keys W-1_conv/..., W_conv, "
             "WD1_conv_1, WD2_conv_1, LayerWeights)", "srresnet": "SRResNet (keys convolution*/batchnorm*/leakyrelu*) "
             "or leftthomas's SRGAN generator (keys block1 ... block8)", "srgan": "leftthomas's SRGAN generator "
             "(keys block1 ... block8) or SRResNet (keys convolution*/batchnorm*)", "edsr": "krasserm's EDSR "
             "(keys DIV2K_mean, convolution0..N)", "vgg19_normalised": "a Gatys-normalised VGG-19 (keys 0, 2, 5, 9, 12)"}


def load_official(name, path, scale=None, **kwargs):
    """Build ``name`` configured like the weights' source and load the weights from ``path``.

    Supported: ``srcnn`` (authors' .mat / README .npz; replicate 'same' borders), ``fsrcnn`` (authors'
    .mat/.npz: shared PReLU, replicate borders; yjn870 .pth/.npz: per-channel PReLU, zero borders),
    ``vdsr`` (MatConvNet .mat / .npz; twtygqyy .pth/.npz without biases), ``drrn`` (MXNet .params /
    .npz; B1U25 with the after-ReLU skip, ``units=9`` to run the same weights with 9 recursions).
    ``kwargs`` override the model's configuration. Returns the model in eval mode.
    """
    key = str(name).lower()
    if key not in _IMPORTERS:
        raise ValueError(f"no public weights importer for {name!r}; available: {', '.join(_IMPORTERS)}")
    raw = read_weights(path, kind=key if Path(path).suffix.lower() == ".mat" else None)
    if scale is None and key in ("srcnn", "fsrcnn", "vdsr", "drrn"):
        scale = 3
    if scale is None and key == "drcn":
        scale = 2
    try:
        model, state = _IMPORTERS[key](raw, scale, **kwargs)
        if state is not None:
            _check_shapes(model, state)
            params = {k for k, _ in model.named_parameters()}
            # buffers the file does not hold (EDSR's mean shift, set from the file by the constructor) stay
            state = {**{k: v for k, v in model.state_dict().items() if k not in params}, **state}
            model.load_state_dict(state)
    except (KeyError, IndexError, ValueError) as e:
        found = ", ".join(sorted(raw)[:5]) + (", ..." if len(raw) > 5 else "")
        why = e.args[0] if isinstance(e, ValueError) and e.args else f"missing {e}"
        raise WeightsFileError(f"{path} is not {_EXPECTED[key]} weights{'' if scale is None else f' for x{scale}'}: "
                         f"{why}; found keys {found}.") from None
    return model.eval()


def _check_shapes(model, state):
    own = dict(model.state_dict())
    for k, v in state.items():
        if k not in own:
            raise ValueError(f"no parameter {k} in the configured {type(model).__name__}")
        if tuple(np.shape(v)) != tuple(np.shape(own[k])):
            raise ValueError(f"{k} has shape {tuple(np.shape(v))}, the configured {type(model).__name__} "
                             f"expects {tuple(np.shape(own[k]))}")


# ---------------------------------------------------------------------------------------------------
# the sources' evaluation protocols
# ---------------------------------------------------------------------------------------------------

#: What each protocol does (shared/reference-weights/README.md), by name.
PROTOCOLS = {
    "srcnn": "SRCNN demo_SR.m: Y = uint8 rgb2ycbcr, modcrop, /255; LR = imresize(Y, 1/s), input = imresize(LR, s) "
             "(unrounded doubles); output rounded to uint8; s px shaved; PSNR on Y",
    "fsrcnn": "FSRCNN demo_FSRCNN.m: as srcnn but the input is the LR Y; x3 compares SR[2:-4] with GT[3:-3] "
              "(the authors' shave_x3 one-pixel offset)",
    "vdsr": "huangzehao Demo_SR_Conv.m: LR = imresize(uint8 RGB, 1/s) (uint8); Y from double rgb2ycbcr, "
            "unrounded; input = imresize(Y_lr, s); output not rounded; s px shaved",
    "pytorch": "twtygqyy / jt827859032 eval.py: GT Y = double rgb2ycbcr, unrounded; input = imresize(imresize(Y, 1/s), s) "
               "in double; output clipped to [0, 1], not rounded; s px shaved; modcrop applied cumulatively "
               "for 2..s",
    "yjn870": "yjn870 FSRCNN test.py: HR = Pillow bicubic resize of the RGB image to the modcropped size, LR = Pillow "
              "bicubic downscale, Y = 16 + (64.738 R + 129.057 G + 25.064 B) / 256 in float32, output clamped to "
              "[0, 1], no shave, PSNR = 10 log10(1 / MSE)",
}


def prepare_pair(hr, scale, protocol):
    """``(network_input (H', W'), ground_truth_Y (H, W) in [0, 1])`` for one HR image.

    ``hr`` is the uint8 HR image ``(H, W, 3)`` or grayscale ``(H, W)``; see :data:`PROTOCOLS`.  The
    pipelines themselves live in :func:`tinysr.data.protocol.prepare`: ``"srcnn"`` and ``"fsrcnn"``
    are its ``"matlab"`` protocol for a ``bicubic-y`` and an ``lr-y`` network, the others its own
    protocols of the same name.
    """
    from ..data.protocol import prepare
    if protocol in ("srcnn", "fsrcnn"):
        inp, y = prepare(hr, scale, "bicubic-y" if protocol == "srcnn" else "lr-y")
        return inp, y.astype(np.float64) / 255.0
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return prepare(hr, scale, "lr-y" if protocol == "yjn870" else "bicubic-y", protocol=protocol)


def _run(model, inp):
    from ..autograd import Tensor, no_grad
    with no_grad():
        out = model(Tensor(inp[None, None].astype(np.float32)))
    return np.asarray(out.data[0, 0], dtype=np.float64)


def score_pair(sr, gt, scale, protocol, aligned=False):
    """PSNR (dB) of one SR Y against the GT Y (both ``[0, 1]``) under ``protocol``.

    ``aligned``: for the FSRCNN authors' x3 protocol, the SR comes from a network whose output is already
    moved by the pixel that the authors' ``shave_x3`` compensates (tinysr's import of their x3 files):
    then SR[3:-3] is compared with GT[3:-3], which are the same pixels as their SR[2:-4].

    The author protocols round the SR to 8 bits and use :func:`tinysr.metrics.psnr`; the VDSR and
    PyTorch protocols compare unrounded values (``20 log10(255 / RMSE)`` on Y x 255), which the
    standard metric deliberately does not do.
    """
    from ..metrics import psnr
    s = int(scale)
    if protocol in ("srcnn", "fsrcnn"):
        sr8 = np.clip(np.floor(sr * 255.0 + 0.5), 0, 255).astype(np.uint8)
        gt8 = np.clip(np.floor(gt * 255.0 + 0.5), 0, 255).astype(np.uint8)
        if protocol == "fsrcnn" and s == 3 and not aligned:
            h, w = gt8.shape
            return psnr(sr8[2:h - 4, 2:w - 4], gt8[3:h - 3, 3:w - 3], s, border=0)
        return psnr(sr8, gt8, s)
    if protocol == "yjn870":
        sr = np.clip(sr.astype(np.float32), 0.0, 1.0)
        return float(10.0 * math.log10(1.0 / np.mean((gt.astype(np.float32) - sr) ** 2)))
    if protocol == "pytorch":
        sr = np.clip(sr, 0.0, 1.0)
    a, b = sr[s:-s, s:-s] * 255.0, gt[s:-s, s:-s] * 255.0
    return float(20.0 * math.log10(255.0 / math.sqrt(np.mean((a - b) ** 2))))


def evaluate_official(model, images, scale, protocol, crop=None):
    """Mean PSNR of ``model`` over ``images`` (uint8 HR arrays) under ``protocol``; returns
    ``(mean, [per-image PSNR])``. ``crop`` (pixels) limits each HR image to its top-left
    ``crop x crop`` corner first, for cheap checks of the expensive networks.
    """
    scores = []
    # the authors' x3 offset applies to their own deconvolution placement (padding 4) only
    aligned = getattr(model, "deconv_padding", 4) != 4
    for hr in images:
        if crop is not None:
            hr = hr[:crop, :crop]
        inp, gt = prepare_pair(hr, scale, protocol)
        scores.append(score_pair(_run(model, inp), gt, scale, protocol, aligned=aligned))
    return float(np.mean(scores)), scores
