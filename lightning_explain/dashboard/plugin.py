"""The TensorBoard plugin behind the **Explain** tab: its data routes and its static files.

Registered through the ``tensorboard_plugins`` entry point, so ``tensorboard --logdir logs`` loads it. Routes,
under ``/data/plugin/lightning_explain/``:

- ``runs``: ``{"logdir", "error", "runs": [{"name", "generation", "image_tags", "scalar_tags", "last_step"}]}``;
- ``run?run=NAME``: the run's index (:func:`lightning_explain.dashboard._index.run_index`), with an ETag, so a
  poll of an unchanged run costs a 304;
- ``image?run=NAME&tag=TAG&step=STEP``: the PNG as logged (metadata chunk included);
- ``static/FILE``: the page's scripts and style (no CDN, no build step).
"""

from __future__ import annotations

import json
import mimetypes
import os
import uuid
from pathlib import Path

from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from lightning_explain.dashboard._events import LogdirReader
from lightning_explain.dashboard._index import run_index, run_summary

PLUGIN_NAME = "lightning_explain"
STATIC_DIR = Path(__file__).resolve().parent / "static"
IMAGE_CACHE_SECONDS = 3600


def _json(request, payload, code: int = 200):
    """A JSON response (strict JSON: no NaN) through TensorBoard's responder (CSP, gzip, no-cache)."""
    body = json.dumps(payload, allow_nan=False, separators=(",", ":"))
    return http_util.Respond(request, body, "application/json", code=code)


class ExplainPlugin(base_plugin.TBPlugin):
    """TensorBoard's Explain tab: one step slider for every method, a sample's filmstrip, signals, compare, live.

    Reads the log directory's event files itself, every step of its tags (see
    :mod:`lightning_explain.dashboard._events` for why TensorBoard's sampled data provider is not used).
    """

    plugin_name = PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext) -> None:
        super().__init__(context)
        logdir = context.logdir or getattr(context.flags, "logdir", "") or ""
        self.reader = LogdirReader(logdir)
        self._error = None
        if not logdir:
            self._error = "the Explain tab reads the folder given as --logdir (--logdir_spec is not supported)"
        elif "://" in str(logdir):
            self._error = f"the Explain tab reads local folders only, not {logdir}"
        self._indexes: dict[str, tuple[int, dict]] = {}
        self._layouts: dict[bytes, dict | None] = {}
        self._token = uuid.uuid4().hex[:8]  # in the ETag, so a restarted server never matches an old one

    def get_plugin_apps(self):
        """The routes: ``runs``, ``run``, ``image`` and ``static/*``."""
        return {
            "/runs": self._serve_runs,
            "/run": self._serve_run,
            "/image": self._serve_image,
            "/static/*": self._serve_static,
        }

    def is_active(self) -> bool:
        """Active whenever the log directory holds runs (the page says what to log when it finds none)."""
        return self._error is None

    def data_plugin_names(self):
        """The kinds of data the tab reads: images and scalars."""
        return ("images", "scalars")

    def frontend_metadata(self):
        """An ES module loaded in TensorBoard's plugin iframe; the tab is called *Explain*."""
        return base_plugin.FrontendMetadata(es_module_path="/static/index.js", tab_name="Explain")

    def _index(self, name: str) -> dict | None:
        """The run's index, rebuilt only when the run's generation changed. Call with the reader's lock held."""
        run = self.reader.runs.get(name)
        if run is None:
            return None
        cached = self._indexes.get(name)
        if cached is None or cached[0] != run.generation:
            cached = (run.generation, run_index(name, run.data, run.generation, cache=self._layouts))
            self._indexes[name] = cached
        return cached[1]

    @wrappers.Request.application
    def _serve_runs(self, request):
        self.reader.reload()
        with self.reader.lock:
            runs = [run_summary(r.name, r.data, r.generation, r.mtime) for r in self.reader.runs.values()]
        runs.sort(key=lambda r: r["name"])
        logdir = str(self.reader.logdir) if self.reader.logdir else ""
        return _json(request, {"logdir": logdir, "error": self._error, "runs": runs})

    @wrappers.Request.application
    def _serve_run(self, request):
        name = request.args.get("run", "")
        self.reader.reload()
        with self.reader.lock:
            index = self._index(name)
            if index is None:
                return _json(request, {"error": f"no run {name!r}"}, code=404)
            etag = f"{self._token}-{index['generation']}"
            if request.if_none_match.contains(etag):
                return wrappers.Response(status=304, headers={"ETag": f'"{etag}"'})
            response = _json(request, index)
        response.set_etag(etag)
        return response

    @wrappers.Request.application
    def _serve_image(self, request):
        name, tag = request.args.get("run", ""), request.args.get("tag", "")
        try:
            step = int(request.args.get("step", ""))
        except ValueError:
            return _json(request, {"error": "step must be an integer"}, code=400)
        with self.reader.lock:
            run = self.reader.runs.get(name)
            png = run.data.images.get(tag, {}).get(step) if run is not None else None
        if png is None:
            return _json(request, {"error": f"no image {tag!r} at step {step} in run {name!r}"}, code=404)
        return http_util.Respond(request, png, "image/png", expires=IMAGE_CACHE_SECONDS)

    @wrappers.Request.application
    def _serve_static(self, request):
        filename = request.path.rsplit("/static/", 1)[-1]
        if filename not in os.listdir(STATIC_DIR):  # only the files shipped there: no path traversal
            return http_util.Respond(request, "Not found", "text/plain", code=404)
        mimetype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if filename.endswith(".js"):
            mimetype = "text/javascript"  # some systems map .js to text/plain, which module scripts refuse
        return http_util.Respond(request, (STATIC_DIR / filename).read_bytes(), mimetype)
