"""docs/build.py's site: every docs/*.md page joins it, and broken links or anchors fail the build."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("markdown2")  # pdoc's dependency: installed with the docs extra
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def site(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("docs_site", ROOT / "docs" / "_site.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "docs_site", module)
    spec.loader.exec_module(module)
    repo = tmp_path / "repo"
    (repo / "docs" / "images").mkdir(parents=True)
    (repo / "examples").mkdir()
    (repo / "examples" / "quick.py").write_text("print('hi')\n")
    (repo / "docs" / "images" / "shot.png").write_bytes(b"png")
    monkeypatch.setattr(module, "ROOT", repo)
    monkeypatch.setattr(module, "DOCS", repo / "docs")
    return module, repo


def test_every_page_joins_the_site_with_working_links(site, tmp_path):
    module, repo = site
    (repo / "README.md").write_text(
        "# Project\n\n![a shot](docs/images/shot.png) See [the CLI](docs/cli.md#usage), "
        "[an example](examples/quick.py) and [the web](https://example.org).\n"
    )
    (repo / "docs" / "cli.md").write_text("# Command line\n\n## Usage\n\nBack to [the start](../README.md).\n")
    (repo / "docs" / "zebra.md").write_text("# A page added later\n\nSee [usage](cli.md#usage).\n")
    out = tmp_path / "site"
    assert module.build_site(out, api_index="api/pkg.html") == []
    assert sorted(p.name for p in out.glob("*.html")) == ["cli.html", "index.html", "zebra.html"]
    index = (out / "index.html").read_text()
    assert 'src="images/shot.png"' in index and 'href="cli.html#usage"' in index
    assert 'href="source/examples/quick.py"' in index and (out / "source" / "examples" / "quick.py").exists()
    assert (out / "images" / "shot.png").exists()
    assert "A page added later" in index  # in the navigation of every page
    assert 'href="api/pkg.html"' in (out / "zebra.html").read_text()
    assert "<script" not in index and "http" not in index.replace("https://example.org", "")


def test_broken_links_anchors_and_remote_images_are_problems(site, tmp_path):
    module, repo = site
    (repo / "README.md").write_text("# Project\n\n[gone](docs/missing.md) and [no anchor](docs/cli.md#nowhere)\n")
    (repo / "docs" / "cli.md").write_text("# Command line\n\n![remote](https://example.org/x.png) [self](#nope)\n")
    problems = module.build_site(tmp_path / "site", api_index="api/pkg.html")
    assert any("docs/missing.md, which does not exist" in p for p in problems)
    assert any("#nowhere in cli.html" in p for p in problems)
    assert any("would be loaded from the network" in p for p in problems)
    assert any("#nope in cli.html" in p for p in problems)
    assert len(problems) == 4
