"""On steps without an event the callbacks do no tensor work and no host synchronisation.

A real ``Trainer.fit`` (10 optimizer steps) runs ExplainCallback and both GradientNormMonitor
sources with events every 4 steps (steps 0, 4 and 8). During the fit we record, with the
trainer's ``global_step`` at the time:

- every call into the explanation and gradient-norm paths (counting wrappers);
- every torch function or tensor method called while a frame of ``lightning_explain`` is
  on the stack (a ``TorchFunctionMode``), Lightning's and the model's own calls excluded;
- every ``Tensor.item`` / ``cpu`` / ``tolist`` / ``numpy`` / ``__bool__`` / ``__float__``
  (the calls that wait for the device) made from ``lightning_explain``.

All of them must happen at event steps only, and each recorder must see the events, which
shows that it works.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lit_helpers import LitCNN, loaders, trainer
from torch.overrides import TorchFunctionMode

import lightning_explain
from lightning_explain import ExplainCallback, GradientNormMonitor, OverfitMonitor
from lightning_explain.analysis.map_statistics import ChangeSeries
from lightning_explain.callbacks import explain_callback, gradient_norm_monitor

PACKAGE = str(Path(lightning_explain.__file__).resolve().parent)
EVENT_STEPS = {0, 4, 8}
SYNCING = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__")


def package_frame() -> str | None:
    """The innermost ``lightning_explain`` function on the caller's stack, if any."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith(PACKAGE):
            return frame.f_code.co_name
        frame = frame.f_back
    return None


class PackageTorchCalls(TorchFunctionMode):
    """Records ``(global_step, torch function)`` for each torch call made under a package frame."""

    def __init__(self, fit_trainer) -> None:
        super().__init__()
        self.trainer = fit_trainer
        self.calls: list[tuple[int, str]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if package_frame() is not None:
            self.calls.append((self.trainer.global_step, getattr(func, "__name__", repr(func))))
        return func(*args, **(kwargs or {}))


def test_quiet_steps_do_no_tensor_work_and_no_host_sync(tmp_path, monkeypatch):
    callbacks = [
        ExplainCallback(every_n_steps=4, every_n_epochs=None, probe_size=4),
        GradientNormMonitor(source="train", every_n_epochs=None, every_n_steps=4),
        GradientNormMonitor(source="probe", every_n_epochs=None, every_n_steps=4, probe_size=4, prefix="probe_norm"),
        OverfitMonitor(every_n_steps=4, every_n_epochs=None, probe_size=4),
    ]
    fit_trainer = trainer(tmp_path, callbacks, logger=TensorBoardLogger(tmp_path), max_epochs=2)
    entered: list[tuple[int, str]] = []

    def counting(module, name):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            entered.append((fit_trainer.global_step, name))
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    for name in ("compute_explanation", "render_explanation_grid", "top_mass"):
        counting(explain_callback, name)
    counting(ChangeSeries, "update")  # the change statistic
    for name in ("grouped_norms", "probe_loss_gradients"):
        counting(gradient_norm_monitor, name)

    syncs: list[tuple[int, str, str]] = []
    for method in SYNCING:
        original = getattr(torch.Tensor, method)

        def recording(self, *args, _original=original, _method=method, **kwargs):
            caller = package_frame()
            if caller is not None:
                syncs.append((fit_trainer.global_step, _method, caller))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, recording)

    train, val = loaders(n_train=40, n_val=8, batch_size=8)  # 5 steps an epoch, 10 in all
    torch_calls = PackageTorchCalls(fit_trainer)
    with torch_calls:
        fit_trainer.fit(LitCNN(), train, val)
    assert fit_trainer.global_step == 10

    # The explanation and gradient-norm paths run once per event and source, at event steps only.
    counts = Counter(entered)
    assert {step for step, _ in entered} == EVENT_STEPS
    for step in EVENT_STEPS:
        assert counts[(step, "compute_explanation")] == 1
        assert counts[(step, "render_explanation_grid")] == 2  # saliency and grad_cam
        assert counts[(step, "grouped_norms")] == 2  # the train and the probe source
        assert counts[(step, "probe_loss_gradients")] == 1
    assert all(counts[(step, "update")] == 2 for step in EVENT_STEPS)  # the change of saliency and grad_cam

    # No torch call and no host synchronisation from the package outside event steps...
    quiet_torch = [(step, name) for step, name in torch_calls.calls if step not in EVENT_STEPS]
    assert quiet_torch == []
    quiet_syncs = [entry for entry in syncs if entry[0] not in EVENT_STEPS]
    assert quiet_syncs == []
    # ...while both recorders saw the events' work (so they do record).
    assert {step for step, _ in torch_calls.calls} == EVENT_STEPS
    assert {step for step, _, _ in syncs} == EVENT_STEPS


def test_the_recorder_counts_package_calls_and_ignores_others():
    """The frame check behind the test above: calls from package code are recorded, the test's are not."""
    from lightning_explain.analysis.map_statistics import top_mass

    recorder = PackageTorchCalls(SimpleNamespace(global_step=7))
    with recorder:
        torch.ones(2, 3).sum().item()
        assert recorder.calls == []
        top_mass(torch.ones(2, 10))
    names = {name for _, name in recorder.calls}
    assert {step for step, _ in recorder.calls} == {7}
    assert {"topk", "sum"} <= names


def test_a_text_model_s_quiet_steps_do_no_tensor_work_and_no_host_sync(tmp_path, monkeypatch):
    """The same for TokenExplainCallback on a BERT classifier with dict batches: events at steps 0, 4 and 8 only."""
    from text_models import LitTextClassifier, text_loaders

    from lightning_explain import TokenExplainCallback
    from lightning_explain.callbacks import token_explain_callback

    callback = TokenExplainCallback(every_n_steps=4, every_n_epochs=None, probe_size=4)
    fit_trainer = trainer(tmp_path, [callback], logger=TensorBoardLogger(tmp_path), max_epochs=2)
    entered: list[int] = []
    original = token_explain_callback.compute_token_explanation

    def counting(*args, **kwargs):
        entered.append(fit_trainer.global_step)
        return original(*args, **kwargs)

    monkeypatch.setattr(token_explain_callback, "compute_token_explanation", counting)
    syncs: list[int] = []
    for method in SYNCING:
        original_method = getattr(torch.Tensor, method)

        def recording(self, *args, _original=original_method, **kwargs):
            if package_frame() is not None:
                syncs.append(fit_trainer.global_step)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, recording)
    train, val = text_loaders(n_train=40, n_val=8)  # 5 steps an epoch, 10 in all
    torch_calls = PackageTorchCalls(fit_trainer)
    with torch_calls:
        fit_trainer.fit(LitTextClassifier(), train, val)
    assert fit_trainer.global_step == 10
    assert sorted(entered) == sorted(EVENT_STEPS)  # one explanation per event (the dry run is step 0's)
    assert {step for step, _ in torch_calls.calls} == EVENT_STEPS
    assert set(syncs) == EVENT_STEPS
