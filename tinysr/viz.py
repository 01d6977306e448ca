"""Pictures of networks, drawn from the networks themselves.

:func:`draw_architecture` turns a Module into the kind of diagram the papers print: one box per layer,
top to bottom in the order the data flows, grouped under the names the paper gives its parts.  Nothing
is typed in by hand -- the picture is read off the model in two ways:

1. **the module tree** (``model.named_modules()``): every *leaf* module (one without sub-modules) is a
   layer -- ``Conv2d``, ``ConvTranspose2d``, ``PReLU``, ``BatchNorm2d``, ``PixelShuffle`` ... -- and
   the first part of its dotted name (``"mapping"`` in ``"mapping.2.0"``) is the paper's part it
   belongs to, because the model files name their attributes after the paper;
2. **one tiny forward pass** whose autograd graph is then walked backwards (the same graph that
   ``backward()`` walks).  This sees what the module tree cannot: a ReLU applied as a function in
   ``forward`` (``F.relu`` in SRCNN, or fused into the convolution with ``activation="relu"`` in VDSR,
   drawn as a dashed tag beside its layer, because it is an operation, not a module with state), a module reused several times (DRCN's recursion: "used 16x"),
   a *global residual*: when the last operation adds the network's own input to the result
   (VDSR's ``x + residual``), a skip arc is drawn from the input to a "+" before the output; and the
   *inner skips*: every other sum is traced back to the layer (or earlier sum) whose output it adds
   and forward to the layer that reads it, and drawn as a blue arc into that layer (RED30's symmetric
   skips, EDSR's residual blocks, DRRN's 25 additions of its block input, "x24").

Big networks (more than ``max_layers`` leaves: EDSR, SRResNet, RED30 ...) degrade to a plain stack of
their top-level blocks, with no forward pass.  Only :class:`matplotlib.figure.Figure` is used, never
pyplot, so drawing does not touch the session's backend or open windows::

    import matplotlib.pyplot as plt
    from tinysr.models import build
    from tinysr.viz import draw_architecture
    fig, ax = plt.subplots(1, 2, figsize=(11, 7))
    draw_architecture(build("srcnn", scale=3), ax=ax[0])
    draw_architecture(build("fsrcnn", scale=3), ax=ax[1])

:func:`draw_graph` draws the other picture lesson 0 needs: the autograd graph behind one tensor,
Functions numbered in the order ``backward()`` visits them.
"""
import textwrap

import numpy as np

__all__ = ["draw_architecture", "draw_graph"]

_ACTIVATIONS = ("ReLU", "LeakyReLU", "PReLU", "Sigmoid", "Tanh")
_COLOURS = {"conv": "#9ecae1", "deconv": "#fdae6b", "act": "#e5f5e0", "norm": "#dadaeb", "shuffle": "#fdd0a2",
            "linear": "#c6dbef", "io": "#f0f0f0", "block": "#d9d9d9", "other": "#eeeeee"}
_INPUTS = {"bicubic-y": "input: bicubic-upsampled Y", "lr-y": "input: LR Y", "lr-rgb": "input: LR RGB",
           "hr-rgb": "input: image"}
_OUTPUTS = {"bicubic-y": "output: HR Y", "lr-y": "output: HR Y", "lr-rgb": "output: HR RGB", "hr-rgb": "output"}


def _describe(m):
    """``(kind, label)`` of one leaf layer: its kind picks the colour, the label says kernel and channels."""
    t = type(m).__name__
    if t == "Conv2d":
        (kh, kw), (s, _) = m.kernel_size, m.stride
        return "conv", f"conv {kh}x{kw}, {m.in_channels}->{m.out_channels}" + (f", stride {s}" if s != 1 else "")
    if t == "ConvTranspose2d":
        (kh, kw), (s, _) = m.kernel_size, m.stride
        return "deconv", f"deconv {kh}x{kw}, {m.in_channels}->{m.out_channels}, upsample x{s}"
    if t == "PReLU":
        n = m.num_parameters
        return "act", "PReLU (one slope)" if n == 1 else f"PReLU ({n} slopes)"
    if t in _ACTIVATIONS:
        return "act", t
    if t == "BatchNorm2d":
        return "norm", f"BatchNorm {m.num_features}"
    if t == "PixelShuffle":
        return "shuffle", f"pixel shuffle x{m.upscale_factor}"
    if t == "Linear":
        return "linear", f"linear {m.in_features}->{m.out_features}"
    return "other", t


