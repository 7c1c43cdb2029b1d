"""Build the documentation site: the README, every docs/*.md page and the API reference, offline.

    pip install -e ".[docs]"
    python docs/build.py              # writes docs/site/ (open docs/site/index.html); no network needed
    python docs/build.py -o DIR       # somewhere else

The pages are Markdown (``README.md`` becomes ``index.html``, ``docs/<name>.md`` becomes ``<name>.html``; a new
page in ``docs/`` joins the site and its navigation by itself), converted with ``markdown2``, which pdoc brings.
The API reference, in ``api/``, is built from the docstrings by pdoc.

Documents ``lightning_explain`` and every public submodule (no leading underscore in any part of its name),
Google-style docstrings with reStructuredText inline markup. Fails (exit code 1), listing each problem, when a
page links to a file that does not exist or to an anchor no heading defines, a page would load anything from the
network, or:
pdoc warns (an import failure, a getattr that raises, a docstring it cannot process), a public module, class,
function or method has no docstring of its own, or a ``:func:``/``:class:``/``:data:``/``:mod:``/``:meth:``/
``:attr:`` reference names something that does not exist.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "lightning_explain"
ROLE = re.compile(r":(?:func|class|data|mod|meth|attr|obj):`~?([\w.]+)`")


def public_modules() -> list[str]:
    """The package and its public submodules, sorted (a parent before its children)."""
    package = importlib.import_module(PACKAGE)
    names = [PACKAGE]
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{PACKAGE}."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def resolves(name: str, context: str) -> bool:
    """Whether ``name`` exists as written, or relative to ``context`` or one of its parents (as Sphinx would)."""
    scopes = context.split(".")
    candidates = [name] + [".".join([*scopes[:i], name]) for i in range(len(scopes), 0, -1)]
    return any(_exists(candidate) for candidate in candidates)


def _exists(name: str) -> bool:
    """Whether a dotted name is a module or an attribute path that exists."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except (ImportError, TypeError):  # TypeError: a relative name such as "._pass"
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def check(module_doc, problems: list[str]) -> None:
    """Add the docstring problems of a pdoc module (and its public members, recursively) to ``problems``."""
    from pdoc import doc

    stack = [module_doc]
    while stack:
        item = stack.pop()
        if isinstance(item, doc.Module | doc.Class):
            stack.extend(m for m in item.own_members if not m.name.startswith("_"))
        if isinstance(item, doc.Module | doc.Class | doc.Function):
            # Inherited members and dunder methods are documented by their own class; skip them here.
            if item.modulename.startswith(PACKAGE) and not item.name.startswith("__") and not item.docstring.strip():
                problems.append(f"{item.fullname}: no docstring")
        for name in ROLE.findall(item.docstring or ""):
            if not resolves(name, item.fullname):
                problems.append(f"{item.fullname}: reference to {name!r}, which does not exist")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "-o", "--output", default=str(ROOT / "docs" / "site"), help="output folder (default: docs/site)"
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import pdoc
    import pdoc.doc
    import pdoc.render

    from lightning_explain import __version__

    pdoc.render.configure(
        docformat="google",
        footer_text=f"lightning-explain {__version__}",
        math=False,  # both would load scripts from a CDN in the browser
        mermaid=False,
        search=True,
        template_directory=ROOT / "docs" / "templates",  # lists every public submodule in the navigation
    )
    from pdoc.extract import walk_specs

    modules = public_modules()
    # pdoc documents the submodules a spec's __all__ lets through; name only the modules not covered yet.
    specs: list[str] = []
    covered: set[str] = set()
    for name in modules:
        if name not in covered:
            specs.append(name)
            covered.update(walk_specs([name]))
    problems: list[str] = []
    pdoc_dir = str(Path(pdoc.__file__).parent)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*specs, output_directory=Path(args.output) / "api")
        for name in modules:
            check(pdoc.doc.Module.from_name(name), problems)
    problems += [f"pdoc: {w.message}" for w in caught if w.filename.startswith(pdoc_dir)]
    sys.path.insert(0, str(ROOT / "docs"))
    from _site import build_site, pages

    problems += build_site(Path(args.output), api_index=f"api/{PACKAGE}.html")
    for problem in sorted(set(problems)):
        print(problem, file=sys.stderr)
    if problems:
        print(f"docs: {len(set(problems))} problem(s) in the docs", file=sys.stderr)
        return 1
    print(f"docs: {len(pages())} pages and {len(modules)} API modules -> {Path(args.output) / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
