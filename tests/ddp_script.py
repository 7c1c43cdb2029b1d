"""Run by ``test_distributed.py`` in a subprocess: a 2-process CPU DDP fit with every callback.

Usage: ``python tests/ddp_script.py OUT_DIR [--no-callbacks | --stop-on-alert] [--hf-vit | --text]``
(``--hf-vit``: a transformers ViT returning a ``ModelOutput``, with ExplainCallback only; ``--text``: a small BERT
classifier on dict batches with TokenExplainCallback, all three token methods and quality scalars). With
``--stop-on-alert`` the only callback is an ``OverfitMonitor`` forced to alert at step 1 with
``stop_on_alert=True``: both ranks must stop there together. Lightning's DDP launcher starts
rank 1 by running this script again. Each rank writes ``OUT_DIR/rank_<r>.json`` with what it
saw: how often our log writer was called on that rank, and a digest of the final weights.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger

sys.path.insert(0, str(Path(__file__).parent))

from lit_helpers import HFViT, LitCNN, loaders  # noqa: E402
from text_models import LitTextClassifier, text_loaders  # noqa: E402

from lightning_explain import ExplainCallback, GradientNormMonitor, OverfitMonitor, TokenExplainCallback  # noqa: E402
from lightning_explain.callbacks import _log_writer  # noqa: E402

STEPS = 4  # 32 training samples, batches of 8, over 2 ranks -> 2 steps per epoch, 2 epochs


def main() -> None:
    out = Path(sys.argv[1])
    with_callbacks = "--no-callbacks" not in sys.argv
    calls = {"scalars": 0, "image": 0, "histogram": 0, "text": 0}
    for name in calls:  # count every write attempt on this rank
        original = getattr(_log_writer.LogWriter, name)

        def counting(self, *args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        setattr(_log_writer.LogWriter, name, counting)

    seed_everything(3)
    callbacks = []
    max_epochs = 2
    if "--stop-on-alert" in sys.argv:
        monitor = OverfitMonitor(
            every_n_steps=1, probe_size=8, masks={"train": torch.ones(8, 12, 12)}, stop_on_alert=True
        )
        monitor.detector.max_mask_ratio = float("inf")  # any learnt model "looks elsewhere"
        monitor.detector.first_train_loss = float("inf")  # and counts as learnt
        callbacks, max_epochs = [monitor], 10
    elif with_callbacks:
        callbacks = [
            ExplainCallback(every_n_steps=1),
            GradientNormMonitor(source="probe", every_n_steps=1, log_histogram=True),
            GradientNormMonitor(every_n_steps=1),
        ]
    model = LitCNN()
    if "--hf-vit" in sys.argv:  # a transformers ViT returning a ModelOutput: a token layer, the logits picked
        model = HFViT()
        callbacks = [ExplainCallback(every_n_steps=1)] if with_callbacks else []
    train_loader, val_loader = loaders()
    if "--text" in sys.argv:  # dict batches of token ids; the attention mask passed on; the padding token replaces
        model = LitTextClassifier()
        methods = ("input_x_gradient", "saliency", "integrated_gradients")
        options = {"integrated_gradients": {"steps": 4}}
        quality = ("deletion", "insertion")
        token = TokenExplainCallback(every_n_steps=1, methods=methods, method_options=options, quality=quality)
        callbacks = [token] if with_callbacks else []
        train_loader, val_loader = text_loaders(n_train=32)
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=max_epochs,
        logger=TensorBoardLogger(out / "logs", name="", version=""),
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        deterministic=True,
    )
    trainer.fit(model, train_dataloaders=train_loader, val_dataloaders=val_loader)
    weights = {k: v.double().sum().item() for k, v in model.state_dict().items()}
    report = {"rank": trainer.global_rank, "steps": trainer.global_step, "calls": calls, "weights": weights}
    (out / f"rank_{trainer.global_rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