def _trace(model, leaves):
    """Run one small forward pass and read its autograd graph.

    Returns ``(activation_after, uses, residual, skips)``: the functional activation (``"ReLU"`` ...)
    that directly consumes each leaf's output, how many times each leaf ran, whether the output is
    ``input + something``, and the inner skip connections ``{(source, target): count}`` -- every sum
    inside the network that adds an earlier layer's output (or the input, ``" in"``) to a later path,
    named by the layer whose output is added and the layer that receives the sum (``" out"``: the
    output).  Returns None when no probe size suits the model.
    """
    probe = _probe(model, leaves)
    if probe is None:
        return None
    x, out, made_by, uses = probe
    after, consumers, adds = _walk(out, made_by)
    top = out.creator
    residual = type(top).__name__ == "Add" and any(i is x for i in getattr(top, "inputs", ()))
    skips = _inner_skips(adds, consumers, made_by, x, top, residual)
    return after, uses, residual, skips


def _probe(model, leaves):
    """One forward pass with every leaf's ``forward`` wrapped to record what it made.

    Returns ``(x, out, made_by, uses)``: the probe input, the output tensor, ``{id(Function): leaf
    name}`` for the Function that produced each leaf's output, and ``{leaf name: calls}``; None when
    no probe size suits the model.  The wrappers are instance attributes and are deleted afterwards,
    and the model runs in eval mode (BatchNorm must not update its running statistics).
    """
    from . import backend
    from .autograd import Tensor, enable_grad
    made_by, uses = {}, {}

    def wrap(name, m):
        original = m.forward

        def recorded(*args, **kwargs):
            y = original(*args, **kwargs)
            uses[name] = uses.get(name, 0) + 1
            if isinstance(y, Tensor) and y.creator is not None:
                made_by[id(y.creator)] = name
            return y
        m.forward = recorded           # an instance attribute shadows the class's forward; del restores it

    for name, m in leaves:
        wrap(name, m)
    was_training = model.training
    model.eval()
    try:
        sizes = [getattr(model, "input_size", None)] if getattr(model, "input_size", None) else [8, 24, 64]
        channels = int(getattr(model, "in_channels", 1) or 1)
        for size in sizes:
            made_by.clear()
            uses.clear()
            x = np.random.default_rng(0).random((1, channels, size, size)).astype(np.float32)
            x = Tensor(backend.to_device(x, model.device), requires_grad=True)   # so every op is recorded
            try:
                with enable_grad():
                    out = model(x)
                break
            except Exception:          # too small for valid convolutions, a fixed-size classifier ...
                continue
        else:
            return None
    finally:
        for _, m in leaves:
            del m.forward
        model.train(was_training)
    out = out[0] if isinstance(out, (tuple, list)) else out
    return x, out, made_by, uses


