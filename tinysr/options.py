"""One table of rules for every numeric option, shared by the command line and the Python API.

A wrong number is refused at the boundary, in one sentence that names the option both ways
(``batch_size`` / ``--batch-size``), the rule and the value given, before anything is read or
written. Checked any later, a zero batch size would read as "use the recipe's", a zero patch size
would divide by zero deep inside the sampler and a negative scale would surface as an impossible
image size: messages about the symptom, not the option.

* :data:`RULES` -- ``{name: Rule}``;
* :func:`check` -- validate one value in Python (``None`` means "the default" and passes);
* :func:`check_all` -- validate several keyword arguments at once;
* :func:`argtype` -- the same rule as an ``argparse`` ``type=`` (a wrong value exits 2 with the
  rule's sentence, argparse's convention for a wrong command line).
"""
import argparse
import math
from dataclasses import dataclass
from typing import Optional

__all__ = ["Rule", "RULES", "check", "check_all", "argtype"]


@dataclass(frozen=True)
class Rule:
    """An option's type and bounds: ``kind`` is ``int`` or ``float``; ``low``/``high`` are inclusive
    unless ``low_open`` (``lr > 0``); ``words`` are the non-numeric values it also accepts
    (``tile="auto"``); ``meaning`` says in a few words what the number is."""
    kind: type
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    words: tuple = ()
    meaning: str = ""

    def describe(self):
        """``"an integer from 2 to 16"``, ``"a number > 0"``, ... (the rule in words)."""
        what = "an integer" if self.kind is int else "a finite number"
        if self.low is not None and self.high is not None:
            text = f"{what} from {_fmt(self.low)} to {_fmt(self.high)}"
        elif self.low is not None:
            text = f"{what} {'>' if self.low_open else '>='} {_fmt(self.low)}"
        elif self.high is not None:
            text = f"{what} <= {_fmt(self.high)}"
        else:
            text = what
        if self.words:
            text += " or " + " or ".join(repr(w) for w in self.words)
        return text


def _fmt(v):
    return f"{v:g}" if isinstance(v, float) else str(v)


#: Every numeric option of ``tinysr train``/``eval``/``upscale``/``srgan``/``demo`` and of the
#: functions behind them. Bounds are what the code can honour: a scale of 1 is no super-resolution,
#: a seed must be a non-negative integer for NumPy.
RULES = {
    "scale": Rule(int, 2, 16, meaning="the upscaling factor"),
    "iterations": Rule(int, 1, meaning="optimiser steps"),
    "epochs": Rule(int, 1, meaning="passes over the training patches"),
    "batch_size": Rule(int, 1, 65536, meaning="patches per step"),
    "patch_size": Rule(int, 3, 4096, meaning="the input patch side in pixels"),
    "lr": Rule(float, 0, low_open=True, meaning="the learning rate"),
    "clip": Rule(float, 0, low_open=True, words=("off",), meaning="the largest gradient norm"),
    "seed": Rule(int, 0, 2**63 - 1, meaning="the random seed"),
    "eval_every": Rule(int, 1, meaning="steps between evaluations"),
    "checkpoint_every": Rule(int, 1, meaning="steps between checkpoints"),
    "tile": Rule(int, 1, 65536, words=("auto", "off"), meaning="the tile side in pixels"),
    "max_memory_gb": Rule(float, 0, low_open=True, meaning="the memory an upscale may use, in GB"),
    "steps": Rule(int, 1, meaning="demo training steps"),
    "adv_weight": Rule(float, 0, meaning="the weight of the adversarial loss"),
    "disc_base": Rule(int, 1, 4096, meaning="the discriminator's first width"),
    "disc_dense": Rule(int, 1, 65536, meaning="the discriminator's dense width"),
}


def _flag(name):
    return "--" + name.replace("_", "-")


def _parse(name, value, rule):
    """``value`` converted to the rule's type, or a ValueError sentence."""
    def bad(why=""):
        return ValueError(f"{name} ({_flag(name)}) must be {rule.describe()}{why}, got {value!r}")

    if isinstance(value, str):
        word = value.strip().lower()
        if word in rule.words:
            return word
        try:
            value = int(word) if rule.kind is int else float(word)
        except ValueError:
            raise bad() from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__index__") \
            and not hasattr(value, "__float__"):
        raise bad()
    if rule.kind is int:
        if isinstance(value, float) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") == "f"):
            if not math.isfinite(value) or value != int(value):
                raise bad()
        v = int(value)
    else:
        v = float(value)
        if not math.isfinite(v):
            raise bad()
    if rule.low is not None and (v < rule.low or (rule.low_open and v == rule.low)):
        raise bad()
    if rule.high is not None and v > rule.high:
        raise bad()
    return v


def check(name, value):
    """Validate ``value`` for option ``name`` under :data:`RULES`; returns it converted (``int``/``float``
    or one of the rule's words), ``None`` unchanged (the default). Raises ``ValueError`` in one sentence:
    ``batch_size (--batch-size) must be an integer from 1 to 65536, got 0``."""
    if value is None:
        return None
    return _parse(name, value, RULES[name])


def check_all(**values):
    """:func:`check` for each keyword; returns the converted values as a dict."""
    return {k: check(k, v) for k, v in values.items()}


def argtype(name):
    """An ``argparse`` ``type=`` callable applying the rule of ``name``."""
    rule = RULES[name]

    def convert(text):
        try:
            return _parse(name, text, rule)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule.describe()}, got {text!r}") from None

    convert.__name__ = rule.meaning or name      # argparse names the type in some messages
    return convert
