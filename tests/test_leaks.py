"""Thousands of explanations leave no hooks, no retained graphs and no memory growth."""

from __future__ import annotations

import gc
import os

import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lit_helpers import LitCNN, loaders, trainer
from toy_models import TinyCNN, assert_no_hooks, warm_batchnorm

from lightning_explain import ExplainCallback, GradientNormMonitor
from lightning_explain.attribution import explain

MiB = 2**20


def resident_bytes() -> int:
    """The process's resident set size, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def live_tensors() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


def test_thousands_of_explain_calls_leave_no_hooks_graphs_or_memory_growth():
    torch.manual_seed(0)
    inputs = torch.randn(4, 1, 16, 16)
    model = warm_batchnorm(TinyCNN(), inputs)

    def call():
        maps = explain(model, inputs, target=torch.tensor([0, 1, 2, 0]))
        assert all(m.grad_fn is None and not m.requires_grad for m in maps.values())  # no graph kept alive
        return maps

    for _ in range(200):  # warm-up: allocator pools, autograd caches
        call()
    tensors, resident = live_tensors(), resident_bytes()
    for _ in range(3000):
        call()
    assert live_tensors() == tensors
    assert resident_bytes() - resident < 20 * MiB
    assert_no_hooks(model)
    assert all(p.grad is None for p in model.parameters())


class MemoryProbe(Callback):
    """Records live tensors and resident memory at two training steps."""

    def __init__(self, early: int, late: int):
        self.early, self.late = early, late
        self.readings: dict[int, tuple[int, int]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step in (self.early, self.late) and trainer.global_step not in self.readings:
            self.readings[trainer.global_step] = (live_tensors(), resident_bytes())


def test_a_long_run_with_an_event_at_every_step_does_not_grow(tmp_path):
    steps = 150
    train_loader, _ = loaders(n_train=8 * steps)
    probe = MemoryProbe(early=30, late=steps)
    callbacks = [
        ExplainCallback(every_n_steps=1, probe_size=4),
        GradientNormMonitor(source="probe", every_n_steps=1),
        GradientNormMonitor(every_n_steps=1),
        probe,
    ]
    model = LitCNN()
    run = trainer(tmp_path, callbacks, logger=TensorBoardLogger(tmp_path, name="tb"), max_epochs=1)
    run.fit(model, train_dataloaders=train_loader)
    assert run.global_step == steps
    (early_tensors, early_resident), (late_tensors, late_resident) = probe.readings[30], probe.readings[steps]
    # A leak would add a tensor or more per event (120 events in between). Images waiting for the writer's
    # thread hold their tensors (at most MAX_PENDING_IMAGES queued), so the count may differ by that.
    from lightning_explain.callbacks._log_writer import MAX_PENDING_IMAGES

    assert abs(late_tensors - early_tensors) <= MAX_PENDING_IMAGES
    assert late_resident - early_resident < 30 * MiB
    assert_no_hooks(model)


def test_thousands_of_explanations_of_a_vision_transformer_leave_nothing_behind():
    """The token-layer path (layout detection, prefix tokens), a ModelOutput's logits and the attention rollout."""

    pytest.importorskip("transformers")
    import transformers
    from vit_models import vit_config

    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(vit_config(classes=3)).eval()  # returns a ModelOutput
    inputs = torch.randn(4, 3, 16, 16)
    methods = ("saliency", "grad_cam", "attention_rollout")

    def call():
        maps = explain(model, inputs, target=torch.tensor([0, 1, 2, 0]), methods=methods)
        assert all(m.grad_fn is None and not m.requires_grad for m in maps.values())
        return maps

    for _ in range(50):
        call()
    tensors, resident = live_tensors(), resident_bytes()
    for _ in range(1000):
        call()
    assert live_tensors() == tensors
    assert resident_bytes() - resident < 20 * MiB
    assert_no_hooks(model)
    assert all(p.grad is None for p in model.parameters())


def test_hundreds_of_token_explanations_of_a_text_model_leave_nothing_behind():
    """The embedding layer's passes (saliency and input x gradient shared, integrated gradients' replaced outputs),
    the attention mask passed on, and the token deletion metric."""
    from text_models import bert, text_batch

    from lightning_explain.attribution import compute_token_explanation, token_deletion_insertion

    torch.manual_seed(0)
    model = bert()
    batch = text_batch(4, 10)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    methods = ("input_x_gradient", "saliency", "integrated_gradients")
    options = {"integrated_gradients": {"steps": 4}}

    def call():
        explanation = compute_token_explanation(model, ids, None, None, methods, options=options, attention_mask=mask)
        assert all(m.grad_fn is None and not m.requires_grad for m in explanation.maps.values())
        token_deletion_insertion(model, ids, explanation.maps["saliency"], attention_mask=mask, steps=4)

    for _ in range(30):
        call()
    tensors, resident = live_tensors(), resident_bytes()
    for _ in range(400):  # a leak of one tensor per call would show 400 times
        call()
    assert live_tensors() == tensors
    assert resident_bytes() - resident < 20 * MiB
    assert_no_hooks(model)
    assert all(p.grad is None for p in model.parameters())