def _walk(out, made_by):
    """Visit every Function that led to ``out`` once; returns ``(after, consumers, adds)``.

    ``after``: ``{leaf name: activation}`` for a functional activation (``F.relu``: not made by a
    leaf) that reads a leaf's output; ``consumers``: ``{id(Function): [Functions that read one of
    its outputs]}``; ``adds``: every ``Add`` in the graph.
    """
    after, stack, seen, consumers, adds = {}, [out.creator], set(), {}, []
    while stack:
        f = stack.pop()
        if f is None or id(f) in seen:
            continue
        seen.add(id(f))
        inputs = getattr(f, "inputs", ())
        if type(f).__name__ in _ACTIVATIONS and id(f) not in made_by and inputs:
            src = made_by.get(id(getattr(inputs[0], "creator", None)))
            if src is not None:
                after[src] = type(f).__name__
        elif getattr(f, "relu", False) and id(f) in made_by:      # conv2d(..., activation="relu"): one op
            after[made_by[id(f)]] = "ReLU"
        if type(f).__name__ == "Add":
            adds.append(f)
        for i in inputs:
            c = getattr(i, "creator", None)
            if c is not None:
                consumers.setdefault(id(c), []).append(f)
        stack.extend(getattr(i, "creator", None) for i in inputs)
    return after, consumers, adds


def _inner_skips(adds, consumers, made_by, x, top, residual):
    """``{(source layer, target layer): count}`` for the sums inside a network (see :func:`_trace`)."""
    from .nn import Parameter

    def source(node):
        # back from a sum's operand, through single-input operations (ReLU, scaling), to the layer
        # (or the network input) that made it -- or to an earlier sum, named "^<layer>" after the layer
        # that reads that sum (a chain of residual blocks: each block's input is the previous sum)
        for _ in range(64):
            if node is x:
                return " in"
            c = getattr(node, "creator", None)
            if c is None:
                return None
            if id(c) in made_by:
                return made_by[id(c)]
            if type(c).__name__ == "Add":
                t = target(c)
                return None if t == " out" else "^" + t
            flowing = [i for i in getattr(c, "inputs", ()) if getattr(i, "requires_grad", False)
                       and not isinstance(i, Parameter)]
            if len(flowing) != 1:
                return None
            node = flowing[0]
        return None

    def target(f):
        # forward from a sum to the first layer that reads it (or the output)
        frontier, seen = [f], set()
        while frontier:
            g = frontier.pop(0)
            if id(g) in seen:
                continue
            seen.add(id(g))
            for h in consumers.get(id(g), []):
                if id(h) in made_by:
                    return made_by[id(h)]
                frontier.append(h)
        return " out"

    result = {}
    for f in adds:
        if residual and f is top:
            continue                   # the global residual has its own arc
        a, b = (source(i) for i in getattr(f, "inputs", ())[:2])
        if a is None or b is None or a == b:
            continue
        key = (a, b, target(f))
        result[key] = result.get(key, 0) + 1
    return result


