"""The probe: a small fixed batch, explained at every event of a run.

Choosing it must not change training. Indexing a dataset or creating a DataLoader
iterator can draw from the global random generators (a shuffling sampler, a random
transform, the worker seed), so every draw happens inside :func:`preserved_global_rng`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from lightning_explain._compat import rank_zero_warn
from lightning_explain.callbacks._batches import (  # the loader helpers; each stays importable from here
    _class_targets,  # noqa: F401 - re-exported
    _collate_first,
    _indexable,
    _iterate_until,
    _known_empty,
    _targets,
    _unpack,
)
from lightning_explain.core.rng import preserved_global_rng

UnpackBatch = Callable[[Any], "tuple[Tensor, Tensor | None]"]
"""Turns one batch from a DataLoader into ``(inputs, targets or None)``; a callback that calls the model with keyword
arguments beside the inputs (:class:`~lightning_explain.callbacks.TokenExplainCallback`) also takes
``(inputs, targets or None, {name: tensor})``."""

INPUT_KEYS = ("x", "input", "inputs", "image", "images", "pixel_values", "data")
TARGET_KEYS = ("y", "label", "labels", "target", "targets")


@dataclass
class Probe:
    """A fixed batch: ``inputs`` (N, ...), integer class ``targets`` (N,) or ``None``, and the keyword arguments the
    model's ``forward`` takes beside the inputs (a text model's ``attention_mask``; empty for most models)."""

    inputs: Tensor
    targets: Tensor | None = None
    forward_kwargs: dict[str, Tensor] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> Probe:
        """The same probe on ``device``."""
        targets = None if self.targets is None else self.targets.to(device)
        kwargs = {key: value.to(device) for key, value in self.forward_kwargs.items()}
        return Probe(self.inputs.to(device), targets, kwargs)

    def first(self, size: int) -> Probe:
        """Its first ``size`` samples, as detached copies."""
        n = self.inputs.shape[0]

        def take(value: Tensor) -> Tensor:
            return (value[:size] if value.ndim and value.shape[0] == n else value).detach().clone()

        targets = None if self.targets is None else take(self.targets)
        return Probe(take(self.inputs), targets, {key: take(value) for key, value in self.forward_kwargs.items()})

    def with_inputs(self, inputs: Tensor) -> Probe:
        """The same probe with other inputs (cast, moved), its targets and keyword arguments kept."""
        return replace(self, inputs=inputs)

    def __len__(self) -> int:
        return self.inputs.shape[0]


def default_unpack_batch(batch: Any, *, class_targets: bool = True) -> tuple[Tensor, Tensor | None]:
    """Split a batch into ``(inputs, targets)`` for the common layouts.

    - a tensor: inputs, no targets;
    - a tuple or list: the first item is the inputs; the second is the targets when it is
      an integer tensor of shape (N,);
    - a dict: inputs under one of :data:`INPUT_KEYS`, targets under one of :data:`TARGET_KEYS`.

    Targets that are not class indices (regression values, masks) are ignored, unless
    ``class_targets=False``: then any tensor with one row per sample is kept (for a loss of
    your own, such as a regression loss).
    """
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, Sequence) and not isinstance(batch, str) and batch and isinstance(batch[0], Tensor):
        return batch[0], _targets(batch[1] if len(batch) > 1 else None, batch[0], class_targets)
    if isinstance(batch, Mapping):
        inputs = next((batch[k] for k in INPUT_KEYS if isinstance(batch.get(k), Tensor)), None)
        if inputs is not None:
            targets = next((batch[k] for k in TARGET_KEYS if k in batch), None)
            if targets is None:
                _note_no_label_key(batch, inputs)
            return inputs, _targets(targets, inputs, class_targets)
        if isinstance(batch.get("input_ids"), Tensor):
            raise ValueError(
                f"the batch holds token ids under 'input_ids' (keys {sorted(map(str, batch))}): a text model's batch. "
                "Token ids have no gradient of their own; use TokenExplainCallback, which explains each token at the "
                "model's embedding layer and passes the attention_mask on to forward."
            )
        raise ValueError(
            f"Cannot find the model's inputs in a batch with keys {sorted(map(str, batch))}: expected one of "
            f"{list(INPUT_KEYS)}. Pass unpack_batch=lambda batch: (inputs, targets) to the callback, "
            "or pass the probe directly with probe=(inputs, targets)."
        )
    raise ValueError(
        f"Cannot turn a batch of type {type(batch).__name__} into model inputs. Pass "
        "unpack_batch=lambda batch: (inputs, targets) to the callback, or pass the probe directly "
        "with probe=inputs or probe=(inputs, targets)."
    )


_noted_key_sets: set[frozenset[str]] = set()


def _note_no_label_key(batch: Mapping, inputs: Tensor) -> None:
    """Say once per set of keys that a dict batch's labels were not found (the probe then has none)."""
    input_key = next(k for k in INPUT_KEYS if batch.get(k) is inputs)
    others = sorted(str(k) for k in batch if k != input_key)
    keys = frozenset(map(str, batch))
    if not others or keys in _noted_key_sets:
        return
    _noted_key_sets.add(keys)
    rank_zero_warn(
        f"lightning-explain: the batch is a dict with the inputs under {input_key!r} but no labels under any of "
        f"{list(TARGET_KEYS)} (its other keys: {others}), so the probe has no labels: no probe accuracy, no "
        "right/wrong marks, and the predicted class is explained. If one of those keys holds the labels, pass "
        f"unpack_batch=lambda batch: (batch[{input_key!r}], batch[{others[0]!r}]) to the callback."
    )


