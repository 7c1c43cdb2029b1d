"""Models compiled with ``torch.compile``: explained eagerly, with the eager model's maps, no recompilation of the
training graph and training unchanged.

The backends are a counting one that runs the captured graph as it is, ``"eager"`` and ``"aot_eager"``: no C++
compiler is needed.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from lit_helpers import RecordingLogger, loaders, read_tensorboard, trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_explain import ExplainCallback, GradientNormMonitor
from lightning_explain.attribution import compute_explanation, explain
from lightning_explain.callbacks.feature_explain_callback import FeatureExplainCallback
from lightning_explain.core import (
    eager_view,
    find_target_layer,
    get_layer,
    is_compiled,
    plain_layer_name,
    resolve_layer,
    uncompiled,
)

METHODS = ("saliency", "grad_cam", "integrated_gradients", "guided_backprop")


class CountingBackend:
    """A ``torch.compile`` backend that counts its compilations and runs the captured graph unchanged."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list) -> Any:
        self.calls += 1
        return gm.forward


@pytest.fixture(autouse=True)
def fresh_compiler():
    """Each test compiles from scratch: no cached code of an earlier test, no recompile limit reached.

    Afterwards the compiler's leftovers (fake tensors of its traces, freed only by a second collection) are
    collected, so that later tests counting live tensors (test_leaks) do not see them go.
    """
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
    gc.collect()
    gc.collect()


class Net(nn.Sequential):
    """A Sequential with a forward of its own: ``nn.Module.compile()`` traces user code (torch's own is skipped)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self:
            x = module(x)
        return x


def cnn(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(inplace=True),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


class Holder(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def eager_copy(net: nn.Module) -> Net:
    """A plain copy of ``net``'s weights and buffers (as they are after a training step)."""
    copy = cnn()
    copy.load_state_dict(net.state_dict())
    return copy


def images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 1, 12, 12, generator=torch.Generator().manual_seed(seed))


def train_step(model: nn.Module, x: torch.Tensor) -> None:
    """One forward and backward in training mode (what compiles the training graph); no update."""
    model.train()
    model(x).sum().backward()
    model.zero_grad(set_to_none=True)


def assert_same_maps(expected: dict, got: dict) -> None:
    assert expected.keys() == got.keys()
    for method in expected:
        assert torch.equal(expected[method], got[method]), method


# --------------------------------------------------------------------------------------------- names
def test_plain_layer_name_drops_orig_mod_segments():
    assert plain_layer_name("net._orig_mod.3") == "net.3"
    assert plain_layer_name("_orig_mod.3") == "3"
    assert plain_layer_name("_orig_mod") == ""
    assert plain_layer_name("a._orig_mod.b._orig_mod.c") == "a.b.c"
    assert plain_layer_name("features.0") == "features.0"


def test_uncompiled_and_get_layer_accept_both_spellings():
    net = cnn()
    holder = Holder(torch.compile(net, backend="eager"))
    assert is_compiled(holder.net) and not is_compiled(net) and not is_compiled(holder)
    assert uncompiled(holder.net) is net and uncompiled(net) is net
    assert get_layer(holder, "net.3") is net[3]
    assert get_layer(holder, "net._orig_mod.3") is net[3]
    assert get_layer(holder, "net") is net  # the wrapper stands for its eager module
    with pytest.raises(AttributeError):
        get_layer(holder, "net.9")


# ------------------------------------------------------------------------------------ pure functions
@pytest.mark.parametrize("backend", ["counting", "eager", "aot_eager"])
def test_a_compiled_root_gives_the_eager_maps_and_is_not_recompiled(backend):
    net, x = cnn(), images()
    counting = CountingBackend()
    compiled = torch.compile(net, backend=counting if backend == "counting" else backend)
    train_step(compiled, x)
    expected = explain(eager_copy(net), x, methods=METHODS)
    compiled_frames = counting.calls
    assert compiled_frames >= (1 if backend == "counting" else 0)
    for layer in (None, "4", "_orig_mod.4", net[4]):
        explanation = compute_explanation(compiled, x, layer=layer, methods=METHODS)
        assert_same_maps(expected, explanation.maps)
        assert explanation.layer_name == "4"
    assert torch.equal(explain(compiled, x, methods=("grad_cam",))["grad_cam"], expected["grad_cam"])
    train_step(compiled, x)
    assert counting.calls == compiled_frames  # the training graph was reused: no recompilation
    assert compiled.training and all(m.training for m in net.modules())