def draw_architecture(model, ax=None, title=None, *, max_layers=48, fontsize=7):
    """Draw ``model``'s layer stack, top (input) to bottom (output); returns the matplotlib Figure.

    Parameters
    ----------
    model : a :class:`tinysr.nn.Module`, typically ``tinysr.models.build(name, scale=...)``.
    ax : a matplotlib Axes to draw into (e.g. one of ``plt.subplots(1, 2)`` for a side-by-side
        comparison); None makes a new :class:`matplotlib.figure.Figure` sized to the network.
    title : the Axes title; default: class name, parameter count, receptive field, scale.
    max_layers : above this many leaf layers the model is drawn as a plain stack of its top-level
        blocks (one box each, with its layer and parameter counts).
    fontsize : of the box labels, in points.

    How to read it: solid boxes are modules (they hold weights or state); a dashed tag beside a box
    is an activation applied as a function in ``forward`` right after that layer; the bracket on the
    left names the paper's part and its parameter count -- which shows at a glance where a network
    spends its parameters (FSRCNN's four mapping layers hold only ~40 %: they see 12 channels);
    an arc on the right is a global residual connection (red) or an inner skip connection (blue,
    ending in a "+" above the layer that reads the sum; gid ``"skip:<from>-><to>"``).  Each layer box carries the matplotlib
    ``gid`` ``"layer:<dotted name>"`` (functional tags ``"activation:<name>"``, blocks of the plain
    stack ``"block:<name>"``, the skip arc ``"skip"``), which is how the tests count them.
    """
    from matplotlib.figure import Figure

    leaves = [(n, m) for n, m in model.named_modules() if n and not m._modules] or [(type(model).__name__, model)]
    plain = len(leaves) > max_layers
    items, (after, uses, residual, skips) = _layer_items(model, leaves, plain)
    conv = getattr(model, "input_convention", None)
    # " in", " out", " plus": keys that no module name can take (dotted names have no spaces)
    flow = [(" in", "io", _INPUTS.get(conv, "input"), None, None), *items,
            (" out", "io", _OUTPUTS.get(conv, "output"), None, None)]
    boxes, bottom = _stack_boxes(flow, residual)
    if ax is None:
        fig = Figure(figsize=(5.6, 0.5 * (0.9 - bottom) + 0.5))
        ax = fig.add_subplot()
        fig.subplots_adjust(left=0.02, right=0.98, top=1 - 0.35 / fig.get_figheight(), bottom=0.02)
    fig = ax.figure
    rows = {b[0]: b for b in boxes}
    _draw_layer_boxes(ax, flow, rows, uses, after, plain, fontsize)
    x_global = _draw_inner_skips(ax, boxes, rows, skips, fontsize)
    if residual:
        _draw_global_residual(ax, rows, x_global, fontsize)
    for a, b in zip(boxes[:-1], boxes[1:]):                # the data flow, box to box
        ax.add_patch(_arrow((_CX, a[3]), (_CX, b[2])))
    if not plain:
        _draw_part_brackets(ax, model, items, rows, fontsize)
    ax.set_title(title if title is not None else _default_title(model, plain, len(leaves)), fontsize=fontsize + 2)
    ax.set_xlim(0, max(10.3, x_global + 0.9))
    ax.set_ylim(bottom - 0.1, 0.25)
    ax.set_aspect("equal", adjustable="box", anchor="N")
    ax.axis("off")
    return fig


_CX, _STEP = 5.4, 0.3              # box centre x, gap (arrow length) between boxes
_HEIGHTS = {"conv": 0.5, "deconv": 0.6, "linear": 0.5, "block": 0.6, "io": 0.45}
_ARC_X0, _ARC_GAP = 8.8, 0.13      # the first inner-skip column, and the distance between nested columns


def _arrow(start, end):
    from matplotlib.patches import FancyArrowPatch
    return FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=8, lw=0.8, color="#333333",
                           shrinkA=0, shrinkB=0)


def _layer_items(model, leaves, plain):
    """The boxes to draw, ``(name, kind, label, part, module)`` each, and what the probe found.

    ``plain``: one box per top-level block, no forward pass; else one box per leaf layer and the
    traced ``(activation_after, uses, residual, skips)`` of :func:`_trace`.
    """
    nothing = ({}, {}, False, {})
    if plain:
        items = []
        for name, child in model._modules.items():
            n_leaves = sum(1 for m in child.modules() if not m._modules)
            items.append((name, "block", f"{name}: {type(child).__name__}\n{n_leaves} layers, "
                                         f"{child.num_parameters():,} params", name, child))
        return items, nothing
    traced = _trace(model, leaves) if model is not leaves[0][1] else None
    return [(n, *_describe(m), n.split(".", 1)[0], m) for n, m in leaves], traced or nothing


def _stack_boxes(flow, residual):
    """Place the boxes top to bottom: ``([(name, kind, top, bottom, width)], lowest y)``; a ``" plus"``
    circle goes above the output when the network has a global residual."""
    y, boxes = 0.0, []
    for name, kind, *_ in flow:
        h = _HEIGHTS.get(kind, 0.36)
        w = {"io": 3.6, "block": 4.8}.get(kind, 4.2 if kind in _HEIGHTS else 3.0)
        if name == " out" and residual:
            boxes.append((" plus", "plus", y, y - 0.4, 0.4))
            y -= 0.4 + _STEP
        boxes.append((name, kind, y, y - h, w))
        y -= h + _STEP
    return boxes, y + _STEP


