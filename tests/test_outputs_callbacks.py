"""output= on every callback that runs the model: a dict, a ModelOutput or a tuple reads like the plain tensor.

A LightningModule whose forward wraps its logits (a ``{"logits": ...}`` dict, a transformers
``SequenceClassifierOutput``, a tuple, or a dict under another key with ``output="scores"``) must fit and
log exactly what the same model returning the tensor logs, from the same seed. A regression model (one
output, MSE, integer-valued targets) is explained for its output, not for a class.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lit_helpers import LitCNN, RecordingLogger, loaders, trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_explain import (
    ActivationMaximizationCallback,
    ExplainCallback,
    FeatureExplainCallback,
    GradientNormMonitor,
    ModelHistogramMonitor,
    OverfitMonitor,
    SanityCheckCallback,
)
from lightning_explain._compat import MisconfigurationException

modeling_outputs = pytest.importorskip("transformers.modeling_outputs")


def wrap(logits: torch.Tensor, kind: str) -> Any:
    """What a model of ``kind`` returns for ``logits``."""
    if kind == "dict":
        return {"logits": logits, "hidden": logits.detach() * 0}
    if kind == "model_output":
        return modeling_outputs.SequenceClassifierOutput(logits=logits)
    if kind == "tuple":
        return (logits, logits.detach() * 0)
    if kind == "scores":
        return {"scores": logits, "hidden": logits.detach() * 0}
    return logits


def unwrap(output: Any, kind: str) -> torch.Tensor:
    """The logits in what a model of ``kind`` returned, as the model's own training step reads them."""
    if kind in ("dict", "model_output"):
        return output["logits"]
    if kind == "tuple":
        return output[0]
    if kind == "scores":
        return output["scores"]
    return output


KINDS = {"dict": None, "model_output": None, "tuple": None, "scores": "scores"}
"""Each wrapped output, and the ``output=`` it needs."""


