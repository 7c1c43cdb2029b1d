"""Each logger gets what it can take: TensorBoard, W&B and MLflow through their APIs, others as PNG files."""

from __future__ import annotations

import io
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger
from lit_helpers import LitCNN, RecordingLogger, loaders, read_tensorboard, trainer
from PIL import Image

from lightning_explain import ExplainCallback, GradientNormMonitor
from lightning_explain.callbacks._log_writer import LogWriter

EVENT_STEPS = [0, 2, 4]  # 4 optimizer steps, a baseline and then every 2
GRAD_STEPS = [0, 2]  # training gradients are read before the optimizer step: at global steps 0, 2 (not 4)


def callbacks():
    return [
        ExplainCallback(every_n_steps=2, every_n_epochs=None, methods=("saliency",), probe_size=4),
        GradientNormMonitor(every_n_epochs=None, every_n_steps=2, log_histogram=True),
    ]


def fit(tmp_path, logger):
    """One epoch (4 steps) with both callbacks; returns the warnings raised."""
    train, val = loaders()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer(tmp_path, callbacks(), logger=logger, max_epochs=1).fit(LitCNN(), train, val)
    return [str(w.message) for w in record]


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_tensorboard_and_csv_at_once_each_get_what_they_take(tmp_path):
    tensorboard = TensorBoardLogger(tmp_path, name="tb")
    csv = CSVLogger(tmp_path, name="csv")
    messages = fit(tmp_path, [tensorboard, csv])
    assert not [m for m in messages if "images" in m or "failed to log" in m]

    events = read_tensorboard(tensorboard.log_dir)
    images = events.Images("explain/saliency")
    assert [e.step for e in images] == EVENT_STEPS
    folder = Path(csv.log_dir) / "explain" / "saliency"
    assert sorted(p.name for p in folder.iterdir()) == [f"step_{s}.png" for s in EVENT_STEPS]
    for event in images:  # the same picture in both places
        png = decode((folder / f"step_{event.step}.png").read_bytes())
        assert png.shape[2] == 3 and png.shape[0] > 12
        np.testing.assert_array_equal(png, decode(event.encoded_image_string))

    header = (Path(csv.log_dir) / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"explain/saliency/concentration", "grad_norm/train/total", "grad_norm/train/features.0-Conv2d"} <= set(
        header
    )
    assert [e.step for e in events.Histograms("grad_norm/train/layers")] == GRAD_STEPS
    assert not (Path(csv.log_dir) / "grad_norm").exists()  # no histograms as files: the norms are in metrics.csv


def test_a_logger_with_only_a_save_dir_gets_files_there(tmp_path):
    class SaveDirLogger(RecordingLogger):
        @property
        def save_dir(self):
            return str(tmp_path / "saved")

    image = np.full((5, 6, 3), 200, np.uint8)
    writer = LogWriter([SaveDirLogger()])
    assert writer.can_log_images
    writer.image("probe_maps/grad_cam", image, 7)
    writer.close()  # images are written on a background thread
    np.testing.assert_array_equal(decode((tmp_path / "saved/probe_maps/grad_cam/step_7.png").read_bytes()), image)


def test_a_failing_logger_does_not_cost_the_others_their_data(tmp_path):
    class BrokenLogger(RecordingLogger):
        def log_metrics(self, metrics, step=None):
            if any(key.startswith(("explain/", "grad_norm/")) for key in metrics):
                raise RuntimeError("disk full")
            super().log_metrics(metrics, step)

    csv = CSVLogger(tmp_path, name="csv")
    messages = fit(tmp_path, [BrokenLogger(), csv])

    failures = sorted(m for m in messages if "failed to log" in m)  # once per callback
    assert [m.split(":")[0] for m in failures] == ["ExplainCallback", "GradientNormMonitor"]
    assert all("BrokenLogger failed to log scalars (RuntimeError: disk full)" in m for m in failures)
    assert [m for m in messages if "BrokenLogger cannot take images" in m]  # no directory: scalars only
    assert not [m for m in messages if "skipped the event" in m]
    assert sorted(p.name for p in (Path(csv.log_dir) / "explain" / "saliency").iterdir()) == [
        f"step_{s}.png" for s in EVENT_STEPS
    ]
    assert "grad_norm/train/total" in (Path(csv.log_dir) / "metrics.csv").read_text()