def _draw_layer_boxes(ax, flow, rows, uses, after, plain, fontsize):
    """One rounded box per layer (gid ``layer:<name>`` or ``block:<name>``), "used Nx" when a module
    ran several times, and a dashed tag for an activation applied as a function right after it."""
    from matplotlib.patches import FancyBboxPatch
    for name, kind, label, *_ in flow:
        _, _, top, bot, w = rows[name]
        ax.add_patch(FancyBboxPatch((_CX - w / 2, bot), w, top - bot, boxstyle="round,pad=0,rounding_size=0.08",
                                    fc=_COLOURS.get(kind, _COLOURS["other"]), ec="#333333", lw=0.8,
                                    ls="--" if kind == "io" else "-",
                                    gid=None if kind == "io" else ("block:" if plain else "layer:") + name))
        text = label + (f"  (used {uses[name]}x)" if uses.get(name, 1) > 1 else "")
        ax.text(_CX, (top + bot) / 2, text, ha="center", va="center", fontsize=fontsize)
        if name in after:
            ax.add_patch(FancyBboxPatch((_CX + w / 2 + 0.15, bot + 0.06), 1.0, top - bot - 0.12,
                                        boxstyle="round,pad=0,rounding_size=0.08", fc=_COLOURS["act"], ec="#333333",
                                        lw=0.8, ls="--", gid="activation:" + name))
            ax.text(_CX + w / 2 + 0.65, (top + bot) / 2, after[name], ha="center", va="center", fontsize=fontsize - 1)


def _arc_spans(boxes, skips):
    """``{(source, target): count}`` of the inner skips that can be drawn downwards in this stack.

    A skip's source is the earlier of the sum's two operands; ``"^<layer>"`` names the gap just
    above a layer (an earlier sum read by that layer).  The same span taken several times (DRRN's
    units) is merged into one arc with a count.
    """
    pos = {b[0]: i for i, b in enumerate(boxes)}
    pos.update({"^" + b[0]: i - 0.5 for i, b in enumerate(boxes)})
    merged = {}
    for (a, b, dst), n in skips.items():
        if a not in pos or b not in pos or dst not in pos:
            continue
        src = a if pos[a] < pos[b] else b
        if pos[dst] > pos[src] + 0.5:
            merged[(src, dst)] = merged.get((src, dst), 0) + n
    return merged, pos


def _draw_inner_skips(ax, boxes, rows, skips, fontsize):
    """Draw each inner skip as a blue arc into a "+" above the layer that reads the sum, nested so
    that arcs over overlapping spans never share a column ("x24" when the same skip runs 24 times).
    Returns the x of the column left free for the global residual."""
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path as MPath
    merged, pos = _arc_spans(boxes, skips)
    placed = []
    for (src, dst), n in sorted(merged.items(), key=lambda kv: pos[kv[0][1]] - pos[kv[0][0]]):
        lo, hi = pos[src], pos[dst]
        level = 1 + max([lv for (l2, h2, lv) in placed if l2 < hi and lo < h2], default=0)
        placed.append((lo, hi, level))
        xa = _ARC_X0 + _ARC_GAP * level
        _, _, s_top, s_bot, s_w = rows[src.lstrip("^")]
        _, _, d_top, _, d_w = rows[dst]
        if src.startswith("^"):        # from an earlier sum, in the gap above the layer that reads it
            x_s, y_s = _CX + s_w / 2 - 0.25, s_top + _STEP / 2
        else:
            x_s, y_s = _CX + s_w / 2, (s_top + s_bot) / 2
        y_d = d_top + _STEP / 2
        path = MPath([(x_s, y_s), (xa, y_s), (xa, y_d), (_CX + d_w / 2 - 0.25, y_d), (_CX + d_w / 2 - 0.25, d_top)])
        ax.add_patch(FancyArrowPatch(path=path, arrowstyle="-|>", mutation_scale=7, lw=0.8, color="#2166ac",
                                     gid=f"skip:{src.strip().lstrip('^')}->{dst.strip()}"))
        ax.text(_CX + d_w / 2 - 0.1, y_d, "+", ha="left", va="center", fontsize=fontsize, color="#2166ac")
        if n > 1:
            ax.text(xa + 0.04, (y_s + y_d) / 2, f"x{n}", ha="left", va="center", fontsize=fontsize - 1,
                    color="#2166ac")
    return max(9.4, _ARC_X0 + _ARC_GAP * (max([lv for *_, lv in placed], default=0) + 2))


