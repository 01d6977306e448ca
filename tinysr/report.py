"""What the lessons measure and print beside their networks: activation memory, the papers' numbers.

* :func:`graph_memory` -- how many bytes the autograd graph behind a tensor keeps for backward, by
  operation type.  This is the *activation memory* of a training step: it is held from the end of the
  forward pass until backward has used it, on top of the weights.  Lesson 9 uses it to measure what
  BatchNorm costs (EDSR's reason to remove it).
* :func:`weight_layers_to_output` -- for every weight layer, the fewest weight layers between its output
  and the network's output: how far the loss is from it.  Skip connections shorten these paths, which
  is why RED30's encoder trains (lesson 5).
* :func:`paper_table` -- the published Y-PSNR / SSIM table (``reference/paper_psnr.json`` in the
  shared folder beside the checkout) with its provenance file, so that every lesson looks a method
  up the same way and marks a *recalled* (not re-checked) number with ``*``;
  :func:`format_psnr_table` prints what a lesson measured beside it, one row per method.
"""
import json
from pathlib import Path

import numpy as np

__all__ = ["graph_memory", "weight_layers_to_output", "PaperTable", "paper_table", "format_psnr_table"]


def _arrays(value):
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _arrays(item)


def _owner(a):
    """The array that owns ``a``'s memory: a view (a slice, a reshape) shares its base's bytes."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def graph_memory(out, model=None):
    """Bytes that the autograd graph behind the Tensor ``out`` keeps for backward, by operation type.

    Walks every Function from ``out.creator`` back to the leaves and adds up the NumPy arrays each one
    holds as attributes (``saved``, a ReLU's output ``y`` ...).  An array is counted once, under the
    first Function (from the output) that holds it, however many Functions share it, and a view
    counts as the array that owns the memory.  ``model``'s parameters and buffers are left out: they
    exist whether or not a graph does.  Returns ``{"Conv2d": bytes, "BatchNorm": bytes, ...}``.

    A convolution keeps its input (the weight gradient is input x output-gradient), a ReLU its
    output, BatchNorm its normalised output; a product ``r * 0.1`` keeps only the factor that the
    gradient of ``r`` needs, the constant.  So an EDSR block (conv-ReLU-conv) holds two feature maps,
    an SRResNet block with BatchNorm four.
    """
    skip = set()
    if model is not None:
        skip = {id(_owner(p.data)) for p in model.parameters()}
        skip |= {id(_owner(b)) for _, b in model.named_buffers()}
    counted, visited, by_op, stack = set(), set(), {}, [out.creator]
    while stack:
        f = stack.pop()
        if f is None or id(f) in visited:
            continue
        visited.add(id(f))
        for value in vars(f).values():
            for a in _arrays(value):
                r = _owner(a)
                if id(r) not in skip and id(r) not in counted:
                    counted.add(id(r))
                    by_op[type(f).__name__] = by_op.get(type(f).__name__, 0) + r.nbytes
        stack += [getattr(i, "creator", None) for i in f.inputs]
    return by_op


def weight_layers_to_output(model, x):
    """``{layer name: n}``: the fewest weight layers on a path from that layer's output to ``model``'s
    output, the layer itself included (so the last layer has 1).

    A *weight layer* is a leaf module with parameters (``Conv2d``, ``ConvTranspose2d`` ...).  One
    forward pass of the array ``x`` (N, C, H, W) is recorded, with every weight layer's ``forward``
    wrapped to note which Function made its output; then a breadth-first walk from the output back
    through the autograd graph counts 1 for each Function that a weight layer made and 0 for the rest
    (ReLU, additions).  In a plain stack of L layers the first layer has L; a skip connection that adds
    its output near the end gives it a short path, which is what lets gradients reach it undiminished.
    """
    from .autograd import Tensor, enable_grad
    layers = [(n, m) for n, m in model.named_modules() if n and not list(m.children()) and list(m.parameters())]
    made_by = {}

    def recorder(name, m):
        def recorded(*args, **kwargs):
            y = type(m).forward(m, *args, **kwargs)
            made_by[id(y.creator)] = name
            return y
        return recorded

    for name, m in layers:
        m.forward = recorder(name, m)          # an instance attribute shadows the class's forward
    try:
        with enable_grad():
            out = model(Tensor(np.asarray(x), requires_grad=True))
    finally:
        for _, m in layers:
            del m.forward
    top = out.creator
    dist, frontier = {id(top): 1 if id(top) in made_by else 0}, [top]
    while frontier:
        following = []
        for f in frontier:
            for i in getattr(f, "inputs", ()):
                g = getattr(i, "creator", None)
                if g is None:
                    continue
                d = dist[id(f)] + (1 if id(g) in made_by else 0)
                if d < dist.get(id(g), float("inf")):
                    dist[id(g)] = d
                    following.append(g)
        frontier = following
    return {made_by[k]: v for k, v in dist.items() if k in made_by}


class PaperTable:
    """The published results: ``table[method][dataset]["x<scale>"] = [psnr, ssim]`` and the provenance
    ``meta[method]["recalled_cells"]`` (``"all"``, ``"Set5.x3"``, ``"Set5.*"``): numbers recalled from
    secondary sources rather than checked against the paper.  Empty (false) when the file was not found.
    """

    def __init__(self, table=None, meta=None, source=None):
        self.table, self.meta, self.source = table or {}, meta or {}, source

    def __bool__(self):
        return bool(self.table)

    def value(self, method, dataset, scale):
        """The published PSNR in dB, or None when the table has no such cell."""
        cell = (self.table.get(method, {}).get(dataset) or {}).get(f"x{scale}")
        return None if not cell or cell[0] is None else float(cell[0])

    def psnr_ssim(self, method, dataset, scale):
        """``(psnr, ssim)`` as published (ssim may be None), or None when the table has no PSNR there."""
        cell = (self.table.get(method, {}).get(dataset) or {}).get(f"x{scale}")
        return None if not cell or cell[0] is None else (cell[0], cell[1] if len(cell) > 1 else None)

    def recalled(self, method, dataset, scale):
        """True when the provenance file calls this cell recalled, not verified."""
        marks = set(self.meta.get(method, {}).get("recalled_cells", []))
        return bool({"all", f"{dataset}.x{scale}", f"{dataset}.*"} & marks)

    def cell(self, method, dataset, scale):
        """The PSNR as a table prints it: ``"34.37"``, ``"34.37*"`` when recalled, ``"-"`` when absent."""
        v = self.value(method, dataset, scale)
        if v is None:
            return "-"
        return f"{v:.2f}" + ("*" if self.recalled(method, dataset, scale) else "")


def paper_table(shared_dir):
    """Read ``<shared_dir>/reference/paper_psnr.json`` (and ``paper_psnr_meta.json`` beside it) into a
    :class:`PaperTable`; an empty one when ``shared_dir`` is None or the file is not there.
    ``shared_dir`` is :attr:`tinysr.lesson.LessonSetup.shared_dir`."""
    path = Path(shared_dir) / "reference" / "paper_psnr.json" if shared_dir else None
    if path is None or not path.is_file():
        return PaperTable()
    meta_path = path.with_name("paper_psnr_meta.json")
    meta = json.loads(meta_path.read_text())["methods"] if meta_path.is_file() else {}
    return PaperTable(json.loads(path.read_text()), meta, source=path)


def format_psnr_table(rows, paper, dataset, scales, *, our_scales=None, width=40):
    """A fixed-width text table of PSNRs: ours beside the paper's, one row per method.

    ``rows``: ``{row label: ({scale: our PSNR}, method name in the paper table or None)}``, in the
    order to print.  ``paper``: a :class:`PaperTable` (an empty one prints our columns only; a row
    with no numbers of ours is then left out).  Columns: ``ours x<s>`` for each of ``our_scales``
    (default ``scales``), then ``paper x<s>`` for each of ``scales`` on ``dataset``; ``"-"`` where a
    number is missing, ``*`` after a recalled paper number, explained in a last line.  ``width``: of
    the label column.  Returns the table as one string (no trailing newline).
    """
    our_scales = scales if our_scales is None else our_scales
    lines = [f"{'method':<{width}}" + "".join(f"{'ours x' + str(s):>10}" for s in our_scales)
             + ("".join(f"{'paper x' + str(s):>10}" for s in scales) if paper else "")]
    for label, (ours, method) in rows.items():
        if not ours and not paper:
            continue
        line = f"{label:<{width}}" + "".join(f"{ours[s]:>10.2f}" if ours.get(s) is not None else f"{'-':>10}"
                                             for s in our_scales)
        if paper and method:
            line += "".join(f"{paper.cell(method, dataset, s):>10}" for s in scales)
        lines.append(line)
    if paper:
        lines.append("* recalled, not verified against the paper (see paper_psnr_meta.json)")
    return "\n".join(lines)
