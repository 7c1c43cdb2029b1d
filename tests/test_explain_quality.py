"""ExplainCallback(quality=..., masks=...): faithfulness and localisation scalars per method and event, beside
random maps; off by default; bad configuration refused early; training unchanged."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from lit_helpers import LitCNN, loaders, make_images, read_tensorboard, trainer

from lightning_explain import ExplainCallback
from lightning_explain._compat import MisconfigurationException
from lightning_explain.attribution import deletion_insertion, energy_in_mask, explain, pointing_game

PROBE_X, PROBE_Y = make_images(6, seed=5)
MASKS = torch.zeros(6, 12, 12, dtype=torch.bool)
for i, label in enumerate(PROBE_Y.tolist()):  # make_images puts class c's square at rows 1+3c.., columns 2..5
    MASKS[i, 1 + 3 * label : 4 + 3 * label, 2:5] = True
ALL = ("deletion", "insertion", "pointing_game", "energy_in_mask")


def run(tmp_path, callbacks, logger=None):
    seed_everything(0)
    model = LitCNN()
    train, val = loaders()
    trainer(tmp_path, callbacks, logger=logger, max_epochs=1).fit(model, train_dataloaders=train, val_dataloaders=val)
    return model


def test_every_method_and_random_maps_get_each_metric_at_every_event(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="tb")
    callback = ExplainCallback(probe=(PROBE_X, PROBE_Y), quality=ALL, masks=MASKS, every_n_steps=2)
    model = run(tmp_path, [callback], logger)
    events = read_tensorboard(logger.log_dir)
    for method in ("saliency", "grad_cam", "random"):
        for name in ("deletion_auc", "insertion_auc", "pointing_game", "energy_in_mask"):
            series = events.Scalars(f"explain/{method}/{name}")
            assert [e.step for e in series] == [0, 2, 4], (method, name)
            assert all(0.0 <= e.value <= 1.0 for e in series)
    # The last event's values are the pure functions' on the final model.
    model.eval()
    maps = explain(model, PROBE_X, target=PROBE_Y)
    deletion, insertion = deletion_insertion(model, PROBE_X, maps["grad_cam"], PROBE_Y)
    last = {name: events.Scalars(f"explain/grad_cam/{name}")[-1].value for name in ("deletion_auc", "insertion_auc")}
    assert last["deletion_auc"] == pytest.approx(deletion.mean().item(), abs=1e-5)
    assert last["insertion_auc"] == pytest.approx(insertion.mean().item(), abs=1e-5)
    hits = pointing_game(maps["grad_cam"], MASKS).float().mean().item()
    assert events.Scalars("explain/grad_cam/pointing_game")[-1].value == pytest.approx(hits)
    energy = energy_in_mask(maps["grad_cam"], MASKS).mean().item()
    assert events.Scalars("explain/grad_cam/energy_in_mask")[-1].value == pytest.approx(energy, abs=1e-6)


def test_quality_is_off_by_default(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="tb")
    run(tmp_path, [ExplainCallback()], logger)
    tags = read_tensorboard(logger.log_dir).Tags()["scalars"]
    assert not [t for t in tags if t.endswith(("deletion_auc", "insertion_auc", "pointing_game", "energy_in_mask"))]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(quality=("deletion", "sharpness")), "quality must name metrics"),
        (dict(quality=("pointing_game",)), "needs masks="),
        (dict(masks=MASKS), "masks= is read by quality"),
        (dict(quality=("deletion",), masks=MASKS), "masks= is read by quality"),
        (dict(quality=("energy_in_mask",), masks=torch.ones(12, 12)), r"masks must be a tensor \(N, H, W\)"),
    ],
)
def test_bad_quality_arguments_are_refused_in_init(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExplainCallback(**kwargs)


def test_masks_that_do_not_fit_the_probe_stop_fit_before_the_first_step(tmp_path):
    model = LitCNN()
    callback = ExplainCallback(probe=(PROBE_X, PROBE_Y), quality=("pointing_game",), masks=MASKS[:4])
    train, val = loaders()
    with pytest.raises(MisconfigurationException, match=r"masks \(4, 12, 12\).*one \(H, W\) mask per probe sample"):
        trainer(tmp_path, [callback], max_epochs=1).fit(model, train_dataloaders=train, val_dataloaders=val)
    assert model.training_steps == 0


def test_training_is_bit_identical_with_quality_on(tmp_path):
    plain = run(tmp_path / "a", [])
    measured = run(
        tmp_path / "b", [ExplainCallback(probe=(PROBE_X, PROBE_Y), quality=ALL, masks=MASKS, every_n_steps=1)]
    )
    for (name, a), b in zip(plain.state_dict().items(), measured.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