def _draw_global_residual(ax, rows, x_global, fontsize):
    """The red arc (gid ``"skip"``) from the input to the "+" circle above the output."""
    from matplotlib.patches import Circle, FancyArrowPatch
    from matplotlib.path import Path as MPath
    _, _, top, bot, _ = rows[" plus"]
    ax.add_patch(Circle((_CX, (top + bot) / 2), 0.2, fc="white", ec="#333333", lw=0.8))
    ax.text(_CX, (top + bot) / 2, "+", ha="center", va="center", fontsize=fontsize + 3)
    y_in, y_plus = (rows[" in"][2] + rows[" in"][3]) / 2, (top + bot) / 2
    arc = MPath([(_CX + 1.8, y_in), (x_global, y_in), (x_global, y_plus), (_CX + 0.2, y_plus)])
    ax.add_patch(FancyArrowPatch(path=arc, arrowstyle="-|>", mutation_scale=9, lw=1.0, color="#b2182b", gid="skip"))
    ax.text(x_global + 0.15, (y_in + y_plus) / 2, "global residual: output = input + f(input)", rotation=270,
            ha="left", va="center", fontsize=fontsize, color="#b2182b")


def _draw_part_brackets(ax, model, items, rows, fontsize):
    """A bracket on the left over each run of consecutive layers of one top-level part, labelled with
    the part's name (the paper's, since the model files name attributes after it) and its parameters."""
    groups = []
    for name, _, _, group, _ in items:
        if groups and groups[-1][0] == group:
            groups[-1][1].append(name)
        else:
            groups.append((group, [name]))
    for group, names in groups:
        top, bot = rows[names[0]][2], rows[names[-1]][3]
        ax.plot([2.95, 2.85, 2.85, 2.95], [top, top, bot, bot], color="#555555", lw=0.8)
        part = getattr(model, group, None)
        n = part.num_parameters() if hasattr(part, "num_parameters") else 0
        label = textwrap.fill(group.replace("_", " "), 16) + (f"\n{n:,} params" if n else "")
        ax.text(2.75, (top + bot) / 2, label, ha="right", va="center", fontsize=fontsize + 1)


def _default_title(model, plain, n_leaves):
    """Class name, parameter count, receptive field and scale (and how a big network is drawn)."""
    rf = getattr(type(model), "receptive_field", None)
    try:
        rf = model.receptive_field if rf is not None else None
    except Exception:
        rf = None
    title = f"{type(model).__name__}: {model.num_parameters():,} parameters"
    title += (f", receptive field {rf}x{rf}" if rf else "") + (f", x{model.scale}" if getattr(model, "scale", None)
                                                                 else "")
    if plain:
        title += f"\n({n_leaves} layers: drawn as its top-level blocks)"
    return title