# ----------------------------------------------------------------- W&B and MLflow, with fake client packages
class FakeMedia:
    def __init__(self, data):
        self.data = np.asarray(data)


def fake_modules(monkeypatch, modules):
    for name, attributes in modules.items():
        module = types.ModuleType(name)
        for key, value in attributes.items():
            setattr(module, key, value)
        monkeypatch.setitem(sys.modules, name, module)


class FakeRun:
    """What WandbLogger uses of a ``wandb`` run."""

    id = name = "fake-run"

    def __init__(self):
        self.logged = []
        self.config = types.SimpleNamespace(update=lambda *args, **kwargs: None)

    def log(self, data):
        self.logged.append(dict(data))


def test_wandb_gets_images_histograms_and_scalars_through_the_loggers_api(tmp_path, monkeypatch):
    media = {"Image": type("Image", (FakeMedia,), {}), "Histogram": type("Histogram", (FakeMedia,), {})}
    fake_modules(monkeypatch, {"wandb": dict(media, run=None)})
    fake_modules(monkeypatch, {"wandb.sdk": {}, "wandb.sdk.lib": {"RunDisabled": type("RunDisabled", (), {})}})
    fake_modules(monkeypatch, {"wandb.wandb_run": {"Run": FakeRun}})
    monkeypatch.setattr("lightning.pytorch.loggers.wandb._WANDB_AVAILABLE", True)
    run = FakeRun()
    fit(tmp_path, WandbLogger(experiment=run, save_dir=str(tmp_path / "wandb")))

    def logged(key):
        return [(entry["trainer/global_step"], entry[key]) for entry in run.logged if key in entry]

    images = logged("explain/saliency")
    assert [step for step, _ in images] == EVENT_STEPS
    for _, value in images:
        (image,) = value
        assert type(image).__name__ == "Image" and image.data.dtype == np.uint8 and image.data.shape[2] == 3
    histograms = logged("grad_norm/train/layers")
    assert [step for step, _ in histograms] == GRAD_STEPS
    assert all(type(h).__name__ == "Histogram" and len(h.data) == 4 for _, h in histograms)  # LitCNN: 4 layers
    assert [step for step, _ in logged("explain/saliency/concentration")] == EVENT_STEPS
    assert not (tmp_path / "wandb" / "explain").exists()


class FakeMlflowClient:
    """What MLFlowLogger uses of ``mlflow.MlflowClient``, with the ``log_image`` of MLflow >= 2.12."""

    def __init__(self, tracking_uri=None):
        self.metrics, self.images = [], []

    def get_run(self, run_id):
        return types.SimpleNamespace(info=types.SimpleNamespace(experiment_id="0", run_id=run_id))

    def log_batch(self, run_id, metrics=(), params=(), tags=(), **kwargs):
        self.metrics += [(run_id, m.key, m.step) for m in metrics]

    def set_terminated(self, run_id, status=None):
        pass

    def log_image(self, run_id, image, artifact_file=None, key=None, step=None, timestamp=None, synchronous=None):
        self.images.append((run_id, np.asarray(image), dict(artifact_file=artifact_file, key=key, step=step)))


class OldFakeMlflowClient(FakeMlflowClient):
    """``log_image`` before MLflow 2.12: a static artifact only."""

    def log_image(self, run_id, image, artifact_file):
        self.images.append((run_id, np.asarray(image), dict(artifact_file=artifact_file)))