class OutputCNN(LitCNN):
    """:class:`LitCNN` whose forward returns its logits wrapped as ``kind`` says."""

    def __init__(self, kind: str = "tensor") -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> Any:
        return wrap(super().forward(x), self.kind)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.training_steps += 1
        x, y = batch
        return F.cross_entropy(unwrap(self(x), self.kind), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        pass


class OutputTable(LightningModule):
    """An MLP over (N, 6) features, three classes, or one output (``regression``) trained with MSE."""

    def __init__(self, kind: str = "tensor", regression: bool = False) -> None:
        super().__init__()
        self.kind = kind
        self.regression = regression
        self.net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1 if regression else 3))

    def forward(self, x: torch.Tensor) -> Any:
        return wrap(self.net(x), self.kind)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = unwrap(self(x), self.kind)
        if self.regression:
            return F.mse_loss(logits[:, 0], y.float())
        return F.cross_entropy(logits, y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def table_loader(targets: str = "class") -> DataLoader:
    """Tabular data: class labels, or counts (0 to 3) as integer-valued floats (``"float"``) or int64 (``"int"``)."""
    x = torch.randn(24, 6, generator=torch.Generator().manual_seed(0))
    if targets == "class":
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    else:
        y = 2 * (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
        y = y.float() if targets == "float" else y
    return DataLoader(TensorDataset(x, y), batch_size=8)


CALLBACKS = {
    "ExplainCallback": lambda **kw: ExplainCallback(every_n_steps=2, **kw),
    "FeatureExplainCallback": lambda **kw: FeatureExplainCallback(every_n_steps=2, **kw),
    "GradientNormMonitor(probe)": lambda **kw: GradientNormMonitor(source="probe", every_n_steps=2, **kw),
    "GradientNormMonitor(train)": lambda **kw: GradientNormMonitor(every_n_steps=2, **kw),
    "OverfitMonitor": lambda **kw: OverfitMonitor(probe_size=8, every_n_steps=2, image_samples=0, **kw),
    "SanityCheckCallback": lambda **kw: SanityCheckCallback(at="fit_start", **kw),
}
"""Every callback that reads the model's output (GradientNormMonitor only with source="probe"; with
source="train" it reads the gradients, and must not mind the output either)."""


def run(tmp_path, name: str, kind: str, output: Any = None) -> tuple[Any, LightningModule, dict]:
    """Fit ``CALLBACKS[name]`` on a model returning ``kind``, from one seed; its callback, model and scalars."""
    callback = CALLBACKS[name](**({} if output is None else {"output": output}))
    torch.manual_seed(0)
    if name == "FeatureExplainCallback":
        model, data = OutputTable(kind), (table_loader(), table_loader())
    else:
        model, data = OutputCNN(kind), loaders()
    logger = RecordingLogger()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the recording logger takes no images; a few events only
        trainer(tmp_path / name / kind, [callback], logger=logger, max_epochs=1).fit(model, *data)
    prefix = callback.prefix + "/"
    scalars = {(step, k): v for step, metrics in logger.metrics for k, v in metrics.items() if k.startswith(prefix)}
    return callback, model, scalars


def computed(name: str, callback: Any, model: LightningModule) -> Any:
    """What the callback's event computes now, after the fit (maps, gradients), to compare across outputs."""
    with torch.no_grad():
        if name == "ExplainCallback":
            return callback._compute(model).maps
        if name == "FeatureExplainCallback":
            return callback._compute(model)[0]
        if name == "GradientNormMonitor(probe)":
            return callback._compute(model)[0]
        if name == "OverfitMonitor":
            return {k: (r.losses, r.maps) for k, r in callback._compute(model).items()}
    if name == "SanityCheckCallback":
        return {method: [rho for _, rho in series] for method, series in callback.result.correlations.items()}
    return callback._last_event_step


@pytest.mark.parametrize("name", sorted(CALLBACKS))
def test_a_wrapped_output_logs_what_the_plain_tensor_logs(tmp_path, name):
    reference, reference_model, expected = run(tmp_path, name, "tensor")
    assert expected, f"{name} logged nothing"
    for kind, output in KINDS.items():
        callback, model, scalars = run(tmp_path, name, kind, output)
        assert scalars.keys() == expected.keys(), kind
        for key, value in expected.items():
            assert scalars[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (kind, key)
        torch.testing.assert_close(computed(name, callback, model), computed(name, reference, reference_model))


@pytest.mark.parametrize("name", ["ExplainCallback", "GradientNormMonitor(probe)", "OverfitMonitor"])
def test_a_dict_without_logits_stops_fit_naming_output(tmp_path, name):
    with pytest.raises(MisconfigurationException, match=r"\['scores', 'hidden'\].*output="):
        run(tmp_path, name, "scores")


@pytest.mark.parametrize(
    "callback",
    [
        lambda: ModelHistogramMonitor(every_n_steps=2),
        lambda: ActivationMaximizationCallback(layer="features.3", channels=[0], steps=2, every_n_steps=2),
    ],
    ids=["ModelHistogramMonitor", "ActivationMaximizationCallback"],
)
def test_the_callbacks_that_never_read_the_output_fit_on_any_output(tmp_path, callback):
    """They run the model up to its layers (histograms, a channel to maximise) and never read what it returns."""
    for kind in KINDS:
        instance = callback()
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer(tmp_path / kind, [instance], max_epochs=1).fit(OutputCNN(kind), *loaders())
        assert instance._last_event_step == 4, kind


def mse_per_sample(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(y_hat[:, 0], y.float(), reduction="none")


@pytest.mark.parametrize("targets", ["float", "int"])
@pytest.mark.parametrize("kind", ["tensor", "model_output"])
def test_a_regression_model_is_explained_for_its_output(tmp_path, targets, kind):
    """One output and integer-valued targets (counts): no class to pick, no accuracy, no refusal."""
    feature = FeatureExplainCallback(every_n_steps=1, every_n_epochs=None)
    gradients = GradientNormMonitor(source="probe", loss_fn=mse_per_sample, every_n_steps=1, every_n_epochs=None)
    sanity = SanityCheckCallback(methods=("saliency",), at="fit_start")
    logger = RecordingLogger()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer(tmp_path, [feature, gradients, sanity], logger=logger, max_epochs=1).fit(
            OutputTable(kind, regression=True), table_loader(targets), table_loader(targets)
        )
    assert feature.head == "regression" and sanity.head == "regression"
    assert feature.probe.targets.dtype == (torch.float32 if targets == "float" else torch.int64)
    assert [step for step, _ in logger.series("explain/saliency/feature/f0")] == [0, 1, 2, 3]
    assert [step for step, _ in logger.series("grad_norm/probe/total")] == [0, 1, 2, 3]
    assert logger.series("sanity_check/saliency/final")
    assert not logger.series("explain/probe_accuracy")  # no class labels on a regression head