def draw_graph(out, ax=None, title=None, labels=None):
    """Draw the autograd graph that produced the Tensor ``out``; returns the matplotlib Figure.

    Leaf tensors (inputs, parameters) are blue circles labelled with their ``.name``; every Function is
    a box numbered in the order :meth:`Tensor.backward` visits it (:func:`tinysr.autograd.topological_order`,
    the output's creator first); the green circle is ``out``.  An arrow runs from each input to the
    Function that read it, so a tensor used twice (``a`` in ``y = a * x + a``) has two arrows leaving
    it, and backward must sum the two gradients that come back along them.  ``labels`` names the
    tensor a Function produced (``{"Square": "a"}``): the name is written on that Function's arrows.
    ``ax``: the Axes to draw into; None makes a new Figure.  Meant for small graphs (a few Functions):
    the Functions sit on a zig-zag line, right to left in backward's order.
    """
    from .autograd import topological_order
    order = topological_order(out.creator)
    pos, edges, leaves = _graph_layout(order)
    if ax is None:
        from matplotlib.figure import Figure
        ax = Figure(figsize=(1.4 * len(order) + 3, 3.2)).add_subplot()
    labels = labels or {}
    names = {id(f): labels.get(type(f).__name__, "") for f in order}
    centres = np.array(list(pos.values()))
    for src, dst in edges:
        _graph_edge(ax, pos[src], pos[dst], names.get(src, ""), centres)
    for k, f in enumerate(order):
        ax.text(*pos[id(f)], f"{k + 1}. {type(f).__name__}", ha="center", va="center", fontsize=11,
                bbox=dict(boxstyle="round,pad=0.5", fc="#ffe9b3", ec="#b07b00"), gid=f"function:{k + 1}")
    for i, t in leaves.items():
        ax.text(*pos[i], t.name or "leaf", ha="center", va="center", fontsize=12,
                bbox=dict(boxstyle="circle,pad=0.4", fc="#cde3ff", ec="#3566a8"), gid="leaf")
    ax.text(*pos["out"], "y", ha="center", va="center", fontsize=12,
            bbox=dict(boxstyle="circle,pad=0.4", fc="#d7f5d0", ec="#3d8a2f"), gid="output")
    ax.set_xlim(centres[:, 0].min() - 0.6, centres[:, 0].max() + 0.6)
    ax.set_ylim(centres[:, 1].min() - 0.6, centres[:, 1].max() + 0.6)
    ax.set_aspect("equal")             # the arrows bend in data units, as _graph_edge computes them
    ax.axis("off")
    if title is not None:
        ax.set_title(title)
    return ax.figure


_DX, _DY = 1.8, 1.0                    # draw_graph: spacing between columns and between rows


def _graph_layout(order):
    """Positions for :func:`draw_graph`: Functions right to left in backward's order, alternating
    between two rows; leaves in a column on the left; ``"out"`` right of the last Function.
    Returns ``(pos, edges, leaves)`` with ``pos`` keyed by ``id(Function)``, ``id(leaf)`` and ``"out"``."""
    pos = {id(f): (_DX * (len(order) - k), _DY * (k % 2)) for k, f in enumerate(order)}
    leaves, edges = {}, []
    for f in order:
        for t in f.inputs:
            if t.creator is None:
                leaves.setdefault(id(t), t)
                edges.append((id(t), id(f)))
            else:
                edges.append((id(t.creator), id(f)))
    for k, i in enumerate(leaves):
        pos[i] = (0, -0.7 * _DY - _DY * k)
    pos["out"] = (_DX * (len(order) + 1), pos[id(order[0])][1])
    edges.append((id(order[0]), "out"))
    return pos, edges, leaves


def _graph_edge(ax, start, end, name, centres):
    """One curved arrow ``start -> end``, bent to the side that keeps its middle farther from every
    node centre, with ``name`` (the tensor it carries) written on its middle."""
    (x0, y0), (x1, y1) = start, end

    def middle(rad):
        return (x0 + x1) / 2 + rad * (y1 - y0) / 2, (y0 + y1) / 2 - rad * (x1 - x0) / 2

    def clearance(rad):
        mx, my = middle(rad)
        return np.hypot(centres[:, 0] - mx, centres[:, 1] - my).min()

    rad = max([0.35, -0.35], key=clearance)
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", lw=1.4, color="0.35", shrinkA=20,
                                                          shrinkB=20, connectionstyle=f"arc3,rad={rad}"))
    if name:
        ax.text(*middle(rad), name, ha="center", va="center", fontsize=10, color="#b07b00", backgroundcolor="w")
