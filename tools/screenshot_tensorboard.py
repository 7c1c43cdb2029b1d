"""Screenshot TensorBoard's Images tab on the demo's logs, for the README (docs/images/tensorboard_images.png).

Runs examples/digits.py into a temporary folder (or uses --logdir), serves it with a real ``tensorboard`` on a
free local port, and photographs the page with headless Chromium (Debian: ``apt-get install chromium``). The
servers are stopped whatever happens. Needs no Python package beyond the project's own (Pillow comes with
tensorboard) and no network beyond localhost.

    python tools/screenshot_tensorboard.py                      # demo (about a minute) + screenshot
    python tools/screenshot_tensorboard.py --logdir logs/digits # an existing run instead
    python tools/screenshot_tensorboard.py --logdir logs/text --min-colours 300 \
        --tags explain/input_x_gradient,explain/integrated_gradients \
        --out docs/images/tensorboard_text.png   # the text example's token pictures
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A screenshot of a page still loading has a few hundred colours (header, text); heatmap grids have thousands.
MIN_COLOURS = 2000


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def tensorboard_server(logdir: str | os.PathLike, *options: str):
    """A real ``tensorboard`` serving ``logdir`` on a free local port, with ``options``: yields the port.

    The server is stopped whatever happens.
    """
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1"]
        + ["--port", str(port), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def find_chromium(explicit: str | None) -> str:
    """The Chromium executable: ``explicit``, else the first of chromium, chromium-browser, google-chrome on PATH."""
    for name in [explicit] if explicit else ["chromium", "chromium-browser", "google-chrome"]:
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no Chromium found; install it (Debian: apt-get install chromium) or pass --chromium PATH")


def wait_for_images(port: int, tags: list[str], timeout: float = 60.0) -> None:
    """Wait until TensorBoard serves and has loaded every one of ``tags`` in some run."""
    url = f"http://127.0.0.1:{port}/data/plugin/images/tags"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                runs = json.load(response)
            if all(any(tag in run_tags for run_tags in runs.values()) for tag in tags):
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"TensorBoard did not serve the image tags {tags} within {timeout:.0f} s")


def screenshot(chromium: str, url: str, out: Path, size: tuple[int, int], budget_ms: int) -> int:
    """Photograph ``url`` into ``out``; return the number of distinct colours in the picture."""
    from PIL import Image

    command = [
        chromium,
        "--headless",
        "--no-sandbox",  # needed when run as root, e.g. in a container
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--window-size={size[0]},{size[1]}",
        f"--virtual-time-budget={budget_ms}",  # let the page's scripts and image requests finish
        f"--screenshot={out}",
        url,
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    with Image.open(out) as image:
        return len(image.convert("RGB").getcolors(1 << 24))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logdir", help="an existing TensorBoard log folder (default: run the demo)")
    parser.add_argument("--max-epochs", type=int, default=10, help="demo epochs (default: 10)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "tensorboard_images.png"))
    parser.add_argument("--size", default="1060x1320", help="window WIDTHxHEIGHT (default: 1060x1320)")
    parser.add_argument(
        "--tags",
        default="explain/grad_cam,explain/integrated_gradients",
        help="image tags to wait for, comma-separated (default: the demo's)",
    )
    parser.add_argument("--page", default="images", help="TensorBoard tab: images or timeseries (default: images)")
    parser.add_argument("--budget-ms", type=int, default=15000, help="Chromium's virtual time budget")
    parser.add_argument("--chromium", help="the Chromium executable (default: found on PATH)")
    parser.add_argument(
        "--min-colours",
        type=int,
        default=MIN_COLOURS,
        help=f"fewer distinct colours than this means the images did not load (default: {MIN_COLOURS}; token "
        "pictures, flat boxes of colour, have far fewer than heatmaps)",
    )
    args = parser.parse_args(argv)
    chromium = find_chromium(args.chromium)
    width, height = (int(v) for v in args.size.lower().split("x"))
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="lightning-explain-screenshot-") as tmp:
        logdir = Path(args.logdir) if args.logdir else Path(tmp) / "logs"
        if not args.logdir:
            demo = [sys.executable, str(ROOT / "examples" / "digits.py"), "--logdir", str(logdir)]
            print(f"running the demo into {logdir} ...", flush=True)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
            subprocess.run([*demo, "--max-epochs", str(args.max_epochs)], check=True, capture_output=True, env=env)
        with tensorboard_server(logdir, "--samples_per_plugin", "images=1000") as port:
            wait_for_images(port, args.tags.split(","))
            url = f"http://127.0.0.1:{port}/#{args.page}"
            for budget in (args.budget_ms, 3 * args.budget_ms):
                colours = screenshot(chromium, url, out, (width, height), budget)
                if colours >= args.min_colours:
                    break
                print(f"only {colours} colours: the images may not have loaded; retrying with a longer wait")
            else:
                sys.exit(f"the screenshot {out} seems to show no images ({colours} colours); check it")
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB, {colours} colours)")


if __name__ == "__main__":
    main()