def test_a_compiled_submodule_gives_the_eager_maps_with_plain_layer_names():
    net, x = cnn(), images()
    counting = CountingBackend()
    holder = Holder(torch.compile(net, backend=counting))
    train_step(holder, x)
    calls = counting.calls
    expected = explain(Holder(eager_copy(net)), x, methods=METHODS)
    assert find_target_layer(holder, x) == "net.4"
    for layer in (None, "net.4", "net._orig_mod.4", net[4]):
        explanation = compute_explanation(holder, x, layer=layer, methods=("saliency", "grad_cam"))
        assert_same_maps({m: expected[m] for m in ("saliency", "grad_cam")}, explanation.maps)
        assert explanation.layer_name == "net.4"
        assert resolve_layer(holder, explanation.layer_name, x) == ("net.4", net[4])  # reported names resolve back
    assert resolve_layer(holder, holder.net, x) == ("net", net)  # the wrapper stands for its eager module
    assert_same_maps(expected, explain(holder, x, methods=METHODS))  # reported names resolve back
    train_step(holder, x)
    assert counting.calls == calls
    assert isinstance(holder._modules["net"], torch._dynamo.eval_frame.OptimizedModule)  # the wrapper stays
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in holder.modules())


def test_an_unknown_layer_name_suggests_plain_names():
    holder = Holder(torch.compile(cnn(), backend="eager"))
    with pytest.raises(ValueError, match="'net.4'"):
        explain(holder, images(), layer="net.44", methods=("grad_cam",))


@pytest.mark.parametrize("where", ["root", "submodule"])
def test_a_module_compiled_in_place_gives_the_eager_maps(where):
    x = images()
    net, counting = cnn(), CountingBackend()
    net.compile(backend=counting)
    model = net if where == "root" else Holder(net)
    train_step(model, x)
    calls = counting.calls
    assert calls >= 1 and is_compiled(net)
    expected = explain(eager_copy(net), x, methods=METHODS)
    explanation = compute_explanation(model, x, methods=METHODS)
    assert_same_maps(expected, explanation.maps)
    assert explanation.layer_name == ("4" if where == "root" else "net.4")
    train_step(model, x)
    assert counting.calls == calls


def test_the_eager_view_ends_after_an_exception():
    counting = CountingBackend()
    compiled = torch.compile(cnn(), backend=counting)
    with pytest.raises(RuntimeError, match="inside"), eager_view(compiled) as eager:
        assert eager is compiled._orig_mod
        compiled(images())
        assert counting.calls == 0  # eager inside the view
        raise RuntimeError("inside")
    compiled(images())
    assert counting.calls == 1  # compiled again after it


def test_without_set_stance_the_wrappers_are_swapped_out_and_back(monkeypatch):
    """torch before 2.6 has no ``set_stance``: the wrappers below the root step aside for the view."""
    monkeypatch.delattr(torch.compiler, "set_stance")
    x = images()
    counting = CountingBackend()
    inner = cnn()
    inner.compile(backend=counting)
    wrapper = torch.compile(Holder(inner), backend=counting)
    model = Holder(wrapper)
    train_step(model, x)
    calls, compiled_call = counting.calls, inner._compiled_call_impl
    assert calls >= 1
    expected = explain(Holder(Holder(eager_copy(inner))), x, methods=METHODS)
    with pytest.raises(RuntimeError, match="inside"), eager_view(model):
        assert model._modules["net"] is wrapper._orig_mod and inner._compiled_call_impl is None
        raise RuntimeError("inside")
    assert model._modules["net"] is wrapper and inner._compiled_call_impl is compiled_call
    explanation = compute_explanation(model, x, layer="net._orig_mod.net.4", methods=METHODS)
    assert_same_maps(expected, explanation.maps)
    assert explanation.layer_name == "net.net.4"
    assert model._modules["net"] is wrapper and inner._compiled_call_impl is compiled_call
    train_step(model, x)
    assert counting.calls == calls
    eager = Holder(Holder(eager_copy(inner)))
    root = torch.compile(eager, backend=counting)  # a compiled root: the passes run its eager module
    some = ("saliency", "grad_cam", "guided_backprop")
    assert_same_maps(explain(eager, x, methods=some), explain(root, x, methods=some))


