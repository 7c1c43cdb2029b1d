"""``lightning-explain report``: one self-contained HTML file with the dashboard's data and images."""

from __future__ import annotations

import base64
import json
import re

import pytest
from dashboard_runs import FIT_RUN, METHODS, SYNTHETIC_RUN
from lit_helpers import read_tensorboard
from torch.utils.tensorboard import SummaryWriter

from lightning_explain.cli import main
from lightning_explain.dashboard.report import STATIC_DIR, page_scripts


def embedded(path) -> dict:
    text = path.read_text(encoding="utf-8")
    return json.loads(text.split('<script type="application/json" id="le-data">', 1)[1].split("</script>", 1)[0])


@pytest.fixture(scope="module")
def report(dashboard_logdir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", str(dashboard_logdir), "-o", str(out), "--max-steps", "4", "--run", "*"]) == 0
    return out


def test_report_is_one_self_contained_file(report):
    text = report.read_text(encoding="utf-8")
    assert not re.search(r"<(script|img|link|iframe)[^>]*\s(src|href)=", text)  # nothing to fetch
    assert not re.search(r"https?://(?!www\.w3\.org/)", text)  # only the SVG and XHTML namespace names
    for name in page_scripts():  # the Explain tab's own scripts and style, inlined
        assert (STATIC_DIR / name).read_text(encoding="utf-8") in text
    assert (STATIC_DIR / "style.css").read_text(encoding="utf-8") in text
    assert page_scripts() == ["common.js", "curves.js", "views.js", "app.js"]


def test_report_embeds_evenly_spaced_steps_and_every_scalar(report, dashboard_logdir, capsys):
    data = embedded(report)
    assert [r["name"] for r in data["runs"]] == [FIT_RUN, SYNTHETIC_RUN]
    events = read_tensorboard(dashboard_logdir / FIT_RUN)
    for method in METHODS:
        tag = f"explain/{method}"
        logged = {e.step: e.encoded_image_string for e in events.Images(tag)}
        assert sorted(logged) == list(range(13))
        assert data["indexes"][FIT_RUN]["images"][tag]["steps"] == [0, 4, 8, 12]  # first and last kept
        for step, uri in data["images"][FIT_RUN][tag].items():
            assert base64.b64decode(uri.split(",", 1)[1]) == logged[int(step)]  # the PNG as logged
    loss = data["indexes"][FIT_RUN]["scalars"]["overfit/val_loss"]
    assert [s for s, _ in loss] == [e.step for e in events.Scalars("overfit/val_loss")]
    assert data["indexes"][SYNTHETIC_RUN]["alerts"] == {"overfit/alert": [20, 50]}


def test_report_run_and_tag_globs_and_all_steps(dashboard_logdir, tmp_path, capsys):
    out = tmp_path / "fit.html"
    args = ["--run", "fit/*", "--max-steps", "0", "--tag", "explain/sal*"]
    assert main(["report", str(dashboard_logdir), "-o", str(out), *args]) == 0
    assert f"1 run(s) ({FIT_RUN}), 13 images" in capsys.readouterr().out
    data = embedded(out)
    assert list(data["indexes"]) == [FIT_RUN]
    assert list(data["indexes"][FIT_RUN]["images"]) == ["explain/saliency"] == list(data["images"][FIT_RUN])
    assert data["indexes"][FIT_RUN]["images"]["explain/saliency"]["steps"] == list(range(13))
    assert "overfit/alert" in data["indexes"][FIT_RUN]["scalars"]  # the signals stay whole


def test_report_of_the_newest_run_by_default(dashboard_logdir, tmp_path, capsys):
    assert main(["report", str(dashboard_logdir), "-o", str(tmp_path / "r.html")]) == 0
    assert f"1 run(s) ({SYNTHETIC_RUN})" in capsys.readouterr().out  # written last
    assert list(embedded(tmp_path / "r.html")["indexes"]) == [SYNTHETIC_RUN]


def test_report_survives_markup_in_tag_names(tmp_path):
    writer = SummaryWriter(str(tmp_path / "logs" / "run"))
    writer.add_scalar("explain/</script><b>x", 1.0, 0)
    writer.close()
    out = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "logs"), "-o", str(out)]) == 0
    assert "explain/</script><b>x" in embedded(out)["indexes"]["run"]["scalars"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing"], "does not exist"),
        (["LOGS", "--run", "nope*"], "no run matches --run 'nope*'; the runs are: fit/version_0, synthetic"),
        (["LOGS", "--max-steps", "-1"], "--max-steps must be positive"),
        (["EMPTY"], "no TensorBoard event files"),
    ],
)
def test_report_errors_say_what_to_change(args, message, dashboard_logdir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    paths = {"missing": str(tmp_path / "missing"), "LOGS": str(dashboard_logdir), "EMPTY": str(tmp_path / "empty")}
    with pytest.raises(SystemExit) as exit_info:
        main(["report", *[paths.get(a, a) for a in args], "-o", str(tmp_path / "r.html")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
