"""Render tinysr's plain-text docstrings as reStructuredText for the API pages.

tinysr's docstrings are written to be read in a terminal (``help(tinysr.evaluate)``) and in the
source: prose, a NumPy-style ``Parameters`` block whose entries read ``name : what it is`` with
indented continuation lines, and the occasional ``::`` example. Docutils would reject some of that
(an indented continuation line is an "unexpected indentation", ``|x|`` a substitution), so this
extension rewrites each docstring before autodoc parses it:

* a section title underlined with dashes becomes a rubric;
* the entries of ``Parameters``, ``Returns``, ``Yields``, ``Raises`` and ``Attributes`` become a
  bullet list, ``name`` in bold and the rest of the entry as one paragraph;
* a change of indentation elsewhere gets the blank line docutils wants (the indented lines become a
  block quote), except inside a literal block (after ``::``) or a doctest (``>>>``);
* ``|`` outside inline literals is escaped, so ``mean(|x|)`` stays text.

The docstrings themselves are not changed; the source keeps its terminal-friendly layout.
"""
import re

_FIELD_SECTIONS = {"parameters", "other parameters", "returns", "yields", "raises", "attributes"}
_ITEM = re.compile(r"^(?P<name>[\w*][\w*\s,/.\[\]]{0,40}?)\s+:\s+(?P<rest>.*)$|^(?P<bare>[A-Za-z_][\w, ]{0,40})$")
_LITERAL = re.compile(r"(``.+?``)")


def _indent(line):
    return len(line) - len(line.lstrip())


def _escape_bars(line):
    parts = _LITERAL.split(line)
    return "".join(p if i % 2 else re.sub(r"(?<!\\)\|", r"\\|", p) for i, p in enumerate(parts))


def _is_title(lines, i):
    return (i + 1 < len(lines) and lines[i].strip() and re.fullmatch(r"\s*-{3,}\s*", lines[i + 1])
            and _indent(lines[i]) == _indent(lines[i + 1]))


def _looks_like_type(text):
    """``int``, ``bool``, ``int or Generator``, ``ndarray (H, W, 3)``: short, and not a sentence."""
    return len(text) <= 40 and not text.rstrip().endswith((".", ",", ":", ";")) and ";" not in text


def _field_items(lines, i, base):
    """Parse a field section from line ``i``; return (bullet lines, next index).

    An entry is ``name : text`` (tinysr's style: the text is the description, continued on indented
    lines) or NumPy's ``name : type`` followed by an indented description; a short, sentence-less text
    with an indented description below it is read as a type.
    """
    items = []  # [name, first-line text, [continuation lines]]
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if _indent(line) > base and items:
            items[-1][2].append(line.strip())
        elif _indent(line) == base and _ITEM.match(line.strip()) and not _is_title(lines, i):
            m = _ITEM.match(line.strip())
            items.append([m.group("name") or m.group("bare"), m.group("rest") or "", []])
        else:
            break
        i += 1
    bullets = []
    for name, first, more in items:
        head = f"- **{_escape_bars(name.strip())}**"
        if more and first and _looks_like_type(first):
            head += f" ({_escape_bars(first)})"
            first = ""
        text = " ".join(t for t in [first] + more if t)
        bullets.append(head + (f" -- {_escape_bars(text)}" if text else ""))
    return bullets + [""], i


def rewrite(lines):
    """Return the docstring ``lines`` as docutils-safe reStructuredText."""
    out, i, prev = [], 0, None  # prev: indentation of the last non-blank line written
    literal_at = None  # indentation of the line that opened a literal block
    while i < len(lines):
        line = lines[i].rstrip()
        if literal_at is not None:
            if not line.strip() or _indent(line) > literal_at:
                out.append(line)
                i += 1
                continue
            literal_at = None
        if _is_title(lines, i):
            title = line.strip()
            out += ["", f".. rubric:: {title}", ""]
            i += 2
            if title.lower() in _FIELD_SECTIONS:
                bullets, i = _field_items(lines, i, _indent(line))
                out += bullets
            prev = None
            continue
        if line.strip().startswith(">>>"):
            while i < len(lines) and lines[i].strip():
                out.append(lines[i].rstrip())
                i += 1
            prev = None
            continue
        if line.strip():
            if prev is not None and _indent(line) != prev and out and out[-1].strip():
                out.append("")
            out.append(_escape_bars(line))
            prev = _indent(line)
            if line.endswith("::"):
                literal_at = _indent(line)
        else:
            out.append("")
        i += 1
    return out


def _process(app, what, name, obj, options, lines):
    lines[:] = rewrite(lines)


def setup(app):
    app.connect("autodoc-process-docstring", _process)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
