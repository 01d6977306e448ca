"""The shape of the code, as ``docs/architecture.md`` states it: sizes of functions and modules, and
which way the imports go (no import up the layers, no cycle, no import of the package root from inside
it, no use of another module's private names).

Everything here reads the sources with :mod:`ast` (nothing is imported), so the tests take about a
second.  The limits and the layers are parsed from ``docs/architecture.md`` itself ("Layers" and "Size
of the pieces"), so the page and the test cannot drift apart.  Imports inside functions count like the
others.  The only exceptions are the ones named in the lists below, each with its reason, and a test
fails when one of them is no longer needed.
"""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
# package folder -> the name it is imported under
PACKAGES = {"tinysr": "tinysr", "kernels": "tinysr_kernels"}

MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 600

# What the kernels row of the table allows kernels/ to import from tinysr: the NumPy twins (the
# reference layer) and the engine's device helpers.  tests/test_winograd.py keeps kernels/ from
# importing anything else of tinysr.
KERNELS_MAY_IMPORT = ("tinysr.functional.conv_reference", "tinysr.backend")

# (importer, imported): an import that goes up the layers.  A name ending in "." stands for every
# module of that package.
IMPORT_EXCEPTIONS = {
    # A command-line check of every CUDA kernel against tinysr's ops, run by hand on a GPU; no kernel
    # imports it.
    ("tinysr_kernels.cuda.selftest", "tinysr."): "a self-test of the kernels against tinysr's ops",
    ("tinysr_kernels.cuda.selftest", "tinysr"): "a self-test of the kernels against tinysr's ops",
}

# Modules allowed to import the package root (``from . import __version__``, ``import tinysr``):
# none (``tinysr.version`` has the version; every other name has a module of its own).
ROOT_IMPORT_EXCEPTIONS = {}

# (importer, imported module): a private name (``_x``) used across modules that are not in one package.
# None: the code keeps the rule.
PRIVATE_IMPORT_EXCEPTIONS = {}


# ----------------------------------------------------------------------------------------- the sources
def _modules():
    """{module name: path} for every ``.py`` file of the packages (``kernels/`` as ``tinysr_kernels``)."""
    found = {}
    for folder, name in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([name] + parts)] = path
    return found


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(), filename=str(path)) for name, path in MODULES.items()}


def _is_package(name):
    return MODULES[name].name == "__init__.py"


def _rel(name):
    return MODULES[name].relative_to(ROOT).as_posix()


