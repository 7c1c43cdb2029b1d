"""The documentation site: README.md and every docs/*.md page as HTML, beside the API reference, all offline.

``build_site(output)`` writes ``index.html`` (the README), one ``<page>.html`` per ``docs/*.md`` file (found by a
glob, so a new page joins the site and its navigation without any change here), ``images/`` (a copy of
``docs/images``) and ``source/`` (a copy of every other repository file a page links to, e.g. an example script),
and returns the problems it found: a link or image to a file that does not exist, an anchor that no heading of
its page defines, or a page that would load something from the network.
"""

from __future__ import annotations

import html
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ORDER = (
    "callbacks",
    "methods",
    "models",
    "text",
    "overfitting",
    "dashboard",
    "cli",
    "lightning-cli",
    "performance",
    "guarantees",
    "development",
    "contributing",
)
"""Pages shown first in the navigation, in this order; other pages follow by name."""
EXTRAS = ["fenced-code-blocks", "tables", "header-ids", "code-friendly", "cuddled-lists"]
LINK = re.compile(r'(href|src)="([^"]*)"')
HEADING_ID = re.compile(r'<h[1-6] id="([^"]+)"')


@dataclass(frozen=True)
class Page:
    """One Markdown source and where its HTML goes."""

    source: Path
    name: str  # output file name without ".html"
    title: str


def pages() -> list[Page]:
    """The README (as ``index``) and every ``docs/*.md`` page, in navigation order."""
    found = {path.stem: path for path in DOCS.glob("*.md")}
    names = [n for n in ORDER if n in found] + sorted(n for n in found if n not in ORDER)
    return [_page(ROOT / "README.md", "index")] + [_page(found[n], n) for n in names]


def _page(source: Path, name: str) -> Page:
    first = next((line for line in source.read_text().splitlines() if line.startswith("# ")), f"# {name}")
    return Page(source, name, first[2:].strip().strip("`"))


def build_site(output: Path, api_index: str) -> list[str]:
    """Write the site into ``output`` (the API reference is already at ``output / api_index``); return problems."""
    import markdown2
    from pygments.formatters import HtmlFormatter

    output.mkdir(parents=True, exist_ok=True)
    if (DOCS / "images").is_dir():
        shutil.copytree(DOCS / "images", output / "images", dirs_exist_ok=True)
    all_pages = pages()
    by_source = {page.source.resolve(): page for page in all_pages}
    rendered = {page.name: markdown2.markdown(page.source.read_text(), extras=EXTRAS) for page in all_pages}
    anchors = {name: set(HEADING_ID.findall(body)) for name, body in rendered.items()}
    style = HtmlFormatter().get_style_defs(".codehilite")
    problems: list[str] = []
    for page in all_pages:
        links: list[tuple[str, str]] = []

        def rewrite(match: re.Match, page: Page = page, links: list = links) -> str:
            attribute, target = match.group(1), html.unescape(match.group(2))
            new, problem = _resolve(target, page, by_source, output, api_index, links)
            if attribute == "src" and new.startswith(("http:", "https:", "//")):
                problem = f"{target} would be loaded from the network; put the file under docs/images/"
            if problem:
                problems.append(f"{page.source.relative_to(ROOT)}: {problem}")
            return f'{attribute}="{html.escape(new, quote=True)}"'

        body = LINK.sub(rewrite, rendered[page.name])
        for name, anchor in links:
            if anchor not in anchors.get(name, set()):
                problems.append(f"{page.source.relative_to(ROOT)}: link to #{anchor} in {name}.html, no such heading")
        (output / f"{page.name}.html").write_text(_html(page, body, all_pages, api_index, style))
    return problems


def _resolve(target, page, by_source, output, api_index, links) -> tuple[str, str | None]:
    """Where a page's link or image goes in the site, and the problem with it (None when it is fine)."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
        return target, None
    path, _, anchor = target.partition("#")
    if not path:  # an anchor on the same page
        links.append((page.name, anchor))
        return target, None
    file = (page.source.parent / path).resolve()
    if not file.exists():
        return target, f"link to {path}, which does not exist"
    if file in by_source:
        name = by_source[file].name
        if anchor:
            links.append((name, anchor))
        return f"{name}.html" + (f"#{anchor}" if anchor else ""), None
    if file.is_relative_to(DOCS / "images"):
        return "images/" + file.relative_to(DOCS / "images").as_posix(), None
    if not file.is_relative_to(ROOT) or file.is_dir():
        return target, f"link to {path}: only files of the repository can be linked"
    relative = file.relative_to(ROOT).as_posix()
    (output / "source" / relative).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(file, output / "source" / relative)
    return f"source/{relative}", None


def _html(page: Page, body: str, all_pages: list[Page], api_index: str, style: str) -> str:
    """A whole HTML page: the navigation, then the body. No script, no font, nothing loaded from elsewhere."""
    items = [
        f'<li{" class=current" if p.name == page.name else ""}><a href="{p.name}.html">{html.escape(p.title)}</a></li>'
        for p in all_pages
    ]
    items.append(f'<li><a href="{api_index}">API reference</a></li>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(page.title)} · lightning-explain</title>
<style>
body {{ margin: 0; font: 16px/1.55 system-ui, sans-serif; color: #1f2328; display: flex; }}
nav {{ width: 15rem; flex: none; padding: 1.5rem 1rem; background: #f6f8fa; min-height: 100vh; }}
nav {{ box-sizing: border-box; }}
nav ul {{ list-style: none; padding: 0; margin: 0; }} nav li {{ margin: 0.3rem 0; }}
nav li.current a {{ font-weight: 600; color: #1f2328; }}
main {{ max-width: 60rem; padding: 1.5rem 2.5rem; min-width: 0; }}
a {{ color: #0969da; }} img {{ max-width: 100%; }}
code {{ font: 0.9em ui-monospace, monospace; background: #f0f2f4; padding: 0.1em 0.3em; border-radius: 4px; }}
pre {{ background: #f6f8fa; padding: 0.8rem; overflow-x: auto; border-radius: 6px; }} pre code {{ background: none; }}
table {{ border-collapse: collapse; display: block; overflow-x: auto; }}
th, td {{ border: 1px solid #d0d7de; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }}
{style}
</style></head>
<body><nav><strong>lightning-explain</strong><ul>
{chr(10).join(items)}
</ul></nav>
<main>
{body}
</main></body></html>
"""
