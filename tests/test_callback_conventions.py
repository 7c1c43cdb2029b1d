"""One set of conventions across the callbacks: schedules, targets, loss_fn, where errors are raised, state."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
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
    TokenExplainCallback,
)
from lightning_explain._compat import MisconfigurationException
from lightning_explain.analysis.gradient_norms import probe_loss_gradients
from lightning_explain.attribution import feature_saliency, registered
from lightning_explain.callbacks._schedule import Schedule, ScheduledProbeCallback
from lightning_explain.callbacks.feature_explain_callback import feature_methods
from tests.lit_helpers import LitCNN, RecordingLogger, loaders, make_images, trainer
from tests.text_models import LitTextClassifier, text_loaders

SCHEDULED = {
    "ExplainCallback": lambda **kw: ExplainCallback(**kw),
    "FeatureExplainCallback": lambda **kw: FeatureExplainCallback(**kw),
    "GradientNormMonitor": lambda **kw: GradientNormMonitor(**kw),
    "GradientNormMonitor(probe)": lambda **kw: GradientNormMonitor(source="probe", **kw),
    "ModelHistogramMonitor": lambda **kw: ModelHistogramMonitor(**kw),
    "ActivationMaximizationCallback": lambda **kw: ActivationMaximizationCallback(
        layer="features.3", channels=[0], steps=2, **kw
    ),
    "OverfitMonitor": lambda **kw: OverfitMonitor(probe_size=8, image_samples=0, **kw),
    "TokenExplainCallback": lambda **kw: TokenExplainCallback(**kw),
}
"""Every callback that follows a schedule, built with its required arguments."""


class LitTable(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def table_loader() -> DataLoader:
    x = torch.randn(24, 6, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()), batch_size=8)


def fit_data(name: str):
    """The model and the fit arguments a callback of ``name`` runs on."""
    if name == "FeatureExplainCallback":
        return LitTable(), {"train_dataloaders": table_loader(), "val_dataloaders": table_loader()}
    if name == "TokenExplainCallback":
        train, val = text_loaders()
        return LitTextClassifier(), {"train_dataloaders": train, "val_dataloaders": val}
    train, val = loaders()
    return LitCNN(), {"train_dataloaders": train, "val_dataloaders": val}


@pytest.mark.parametrize("name", sorted(SCHEDULED))
def test_every_scheduled_callback_has_a_schedule_and_none_means_off(tmp_path, name):
    """``every_n_steps`` / ``every_n_epochs`` read one Schedule; ``None`` for both leaves only the step-0 event."""
    if name == "OverfitMonitor":
        with pytest.raises(ValueError, match="needs a schedule"):  # its alerts need events: no schedule is refused
            SCHEDULED[name](every_n_steps=None, every_n_epochs=None)
        return
    callback = SCHEDULED[name](every_n_steps=None, every_n_epochs=None)
    assert isinstance(callback, ScheduledProbeCallback)
    assert callback.schedule == Schedule(every_n_steps=None, every_n_epochs=None) and callback.schedule.off
    assert (callback.every_n_steps, callback.every_n_epochs) == (None, None)
    model, data = fit_data(name)
    trainer(tmp_path, [callback], max_epochs=2).fit(model, **data)
    assert callback._last_event_step == 0  # the baseline (or, for source="train", the first step) and nothing else


@pytest.mark.parametrize("name", sorted(SCHEDULED))
@pytest.mark.parametrize("argument", ["every_n_steps", "every_n_epochs"])
def test_a_bad_schedule_is_a_value_error_in_init(name, argument):
    with pytest.raises(ValueError, match=rf"{argument} must be a positive int or None, got 0"):
        SCHEDULED[name](**{argument: 0})


def test_setting_a_schedule_argument_after_init_is_validated_like_in_init():
    callback = ExplainCallback(every_n_steps=None, every_n_epochs=1)
    callback.every_n_steps = 5
    assert callback.schedule == Schedule(every_n_steps=5, every_n_epochs=1)
    with pytest.raises(ValueError, match="every_n_epochs must be a positive int or None, got 0"):
        callback.every_n_epochs = 0


@pytest.mark.parametrize(
    "callback_class", [ExplainCallback, FeatureExplainCallback, SanityCheckCallback, TokenExplainCallback]
)
@pytest.mark.parametrize("target", [-1, True, "best", 1.5])
def test_one_target_rule(callback_class, target):
    """The same target check everywhere (SanityCheckCallback used to accept negative classes)."""
    with pytest.raises(ValueError, match="target must be"):
        callback_class(target=target)


def _bad_start(name):
    """A callback whose configuration only the model or the data can refute, and the message it must give."""
    images, _ = make_images(4, seed=3)
    return {
        "ExplainCallback": (ExplainCallback(layer="no.such.layer"), "no.such.layer"),
        "FeatureExplainCallback": (FeatureExplainCallback(), r"tabular inputs \(N, F\)"),
        "GradientNormMonitor": (GradientNormMonitor(source="probe", probe=images), "needs a probe with targets"),
        "ModelHistogramMonitor": (ModelHistogramMonitor(probe=torch.zeros(2, 5)), "could not run the model"),
        "ActivationMaximizationCallback": (
            ActivationMaximizationCallback(layer="features.3", channels=[99], steps=1),
            "has 8 channels",
        ),
        "OverfitMonitor": (OverfitMonitor(loss_fn=F.cross_entropy, probe_size=8), "reduction='none'"),
        "SanityCheckCallback": (SanityCheckCallback(at="fit_start", layers=["nope"]), r"layers \['nope'\]"),
        "TokenExplainCallback": (TokenExplainCallback(), r"explains token ids, integers of shape \(N, T\)"),
    }[name]


@pytest.mark.parametrize(
    "name",
    [
        "ExplainCallback",
        "FeatureExplainCallback",
        "GradientNormMonitor",
        "ModelHistogramMonitor",
        "ActivationMaximizationCallback",
        "OverfitMonitor",
        "SanityCheckCallback",
        "TokenExplainCallback",
    ],
)
def test_configuration_errors_found_at_fit_start_are_misconfiguration_exceptions(tmp_path, name):
    callback, match = _bad_start(name)
    model = LitCNN()
    train, val = loaders()
    with pytest.raises(MisconfigurationException, match=match):
        trainer(tmp_path, [callback]).fit(model, train, val)
    assert model.training_steps == 0, "the error came after training had started"


def test_gradient_norm_monitor_takes_per_sample_losses_and_reduced_ones_alike():
    """The one loss convention: (N,) per-sample losses; their mean is differentiated, a 0-d loss taken as it is."""
    model = LitCNN().eval()
    x, y = make_images(6, seed=4)
    parameters = list(model.parameters())

    def per_sample(z, t):
        return F.cross_entropy(z, t, reduction="none")

    by_sample = probe_loss_gradients(model, x, y, parameters, per_sample)
    reduced = probe_loss_gradients(model, x, y, parameters, F.cross_entropy)
    default = probe_loss_gradients(model, x, y, parameters)
    for a, b, c in zip(by_sample, reduced, default, strict=True):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, c)
    with pytest.raises(ValueError, match="one loss per sample"):
        probe_loss_gradients(model, x, y, parameters, lambda z, t: per_sample(z, t)[:2])


def test_feature_explain_callback_takes_every_input_space_method_by_name(tmp_path):
    """Every registered method that attributes to the inputs (no layer, not images only) is available by name."""
    expected = {s.name for s in registered() if not s.needs_layer and not s.needs_images and s.output == "map"}
    assert set(feature_methods()) == expected and {"saliency", "gradient_x_input", "integrated_gradients"} <= expected
    for method in feature_methods():
        callback = FeatureExplainCallback(method=method, every_n_epochs=None)
        trainer(tmp_path, [callback], max_epochs=1).fit(LitTable(), table_loader(), table_loader())
        assert callback._last_event_step == 0, method
    model = LitTable()
    x = next(iter(table_loader()))[0]
    callback = FeatureExplainCallback(method="saliency", probe=x, target="predicted")  # a probe without labels
    logger = RecordingLogger()
    trainer(tmp_path, [callback], logger=logger, max_epochs=1).fit(model, table_loader())
    assert [step for step, _ in logger.series("explain/saliency/feature/f0")] == [0, 3]  # no event was skipped
    with torch.no_grad():
        maps, _ = callback._compute(model)
    torch.testing.assert_close(maps, feature_saliency(model, x))


@pytest.mark.parametrize("name", sorted(SCHEDULED))
def test_the_base_saves_the_series_and_each_callback_adds_its_own_state(tmp_path, name):
    callback = SCHEDULED[name](every_n_epochs=1)
    model, data = fit_data(name)
    trainer(tmp_path, [callback], max_epochs=1).fit(model, **data)
    state = callback.state_dict()
    assert {"last_event_step", "probe_inputs", "probe_targets"} <= set(state)
    assert state["last_event_step"] == callback._last_event_step > 0
    fresh = SCHEDULED[name](every_n_epochs=1)
    fresh.load_state_dict(state)
    assert fresh._last_event_step == callback._last_event_step
    assert fresh.state_dict().keys() == state.keys()


READS_OUTPUT = {
    "ExplainCallback": ExplainCallback,
    "FeatureExplainCallback": FeatureExplainCallback,
    "GradientNormMonitor": GradientNormMonitor,
    "OverfitMonitor": OverfitMonitor,
    "SanityCheckCallback": SanityCheckCallback,
    "TokenExplainCallback": TokenExplainCallback,
}
"""Every callback that reads the model's output, so takes output= (the others run it only up to a layer)."""


@pytest.mark.parametrize("name", sorted(READS_OUTPUT))
def test_every_callback_that_reads_the_output_takes_output_and_checks_it_in_init(name):
    callback_class = READS_OUTPUT[name]
    for output in (None, "scores", 1, lambda out: out["scores"]):
        assert callback_class(output=output).output is output
    for bad in (3.5, ["logits"], True):
        with pytest.raises(ValueError, match="output must be None"):
            callback_class(output=bad)
    assert "output: the tensor of the model's output to read" in callback_class.__doc__  # one wording everywhere


@pytest.mark.parametrize("callback_class", [ModelHistogramMonitor, ActivationMaximizationCallback])
def test_the_callbacks_that_never_read_the_output_take_no_output(callback_class):
    assert "output" not in inspect.signature(callback_class).parameters