def _imports(name):
    """``[(imported module, imported name or None, line, (bound name, module it names))]`` for every
    import statement of a module, at its top or inside a function.  ``from pkg import x`` names module
    ``pkg.x`` when that is one (imported name None)."""
    out = []
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.split(".")[0]
                out.append((a.name, None, node.lineno, (a.asname, a.name) if a.asname else (top, top)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if _is_package(name) else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in MODULES:
                    out.append((sub, None, node.lineno, (a.asname or a.name, sub)))
                else:
                    out.append((target, a.name, node.lineno, (a.asname or a.name, None)))
    return out


def _edges():
    """``[(importer, imported, names, line)]`` between modules of the packages."""
    edges = []
    for name in MODULES:
        for target, imported, line, _ in _imports(name):
            while target and target not in MODULES:       # "import tinysr.data.io" -> the deepest module
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.append((name, target, imported, line))
    return edges


def _matches(pattern, name):
    return name == pattern or (pattern.endswith(".") and name.startswith(pattern))


# ----------------------------------------------------------------------------------------- the page
def _doc_section(title):
    text = DOC.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


def _layers():
    """``[(layer name, [module name or package prefix ending in "."])]``, top layer first, from the
    "Layers" table: ``cli.py`` -> ``tinysr.cli``, ``models/`` -> every module of ``tinysr.models``,
    ``kernels/`` -> every module of ``tinysr_kernels``; entries outside the packages are skipped."""
    layers = []
    for line in _doc_section("Layers").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("layer", "") or set(cells[0]) <= set("-"):
            continue
        names = []
        for entry in re.findall(r"`([^`]+)`", cells[1]):
            if entry == "kernels/":
                names.append("tinysr_kernels.")
            elif entry.endswith("/") and (ROOT / "tinysr" / entry).is_dir():
                names.append("tinysr." + entry.rstrip("/").replace("/", ".") + ".")
            elif entry.endswith(".py") and (ROOT / "tinysr" / entry).is_file():
                names.append(_module_of(ROOT / "tinysr" / entry))
        layers.append((cells[0], names))
    return layers


def _module_of(path):
    return next(name for name, p in MODULES.items() if p == path)


def _layer_of(layers):
    """{module name: (layer index, layer name)}; a package's own ``__init__`` is in its package's layer."""
    index = {}
    for name in MODULES:
        for i, (layer, entries) in enumerate(layers):
            if any(name == e or _matches(e, name) or name + "." == e for e in entries):
                index[name] = (i, layer)
                break
    return index


def _size_rules():
    """From "Size of the pieces": the long modules allowed for good (the bullet list: generated or
    table-like), and the pieces over the limits today that are still to be split (module paths and
    ``module.function`` names)."""
    section = _doc_section("Size of the pieces")
    permanent, _, today = section.partition("Pieces over the limits today")
    allowed = set(re.findall(r"^- `([^`]+\.py)`", permanent, flags=re.M))
    pending = {name for bullet in re.findall(r"^- (.*)$", today, flags=re.M)
               for name in re.findall(r"`([^`]+)`", bullet)}
    return allowed, pending


def _functions(tree):
    """``[(qualified name, first line, line count)]`` of every function and method, nested ones too."""
    out = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qual = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    out.append((qual, child.lineno, child.end_lineno - child.lineno + 1))
                visit(child, qual + ".")
            else:
                visit(child, prefix)
    visit(tree, "")
    return out


def _pending_piece(piece):
    """A name of the "over the limits today" sentence as ``(path relative to the repository, function
    qualified name or None)``: ``tinysr/api.py`` -> the module, ``gan.train_srgan`` -> a function."""
    if piece.endswith(".py"):
        return piece, None
    parts = piece.split(".")
    for k in range(len(parts) - 1, 0, -1):
        for folder in PACKAGES:
            path = ROOT / folder / Path(*parts[:k]).with_suffix(".py")
            if path.is_file():
                return path.relative_to(ROOT).as_posix(), ".".join(parts[k:])
    raise AssertionError(f"docs/architecture.md names `{piece}` over the limits, but no module holds it")


# ----------------------------------------------------------------------------------------- the tests
def test_the_layer_table_covers_every_module():
    layers = _layers()
    assert len(layers) >= 8, f"could not read the layer table of docs/architecture.md: {layers}"
    where = _layer_of(layers)
    missing = sorted(_rel(m) for m in MODULES if m not in where and m != "tinysr")
    assert not missing, f"modules in no layer of docs/architecture.md's table: {missing}"


def test_no_module_imports_a_higher_layer():
    where = _layer_of(_layers())
    bad = []
    for importer, imported, _, line in _edges():
        if importer == "tinysr" or imported not in where or importer not in where:
            continue                                   # the package root re-exports every layer
        if importer.startswith("tinysr_kernels.") and imported in KERNELS_MAY_IMPORT:
            continue
        if where[imported][0] < where[importer][0] and not any(
                _matches(a, importer) and _matches(b, imported) for a, b in IMPORT_EXCEPTIONS):
            bad.append(f"{_rel(importer)}:{line} ({where[importer][1]}) imports {imported} "
                       f"({where[imported][1]})")
    assert not bad, "imports that go up the layers of docs/architecture.md:\n" + "\n".join(bad)


def test_nothing_below_the_root_imports_the_package_root():
    """``import tinysr`` / ``from .. import x`` (a name of the root) from inside the package runs the root,
    which imports the API, which imports the module again: a hidden cycle.  Import the module that
    defines the name instead."""
    bad = [f"{_rel(importer)}:{line} imports the package root"
           for importer, imported, _, line in _edges()
           if imported == "tinysr" and importer not in ROOT_IMPORT_EXCEPTIONS and not any(
               _matches(a, importer) and _matches(b, imported) for a, b in IMPORT_EXCEPTIONS)]
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    """No chain of imports (top-level or inside functions) leads from a module back to itself,
    except a package's ``__init__`` importing its own modules."""
    graph = {}
    for importer, imported, _, _ in _edges():
        if importer == "tinysr" or imported == "tinysr":
            continue                                   # the root: see test_nothing_below_the_root...
        if _is_package(importer) and imported.startswith(importer + "."):
            continue                                   # a package importing its own modules
        graph.setdefault(importer, set()).add(imported)
    cycles = []
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"
    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def _package(name):
    return name if _is_package(name) else name.rpartition(".")[0]


def _private_uses(name):
    """``[(imported module, private name, line)]``: ``from m import _x``, and ``alias._x`` where
    ``alias`` is a module of the packages bound by an import of this module."""
    uses, aliases = [], {}
    for target, imported, line, (bound, module) in _imports(name):
        if module in MODULES:
            aliases[bound] = module
        if imported is None:
            continue
        if imported.startswith("_") and not imported.startswith("__"):
            uses.append((target, imported, line))
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = _module_named_by(node.value, aliases)
            if owner is not None:
                uses.append((owner, node.attr, node.lineno))
    return uses


def _module_named_by(node, aliases):
    """The module an expression such as ``F`` or ``tinysr.api`` names through the module's imports,
    or None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in aliases:
        return None
    name = ".".join([aliases[node.id]] + parts[::-1])
    return name if name in MODULES else None


def test_no_module_uses_another_modules_private_names():
    """A name that starts with ``_`` belongs to its module, or to the modules of one subpackage that
    share it (``readers/base.py``'s limits and checks); no other module imports it or reaches it
    as ``module._name``.  The package root's modules are not one subpackage: each keeps its own."""
    bad = []
    for name in MODULES:
        if not name.startswith("tinysr."):
            continue
        for target, private, line in _private_uses(name):
            if target not in MODULES or target == name:
                continue
            shared = _package(name) == _package(target) and _package(name) != "tinysr"
            if shared or (name, target) in PRIVATE_IMPORT_EXCEPTIONS:
                continue
            bad.append(f"{_rel(name)}:{line} uses {target}.{private}")
    assert not bad, "private names used outside their module or subpackage:\n" + "\n".join(bad)


def test_functions_and_modules_stay_small():
    allowed, pending = _size_rules()
    pending = [_pending_piece(p) for p in pending]
    pending_modules = {path for path, func in pending if func is None}
    pending_functions = {(path, func) for path, func in pending if func is not None}
    bad = []
    for name, path in MODULES.items():
        rel = _rel(name)
        if rel in pending_modules:
            continue
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES and rel not in allowed:
            bad.append(f"{rel}: {lines} lines (limit {MAX_MODULE_LINES})")
        for func, first, count in _functions(TREES[name]):
            if count > MAX_FUNCTION_LINES and (rel, func) not in pending_functions:
                bad.append(f"{rel}:{first} {func}: {count} lines (limit {MAX_FUNCTION_LINES})")
    assert not bad, ("over the limits of docs/architecture.md, 'Size of the pieces' (split it, or name a "
                     "generated table there):\n" + "\n".join(bad))


def test_the_size_section_names_only_pieces_that_need_it():
    """Every piece the page names as over the limits today still is, and every long module it allows
    exists: when a piece is split, the page says so."""
    allowed, pending = _size_rules()
    stale = [p for p in allowed if not (ROOT / p).is_file()]
    for piece in pending:
        path, func = _pending_piece(piece)
        text = (ROOT / path).read_text()
        if func is None:
            if len(text.splitlines()) <= MAX_MODULE_LINES:
                stale.append(piece)
            continue
        sizes = {q: n for q, _, n in _functions(ast.parse(text))}
        if sizes.get(func, 0) <= MAX_FUNCTION_LINES:
            stale.append(piece)
    assert not stale, f"docs/architecture.md's 'Size of the pieces' names pieces within the limits: {stale}"


def test_every_exception_is_still_needed():
    """An exception whose import has gone is taken off its list, so the lists only ever shrink."""
    edges = _edges()
    stale = [pair for pair in IMPORT_EXCEPTIONS
             if not any(_matches(pair[0], a) and _matches(pair[1], b) for a, b, _, _ in edges)]
    stale += [pair for pair in PRIVATE_IMPORT_EXCEPTIONS
              if pair[0] not in MODULES or not any(t == pair[1] for t, _, _ in _private_uses(pair[0]))]
    stale += [name for name in ROOT_IMPORT_EXCEPTIONS
              if not any(a == name and b == "tinysr" for a, b, _, _ in edges)]
    assert not stale, f"exceptions in tests/test_structure.py that nothing needs any more: {stale}"


def test_every_package_is_installed():
    """pyproject.toml lists its packages by hand: a package folder missing there is missing from the
    wheel (and found only by an import error after ``pip install``)."""
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {name for name in MODULES if _is_package(name)}
    assert packages == listed, (f"package folders not in pyproject.toml: {sorted(packages - listed)}; "
                                f"listed but not there: {sorted(listed - packages)}")