def check_probe_argument(probe: Any, *, class_targets: bool = True, name: str = "probe") -> Probe | None:
    """Validate a user-supplied ``probe=`` (a tensor or an ``(inputs, targets)`` pair).

    An empty probe, or one whose inputs hold NaN or inf, is refused: it would give no
    explanation, or explanations of nothing. With ``class_targets=False`` the targets may be
    any tensor with one row per sample (for a custom loss).
    """
    if probe is None:
        return None
    if isinstance(probe, Probe):
        check_probe_inputs(probe.inputs, f"{name}=")
        return probe.first(len(probe))
    if isinstance(probe, Tensor):
        return Probe(check_probe_inputs(probe.detach().clone(), f"{name}="))
    if isinstance(probe, (tuple, list)) and len(probe) == 2 and isinstance(probe[0], Tensor):
        inputs, targets = probe
        check_probe_inputs(inputs, f"{name}=")
        if targets is not None:
            if _targets(targets, inputs, class_targets) is None:
                wanted = "an integer class-index tensor of shape (N,)" if class_targets else "a tensor with N rows"
                also = " (GradientNormMonitor takes other targets with loss_fn=)" if class_targets else ""
                raise ValueError(
                    f"{name}=(inputs, targets) needs targets as {wanted} matching inputs; got "
                    f"{getattr(targets, 'dtype', type(targets).__name__)} of shape "
                    f"{tuple(getattr(targets, 'shape', ()))} for inputs of shape {tuple(inputs.shape)}{also}."
                )
            targets = targets.detach().clone()
        return Probe(inputs.detach().clone(), targets)
    raise ValueError(f"{name} must be a tensor of inputs or an (inputs, targets) pair, got {type(probe).__name__}.")


def check_probe_inputs(inputs: Tensor, what: str) -> Tensor:
    """Raise ``ValueError`` for an empty probe or one with NaN or inf inputs; ``what`` names it in the message."""
    if inputs.ndim == 0 or inputs.shape[0] == 0:
        raise ValueError(
            f"The probe ({what}) is empty: inputs of shape {tuple(inputs.shape)}. Pass at least one sample, "
            "or leave probe=None to take the first samples of the validation (else training) data."
        )
    if inputs.is_floating_point() or inputs.is_complex():
        bad = (~torch.isfinite(inputs)).flatten(1).any(dim=1) if inputs.ndim > 1 else ~torch.isfinite(inputs)
        if bool(bad.any()):
            rows = bad.nonzero().flatten().tolist()
            raise ValueError(
                f"The probe ({what}) holds NaN or inf inputs in {len(rows)} of its {inputs.shape[0]} samples "
                f"(e.g. sample {rows[0]}); its explanations would be meaningless. Pass a probe with finite "
                "inputs (probe=), or clean the data."
            )
    return inputs