@pytest.mark.parametrize("client", [FakeMlflowClient, OldFakeMlflowClient])
def test_mlflow_gets_images_through_log_image(tmp_path, monkeypatch, client):
    class Entity:
        def __init__(self, key, value, timestamp=None, step=0):
            self.key, self.value, self.step = key, value, step

    fake_modules(monkeypatch, {"mlflow": {"set_tracking_uri": lambda uri: None}})
    fake_modules(monkeypatch, {"mlflow.tracking": {"MlflowClient": client}})
    fake_modules(monkeypatch, {"mlflow.entities": {"Metric": Entity, "Param": Entity}})
    monkeypatch.setattr("lightning.pytorch.loggers.mlflow._MLFLOW_AVAILABLE", True)
    logger = MLFlowLogger(run_id="run-7", save_dir=str(tmp_path / "mlruns"))
    fit(tmp_path, logger)

    images = logger.experiment.images
    assert [run_id for run_id, _, _ in images] == ["run-7"] * 3
    assert all(image.dtype == np.uint8 and image.shape[2] == 3 for _, image, _ in images)
    if client is FakeMlflowClient:
        assert [where for _, _, where in images] == [
            dict(artifact_file=None, key="explain/saliency", step=s) for s in EVENT_STEPS
        ]
    else:
        assert [where for _, _, where in images] == [
            dict(artifact_file=f"explain/saliency/step_{s}.png") for s in EVENT_STEPS
        ]
    steps = sorted(step for _, key, step in logger.experiment.metrics if key == "grad_norm/train/total")
    assert steps == GRAD_STEPS


def images_threads():
    import threading

    return [t for t in threading.enumerate() if t.name.startswith("lightning-explain-images")]


def test_images_are_written_in_the_background_in_order_and_close_waits_for_them(tmp_path, monkeypatch):
    import time

    from lightning_explain.callbacks import _log_writer

    class SlowDirLogger(RecordingLogger):
        @property
        def save_dir(self):
            return str(tmp_path / "saved")

    original = _log_writer.encode_png
    monkeypatch.setattr(_log_writer, "encode_png", lambda image, **kw: (time.sleep(0.02), original(image, **kw))[1])
    writer = LogWriter([SlowDirLogger()])
    start = time.perf_counter()
    images = [np.full((4, 4, 3), 10 * step, np.uint8) for step in range(12)]
    for step, image in enumerate(images):
        writer.image("maps", image, step)
        assert len(writer._pending) <= _log_writer.MAX_PENDING_IMAGES  # bounded: no growth when logging is slow
    handed_over = time.perf_counter() - start
    writer.close()
    assert handed_over < 12 * 0.02  # the caller did not wait for every encoding
    for step, image in enumerate(images):
        np.testing.assert_array_equal(decode((tmp_path / "saved" / "maps" / f"step_{step}.png").read_bytes()), image)
    assert not images_threads()  # close stops the thread


def test_a_logger_failing_on_the_background_thread_is_a_warning_and_the_others_get_the_image(tmp_path):
    class BrokenImages(RecordingLogger):
        @property
        def save_dir(self):
            return "/proc/no/such/place"  # cannot be created

    class GoodDir(RecordingLogger):
        @property
        def save_dir(self):
            return str(tmp_path / "good")

    writer = LogWriter([BrokenImages(), GoodDir()], owner="Test")
    with pytest.warns(UserWarning, match=r"Test: BrokenImages failed to log an image"):
        writer.image("maps", np.zeros((3, 3, 3), np.uint8), 1)
        writer.close()
    assert (tmp_path / "good" / "maps" / "step_1.png").exists()


def test_fit_leaves_no_image_thread_behind(tmp_path):
    before = len(images_threads())
    fit(tmp_path, [TensorBoardLogger(tmp_path, name="tb")])
    assert len(images_threads()) == before == 0


@pytest.mark.parametrize("sink_type", ["_WandbSink", "_MLFlowSink"])
def test_loggers_that_need_ordered_steps_get_the_image_before_image_returns(sink_type):
    """W&B drops a step older than its current one, so its images are not left to the background thread."""
    import threading

    from lightning_explain.callbacks import _log_writer

    seen = []

    class Ordered(getattr(_log_writer, sink_type)):
        def image(self, tag, image, png, step):
            seen.append((step, threading.current_thread() is threading.main_thread()))

    writer = LogWriter([])
    writer.sinks = [Ordered(object())]
    writer.image("maps", np.zeros((2, 2, 3), np.uint8), 3)
    assert seen == [(3, True)]
    assert writer._images is None  # no background thread for such loggers
