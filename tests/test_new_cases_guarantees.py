"""The guarantees, for each kind of model this package learnt to explain: a Hugging Face ViT returning a
ModelOutput (also compiled), a CNN returning a dict, regression, multi-label and segmentation heads.

For each: training is bit-identical with and without ExplainCallback; a fault inside an event is a warning and
training goes on; no hook or gradient is left behind; a bad configuration stops fit before the first step.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, seed_everything
from lit_helpers import HFViT, make_images, trainer
from test_explain_heads import HeadModule, data
from torch.utils.data import DataLoader, TensorDataset
from toy_models import assert_no_hooks

from lightning_explain import ExplainCallback
from lightning_explain._compat import MisconfigurationException

pytest.importorskip("transformers")


class DictCNN(HeadModule):
    def __init__(self) -> None:
        super().__init__("classification")

    def forward(self, x: torch.Tensor) -> Any:
        features = self.features(x)
        return {"logits": self.head(features), "features": features}

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x)["logits"], y)


def compiled_vit() -> HFViT:
    model = HFViT()
    model.vit = torch.compile(model.vit, backend="eager")  # explained through the eager module
    return model


CASES = {
    "hf_vit": (HFViT, "classification"),
    "compiled_hf_vit": (compiled_vit, "classification"),
    "dict_cnn": (DictCNN, "classification"),
    "regression": (lambda: HeadModule("regression", 1), "regression"),
    "multilabel": (lambda: HeadModule("multilabel"), "multilabel"),
    "segmentation": (lambda: HeadModule("segmentation"), "segmentation"),
}


def fit_case(tmp_path, case: str, callbacks: list, **kwargs):
    build, kind = CASES[case]
    seed_everything(0)
    model = build()
    if case in ("hf_vit", "compiled_hf_vit", "dict_cnn"):
        train = DataLoader(TensorDataset(*make_images(16, seed=1)), batch_size=8)
        val = DataLoader(TensorDataset(*make_images(8, seed=2)), batch_size=8)
    else:
        train = DataLoader(TensorDataset(*data(kind, 16, 1)), batch_size=8)
        val = DataLoader(TensorDataset(*data(kind, 8, 2)), batch_size=8)
    run = trainer(tmp_path, callbacks, max_epochs=1, **kwargs)
    run.fit(model, train_dataloaders=train, val_dataloaders=val)
    return model


@pytest.mark.parametrize("case", list(CASES))
def test_training_is_bit_identical_and_nothing_is_left_behind(tmp_path, case):
    plain = fit_case(tmp_path / "plain", case, [])
    callback = ExplainCallback(every_n_steps=1, methods=("saliency", "grad_cam", "grad_cam_pp"))
    explained = fit_case(tmp_path / "explained", case, [callback])
    assert callback.head == CASES[case][1]
    for (name, a), b in zip(plain.state_dict().items(), explained.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert_no_hooks(explained)
    assert all(p.grad is None or not p.grad.requires_grad for p in explained.parameters())
    if case.endswith("hf_vit"):  # the token layer was found and read with its CLS token dropped
        assert callback.layer_name.endswith("1.layernorm_before")
        assert callback.layer_layout.prefix_tokens == 1 and callback.layer_layout.grid == (3, 3)


@pytest.mark.parametrize("case", list(CASES))
def test_a_fault_inside_an_event_is_a_warning_and_training_goes_on(tmp_path, case, monkeypatch):
    import lightning_explain.callbacks.explain_callback as explain_module

    original = explain_module.compute_explanation
    calls = []

    def failing_later(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:  # the fit-start dry run works; every later event fails
            raise RuntimeError("boom inside the explanation")
        return original(*args, **kwargs)

    monkeypatch.setattr(explain_module, "compute_explanation", failing_later)
    with pytest.warns(UserWarning, match="skipped the event at step .* boom inside the explanation"):
        model = fit_case(tmp_path, case, [ExplainCallback(every_n_steps=1)])
    assert len(calls) > 2  # tried again at every step, training went on
    assert model.trainer.global_step == 2


BAD_STARTS = {
    "hf_vit": (dict(method_options={"grad_cam": {"drop_tokens": 2}}), "cannot be decided"),
    "compiled_hf_vit": (dict(layer="vit._orig_mod.missing"), "not a module"),
    "dict_cnn": (dict(output="missing"), "output='missing' gives nothing"),
    "regression": (dict(target=2), "regression head"),
    "multilabel": (dict(target=7), "out of range"),
    "segmentation": (dict(target="label"), "segmentation head"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_configuration_stops_fit_before_the_first_step(tmp_path, case):
    options, match = BAD_STARTS[case]
    steps = []

    class CountSteps(Callback):
        def on_train_batch_end(self, *args: Any) -> None:
            steps.append(1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(MisconfigurationException, match=match):
            fit_case(tmp_path, case, [ExplainCallback(**options), CountSteps()])
    assert not steps