def probe_from_dataloader(
    dataloader: Any, size: int, unpack_batch: UnpackBatch | None = None, *, class_targets: bool = True
) -> Probe:
    """The first ``size`` samples of a DataLoader's dataset, collated and unpacked.

    For a map-style dataset these are ``dataset[0]`` to ``dataset[size - 1]`` (the data's own
    order, whatever the sampler's shuffling); otherwise the first batches the loader yields.
    """
    unpack = unpack_batch or (lambda batch: default_unpack_batch(batch, class_targets=class_targets))
    with preserved_global_rng():
        if _indexable(dataloader):
            probe = Probe(*_unpack(unpack, _collate_first(dataloader, size), class_targets))
        else:
            probe = Probe(*_iterate_until(dataloader, size, unpack, class_targets))
    return probe.first(size)


def first_dataloader(dataloaders: Any) -> Any:
    """The first loader of what ``trainer.train_dataloader`` / ``val_dataloaders`` return."""
    if isinstance(dataloaders, Mapping):
        return next(iter(dataloaders.values()), None)
    if isinstance(dataloaders, Sequence):
        return dataloaders[0] if dataloaders else None
    return dataloaders


def probe_from_batch(
    batch: Any, size: int, unpack_batch: UnpackBatch | None = None, *, class_targets: bool = True
) -> Probe:
    """The first ``size`` samples of one batch (e.g. the first one Lightning draws for training), on the CPU."""
    unpack = unpack_batch or (lambda b: default_unpack_batch(b, class_targets=class_targets))
    return Probe(*_unpack(unpack, batch, class_targets)).first(size).to("cpu")


def probe_loader(trainer: Any, source: str = "auto") -> tuple[str, Any]:
    """Where a probe of ``source`` comes from: ``("val" or "train", loader)``; ``(name, None)`` when nowhere.

    ``"auto"`` is the validation data if there is any (an empty validation dataset counts as none),
    else the training data.
    """
    if source not in ("auto", "val", "train"):
        raise ValueError(f"source must be 'auto', 'val' or 'train', got {source!r}.")
    loaders = {"val": first_dataloader(trainer.val_dataloaders), "train": first_dataloader(trainer.train_dataloader)}
    if source == "auto":
        if loaders["val"] is not None and not _known_empty(loaders["val"]):
            return "val", loaders["val"]
        return "train", loaders["train"]
    return source, loaders[source]


def draws_from_its_own_stream(name: str, loader: Any) -> bool:
    """Whether taking a probe from ``loader`` would draw from a stream training reads: an iterable training loader.

    Iterating it again would advance the dataset's own generator (or its worker seeds), so such
    a probe is taken from the first batch Lightning itself draws instead.
    """
    return name == "train" and loader is not None and not _indexable(loader)


LOADER_NAMES = {"val": "validation", "train": "training"}
"""How messages name the two loaders."""


def select_probe(
    trainer: Any,
    size: int,
    unpack_batch: UnpackBatch | None = None,
    source: str = "auto",
    *,
    owner: str = "lightning_explain",
    first_batch: Any = None,
    class_targets: bool = True,
) -> Probe:
    """Take the probe from the trainer's data: validation data if there is any, else training data.

    Args:
        trainer: a Lightning trainer inside ``fit`` (dataloaders set up: ``on_train_start`` or later).
        size: how many samples.
        unpack_batch: turns a batch into ``(inputs, targets)``; :func:`default_unpack_batch` if None.
        source: ``"auto"`` (validation, else training), ``"val"`` or ``"train"``.
        owner: the callback, named in error messages.
        first_batch: the first training batch Lightning drew; used instead of iterating an iterable
            training loader (:func:`draws_from_its_own_stream`).
        class_targets: keep only class-index targets (else any tensor with one row per sample).
    """
    name, loader = probe_loader(trainer, source)
    if loader is None:
        where = " or ".join(LOADER_NAMES[n] for n in (("val", "train") if source == "auto" else (source,)))
        raise ValueError(
            f"{owner}: there is no {where} dataloader to take a probe from. Pass probe=inputs or "
            "probe=(inputs, targets)."
        )
    try:
        if first_batch is not None and draws_from_its_own_stream(name, loader):
            probe = probe_from_batch(first_batch, size, unpack_batch, class_targets=class_targets)
        else:
            probe = probe_from_dataloader(loader, size, unpack_batch, class_targets=class_targets)
        check_probe_inputs(probe.inputs, f"the first {size} samples of the {LOADER_NAMES[name]} data")
    except ValueError as error:
        raise ValueError(
            f"{owner}: taking the probe from the {LOADER_NAMES[name]} dataloader failed: {error}"
        ) from error
    return probe
