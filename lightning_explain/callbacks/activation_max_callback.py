"""ActivationMaximizationCallback: what chosen channels respond to, as it evolves over training."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_explain._compat import MisconfigurationException
from lightning_explain.analysis.activation_maximization import MAX_STEPS, activation_maximization
from lightning_explain.callbacks._schedule import Schedule, ScheduledProbeCallback
from lightning_explain.callbacks.probe import Probe
from lightning_explain.core.layers import resolve_layer
from lightning_explain.core.validation import check_int, check_ints
from lightning_explain.render.grids import display_images, tile_grid


class ActivationMaximizationCallback(ScheduledProbeCallback):
    """Log, at scheduled events, the inputs that maximise chosen channels of a layer (opt-in).

    At a baseline event before the first optimizer step, then every ``every_n_epochs`` epochs
    and/or ``every_n_steps`` steps, on global rank zero,
    :func:`lightning_explain.analysis.activation_maximization` runs for ``steps`` steps from
    the same seeded noise (so images of successive events differ only because the model
    changed), and ``{prefix}/{layer}`` gets one image: a row of the optimised inputs, one per
    channel, each normalised to its own range. The model is left exactly as found and no random
    number stream of training is used. Costs ``steps`` forward and backward passes up to the
    layer per event; keep ``steps`` and the schedule modest.

    Args:
        layer: a dotted module name or a module.
        channels: channel indices of the layer's output to visualise.
        input_shape: one input's shape ``(C, H, W)``; ``None`` = the probe's.
        steps: optimisation steps per event, from 1 to
            :data:`lightning_explain.analysis.activation_maximization.MAX_STEPS`.
        lr: Adam's learning rate.
        tv_weight: total-variation penalty weight.
        l2_weight: L2 penalty weight.
        seed: seeds the starting noise.
        every_n_epochs: log at the end of every this many epochs (``None`` = off).
        every_n_steps: also log every this many optimizer steps (``None`` = off).
        probe, probe_size, unpack_batch: where ``input_shape`` comes from when it is None.
        prefix: the logging namespace.

    Example::

        ActivationMaximizationCallback(layer="features.6", channels=[0, 1, 2, 3], steps=64)
    """

    _needs_images = True

    def __init__(
        self,
        *,
        layer: str | nn.Module,
        channels: Sequence[int],
        input_shape: Sequence[int] | None = None,
        steps: int = 64,
        lr: float = 0.05,
        tv_weight: float = 0.05,
        l2_weight: float = 0.01,
        seed: int = 0,
        every_n_epochs: int | None = 1,
        every_n_steps: int | None = None,
        probe: Any = None,
        probe_size: int = 1,
        unpack_batch: Callable[[Any], tuple[Tensor, Tensor | None]] | None = None,
        prefix: str = "activation_max",
    ) -> None:
        super().__init__(probe=probe, probe_size=probe_size, unpack_batch=unpack_batch)
        if not isinstance(layer, (str, nn.Module)):
            raise ValueError(f"layer must be a module name or a module, got {type(layer).__name__}.")
        channels = [channels] if isinstance(channels, int) else list(channels)
        check_ints("channels", channels, low=0, expected="a non-empty list of channel indices >= 0")
        if input_shape is not None and (len(tuple(input_shape)) != 3 or min(tuple(input_shape)) < 1):
            raise ValueError(f"input_shape must be an image shape (C, H, W) or None, got {input_shape!r}.")
        check_int("steps", steps, low=1, high=MAX_STEPS, expected=f"an int from 1 to {MAX_STEPS}")
        if not lr > 0 or not tv_weight >= 0 or not l2_weight >= 0:
            raise ValueError(
                f"lr must be > 0 and the weights >= 0; got lr={lr}, tv_weight={tv_weight}, l2_weight={l2_weight}."
            )
        self.schedule = Schedule(every_n_steps=every_n_steps, every_n_epochs=every_n_epochs)
        self.layer = layer
        self.channels = channels
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.options = dict(steps=steps, lr=lr, tv_weight=tv_weight, l2_weight=l2_weight, seed=seed)
        self.prefix = prefix
        self._reset_series()

    def _reset_series(self) -> None:
        super()._reset_series()
        self._layer_name = ""
        self._shape: tuple[int, ...] = ()

    def _state_key_fields(self) -> dict[str, Any]:
        layer = self.layer if isinstance(self.layer, str) else type(self.layer).__name__
        return dict(
            layer=layer,
            channels=tuple(self.channels),
            every_n_steps=self.every_n_steps,
            every_n_epochs=self.every_n_epochs,
            prefix=self.prefix,
        )

    @property
    def _uses_probe(self) -> bool:  # type: ignore[override]
        return self.input_shape is None  # else the shape is given and no data is needed

    def _check_probe(self, probe: Probe) -> None:
        if probe.inputs.ndim != 4:
            raise MisconfigurationException(
                f"ActivationMaximizationCallback optimises images (C, H, W); the probe's inputs are "
                f"{tuple(probe.inputs.shape[1:])}. Pass input_shape= for a model that takes images."
            )

    def _dry_run(self, trainer: Any, pl_module: Any) -> None:
        """Resolve the layer and the input shape; one optimisation step (a bad layer or channel stops ``fit``)."""
        self._shape = self.input_shape or tuple(self._device_probe.inputs.shape[1:])
        probe_like = torch.zeros((1, *self._shape), device=pl_module.device)
        self._layer_name, _ = resolve_layer(pl_module, self.layer, probe_like)
        self._maximise(pl_module, steps=1)

    def _compute(self, pl_module: Any) -> None:
        return None  # the images are optimised when logged, and only when the logger takes images

    def _maximise(self, pl_module: Any, steps: int | None = None) -> Tensor:
        options = dict(self.options, steps=steps or self.options["steps"])
        return activation_maximization(
            pl_module, self._layer_name, self.channels, input_shape=self._shape, device=pl_module.device, **options
        )

    def _log_event(self, pl_module: Any, result: None, step: int) -> None:
        if not self._writer.can_log_images:
            return
        images = self._maximise(pl_module)
        if not bool(torch.isfinite(images).all()):
            self._warn("nonfinite", f"activation maximisation diverged (NaN or inf) at step {step}; not logged.")
            return
        tiles = display_images(images)
        factor = max(1, math.ceil(64 / min(tiles.shape[2:])))
        if factor > 1:
            tiles = F.interpolate(tiles, scale_factor=factor, mode="nearest")
        grid = tile_grid(tiles, ncols=len(self.channels))
        image = (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        self._writer.image(f"{self.prefix}/{self._layer_name}", image, step)
