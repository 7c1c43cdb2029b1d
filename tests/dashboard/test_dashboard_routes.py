"""The Explain plugin's data routes, through TensorBoard's WSGI app and werkzeug's test client."""

from __future__ import annotations

import json
import math
import time

import pytest
from dashboard_runs import ALERT, AUC, FIT_RUN, METHODS, SYNTHETIC_RUN, SYNTHETIC_STEPS, write_synthetic
from lit_helpers import read_tensorboard
from tensorboard.backend import application
from tensorboard.plugins import base_plugin
from werkzeug import test as werkzeug_test
from werkzeug import wrappers

from lightning_explain.dashboard import ExplainPlugin

BASE = "/data/plugin/lightning_explain"


def make_client(logdir):
    plugin = ExplainPlugin(base_plugin.TBContext(logdir=str(logdir)))
    return plugin, werkzeug_test.Client(application.TensorBoardWSGI([plugin]), wrappers.Response)


@pytest.fixture(scope="module")
def client(dashboard_logdir):
    return make_client(dashboard_logdir)[1]


def get_json(client, path, **query):
    response = client.get(BASE + path, query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.loads(response.get_data(as_text=True))


@pytest.fixture(scope="module")
def fit_index(client):
    return get_json(client, "/run", run=FIT_RUN)


def test_runs_lists_every_run_with_its_tags(client, dashboard_logdir):
    listing = get_json(client, "/runs")
    assert listing["error"] is None and listing["logdir"] == str(dashboard_logdir)
    runs = {r["name"]: r for r in listing["runs"]}
    assert sorted(runs) == [FIT_RUN, SYNTHETIC_RUN]
    assert runs[FIT_RUN]["image_tags"] == 4  # explain/saliency, explain/grad_cam, overfit/{train,val}_saliency
    assert runs[SYNTHETIC_RUN] | {"generation": 0, "mtime": 0} == {
        "name": SYNTHETIC_RUN,
        "generation": 0,
        "image_tags": 1,
        "scalar_tags": 3,
        "last_step": 50,
        "mtime": 0,
    }
    assert runs[SYNTHETIC_RUN]["mtime"] >= runs[FIT_RUN]["mtime"] > 0  # written last: the page opens it


def test_every_logged_step_of_every_image_tag(fit_index, dashboard_logdir):
    """All steps, not TensorBoard's 10 samples: the same steps as an unsampled EventAccumulator reads."""
    events = read_tensorboard(dashboard_logdir / FIT_RUN)
    assert sorted(fit_index["images"]) == sorted(events.Tags()["images"])
    for tag, entry in fit_index["images"].items():
        assert entry["steps"] == sorted({e.step for e in events.Images(tag)}), tag
    assert len(fit_index["images"]["explain/saliency"]["steps"]) == 13 > 10
    for tag in events.Tags()["scalars"]:  # every scalar, every point: tags are discovered, not listed
        assert [s for s, _ in fit_index["scalars"][tag]] == [e.step for e in events.Scalars(tag)], tag


def test_cells_and_outcomes_come_from_the_grid_metadata(fit_index):
    """Each probe sample's cell lies in the image, and its right/wrong agrees with explain/probe_accuracy."""
    accuracy = dict(map(tuple, fit_index["scalars"]["explain/probe_accuracy"]))
    for method in METHODS:
        entry = fit_index["images"][f"explain/{method}"]
        width, height = entry["size"]
        assert len(entry["cells"]) == 8  # the probe: 8 samples
        for x, y, w, h in entry["cells"]:
            assert 0 <= x and x + w <= width and 0 <= y and y + h <= height and w > 0 and h > 0
        for step, frame in zip(entry["steps"], entry["frames"], strict=True):
            assert "cells" not in frame  # the layout never changes, so it is sent once
            assert len(frame["predicted"]) == len(frame["confidence"]) == 8
            assert frame["correct"] == [p == t for p, t in zip(frame["predicted"], frame["target"], strict=True)]
            assert sum(frame["correct"]) / 8 == pytest.approx(accuracy[step])
    # OverfitMonitor's pictures carry no layout: one whole picture each.
    assert fit_index["images"]["overfit/train_saliency"]["cells"] is None


def test_image_route_serves_the_logged_png(client, dashboard_logdir, fit_index):
    events = read_tensorboard(dashboard_logdir / FIT_RUN)
    for event in events.Images("explain/grad_cam")[::5]:
        query = {"run": FIT_RUN, "tag": "explain/grad_cam", "step": event.step}
        response = client.get(BASE + "/image", query_string=query)
        assert response.status_code == 200 and response.mimetype == "image/png"
        assert response.get_data() == event.encoded_image_string
    missing = client.get(BASE + "/image", query_string={"run": FIT_RUN, "tag": "explain/grad_cam", "step": 999})
    assert missing.status_code == 404 and "999" in missing.get_json()["error"]
    bad = client.get(BASE + "/image", query_string={"run": FIT_RUN, "tag": "explain/grad_cam", "step": "x"})
    assert bad.status_code == 400
    assert client.get(BASE + "/run", query_string={"run": "nope"}).status_code == 404


def test_synthetic_run_alerts_nan_and_images_without_metadata(client):
    index = get_json(client, "/run", run=SYNTHETIC_RUN)
    assert index["alerts"] == {"overfit/alert": [20, 50]}
    assert [v for _, v in index["scalars"]["overfit/alert"]] == ALERT
    auc = [v for _, v in index["scalars"]["explain/occlusion/deletion_auc"]]
    assert auc[2] is None and auc[:2] == pytest.approx(AUC[:2])  # NaN is null: the page gets strict JSON
    assert not any(isinstance(v, float) and math.isnan(v) for v in auc)
    entry = index["images"]["explain/occlusion"]
    assert entry["steps"] == SYNTHETIC_STEPS and entry["cells"] is None and entry["size"] == [30, 20]
    assert entry["frames"] == [{}] * len(SYNTHETIC_STEPS)


def test_new_events_show_up_and_unchanged_runs_cost_a_304(dashboard_logdir, tmp_path):
    run_dir = tmp_path / "live"
    write_synthetic(run_dir, steps=[0, 10], alert=[0, 0])
    plugin, client = make_client(tmp_path)
    plugin.reader.min_interval = 0.0
    first = client.get(BASE + "/run", query_string={"run": "live"})
    etag = first.headers["ETag"]
    again = client.get(BASE + "/run", query_string={"run": "live"}, headers={"If-None-Match": etag})
    assert again.status_code == 304
    write_synthetic(run_dir, steps=[20, 30], alert=[1, 1])  # training goes on: a new event file in the run
    time.sleep(0.01)
    later = client.get(BASE + "/run", query_string={"run": "live"}, headers={"If-None-Match": etag})
    assert later.status_code == 200 and later.headers["ETag"] != etag
    index = later.get_json()
    assert index["images"]["explain/occlusion"]["steps"] == [0, 10, 20, 30]
    assert index["alerts"] == {"overfit/alert": [20]}


def test_static_files_and_no_path_traversal(client):
    script = client.get(BASE + "/static/index.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert b"export async function render" in script.get_data()
    assert client.get(BASE + "/static/style.css").mimetype == "text/css"
    for path in ("/static/../plugin.py", "/static/..%2Fplugin.py", "/static/nothing.js"):
        assert client.get(BASE + path).status_code == 404, path


def test_registered_as_a_tensorboard_plugin_with_an_explain_tab(tmp_path):
    from tensorboard import default

    assert ExplainPlugin in default.get_dynamic_plugins()
    plugin = ExplainPlugin(base_plugin.TBContext(logdir=str(tmp_path)))
    meta = plugin.frontend_metadata()
    assert meta.tab_name == "Explain" and meta.es_module_path == "/static/index.js"
    assert plugin.is_active()
    empty = make_client(tmp_path)[1]
    assert get_json(empty, "/runs")["runs"] == []
    no_logdir = ExplainPlugin(base_plugin.TBContext(logdir=""))
    assert not no_logdir.is_active()