# ------------------------------------------------------------------------------------------ callbacks
class LitCompiled(LightningModule):
    """A CNN behind ``torch.compile`` (``mode="wrapped"``), compiled in place (``"in_place"``) or plain."""

    def __init__(self, backend: Any, mode: str = "wrapped") -> None:
        super().__init__()
        net = cnn()
        net.insert(7, nn.Dropout(0.2))
        if mode == "in_place":
            net.compile(backend=backend)
        self.net = torch.compile(net, backend=backend) if mode == "wrapped" else net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def fit_compiled(tmp_path, mode: str, callbacks: list, logger: Any = None):
    """Seeded fit of a compiled LitCompiled: (its final state, the backend's compilations, the module)."""
    torch._dynamo.reset()
    seed_everything(7)
    backend = CountingBackend()
    model = LitCompiled(backend, "plain" if mode == "fit_compiled" else mode)
    train_loader, val_loader = loaders()
    run = trainer(tmp_path, callbacks, logger=logger, deterministic=True)
    fitted = torch.compile(model, backend=backend) if mode == "fit_compiled" else model
    run.fit(fitted, train_dataloaders=train_loader, val_dataloaders=val_loader)
    assert run.lightning_module is model  # Lightning hands the callbacks the LightningModule itself
    return {k: v.clone() for k, v in model.state_dict().items()}, backend.calls, model


@pytest.mark.parametrize("mode", ["wrapped", "in_place", "fit_compiled"])
def test_callbacks_explain_a_compiled_model_without_changing_or_recompiling_training(tmp_path, mode):
    plain_state, plain_calls, _ = fit_compiled(tmp_path / "plain", mode, [])
    assert plain_calls >= 1
    logger = TensorBoardLogger(tmp_path, name="tb")
    callbacks = [
        ExplainCallback(every_n_steps=2, methods=("saliency", "grad_cam", "guided_backprop")),
        GradientNormMonitor(source="probe", every_n_steps=2),
        GradientNormMonitor(every_n_steps=2),
    ]
    state, calls, model = fit_compiled(tmp_path / "explained", mode, callbacks, logger=logger)
    assert calls == plain_calls  # the callbacks' passes compiled nothing, and training was not recompiled
    assert state.keys() == plain_state.keys()
    for key in state:
        assert torch.equal(state[key], plain_state[key]), key
    events = read_tensorboard(logger.log_dir)
    for method in ("saliency", "grad_cam", "guided_backprop"):
        assert [e.step for e in events.Images(f"explain/{method}")] == [0, 2, 4, 6, 8]
        assert len(events.Scalars(f"explain/{method}/mean")) == 5
    tags = events.Tags()["scalars"]
    assert "grad_norm/probe/net.0-Conv2d" in tags and "grad_norm/train/net.0-Conv2d" in tags
    assert not any("_orig_mod" in tag for tag in tags)
    explain_callback = callbacks[0]
    assert explain_callback._layer_module is uncompiled(model.net)[4]


def test_explain_callback_takes_a_layer_name_with_or_without_orig_mod(tmp_path):
    for layer in ("net.3", "net._orig_mod.3"):  # the last convolution, not the ReLU found by default
        logger = RecordingLogger()
        callback = ExplainCallback(every_n_epochs=1, layer=layer)
        _, _, model = fit_compiled(tmp_path / layer, "wrapped", [callback], logger=logger)
        assert callback._layer_module is model.net._orig_mod[3]
        assert [step for step, _ in logger.series("explain/grad_cam/mean")] == [0, 4, 8]


class LitCompiledTable(LightningModule):
    def __init__(self, backend: Any) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.compile(nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2)), backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.05)


def test_feature_explain_callback_on_a_compiled_model(tmp_path):
    def fit(callbacks, logger=None):
        torch._dynamo.reset()
        seed_everything(3)
        backend = CountingBackend()
        model = LitCompiledTable(backend)
        x = torch.randn(64, 6, generator=torch.Generator().manual_seed(0))
        data = DataLoader(TensorDataset(x, (x[:, 2] > 0).long()), batch_size=16)
        trainer(tmp_path, callbacks, logger=logger, deterministic=True).fit(model, train_dataloaders=data)
        return model.state_dict(), backend.calls

    plain_state, plain_calls = fit([])
    logger = RecordingLogger()
    state, calls = fit([FeatureExplainCallback(every_n_steps=2, method="integrated_gradients")], logger)
    assert calls == plain_calls
    assert all(torch.equal(state[k], plain_state[k]) for k in state)
    assert [step for step, _ in logger.series("explain/integrated_gradients/feature/f2")] == [0, 2, 4, 6, 8]
