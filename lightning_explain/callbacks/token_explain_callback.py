"""TokenExplainCallback: which tokens a text model relies on, for a fixed probe of texts, in TensorBoard, while it
trains."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lightning_explain._compat import MisconfigurationException, rank_zero_info
from lightning_explain.analysis.map_statistics import ChangeSeries, top_mass
from lightning_explain.attribution import Explanation, compute_token_explanation
from lightning_explain.attribution.engine import check_methods, check_options
from lightning_explain.attribution.tokens import TOKEN_GRADIENT_METHODS
from lightning_explain.callbacks._heads import detect_head, head_target
from lightning_explain.callbacks._quality import HEAD_SCORES, check_quality, check_token_masks, token_quality_scalars
from lightning_explain.callbacks._schedule import Schedule, ScheduledProbeCallback
from lightning_explain.callbacks._target_choice import check_target_choice
from lightning_explain.callbacks._token_outcomes import text_outcomes, token_head, token_target_mode
from lightning_explain.callbacks._token_text import (
    check_tokenizer,
    joined_text,
    label_names,
    padding_token_for,
    token_strings,
    tokens_markdown,
    unpack_token_batch,
)
from lightning_explain.callbacks.probe import Probe
from lightning_explain.core.layers import LayerSpec
from lightning_explain.core.outputs import OutputSpec, check_output_spec
from lightning_explain.core.recording import check_logits, record_outputs
from lightning_explain.core.tokens import Continuation, TokenBatch, forward_keywords, resolve_embedding
from lightning_explain.core.validation import check_int
from lightning_explain.render.grids import grid_metadata
from lightning_explain.render.tokens import render_token_rows


class TokenExplainCallback(ScheduledProbeCallback):
    """Log which tokens a text model relies on, for a fixed probe of texts, while it trains (or fine-tunes).

    At a baseline event before the first optimizer step (step 0), then every ``every_n_epochs`` epochs and/or
    ``every_n_steps`` steps, the probe's token attributions are taken at the model's embedding layer
    (:func:`~lightning_explain.attribution.token_attribution`) on the training device, in eval mode, without
    changing training, and logged at ``trainer.global_step`` under ``key = {prefix}/{method}``:

    - ``{key}`` (image): one block per probe text, its tokens drawn as words on boxes shaded by their attribution
      (orange positive, blue negative, each text scaled to its largest magnitude), and a tag after the last token
      with the true and predicted class (green right, red wrong), or a language model's explained next token and its
      probability;
    - ``{key}`` (text, TensorBoard's Text tab, where TensorBoard shows it as ``{key}/text_summary``): the same texts
      as markdown, searchable and copyable, the most positive tenth of each text's tokens in bold and the most
      negative tenth in italics, with their values;
    - ``{key}/concentration``: the share of attribution in each text's top 10% of tokens (padding left out), mean
      over the probe; ``{key}/change``: 1 − the Spearman correlation of each text's token ranking with the previous
      event's, mean over the probe;
    - ``{prefix}/probe_accuracy`` for a classifier whose probe has labels; with ``quality=``, the deletion and
      insertion AUCs (top tokens replaced by the padding token) and, with ``masks``, the pointing game and the
      energy in the mask, beside random maps (``{prefix}/random/...``).

    Zero configuration on the batches text models train on: a dict with ``input_ids`` (a tokenizer's output, a
    collated Hugging Face dataset), whose ``attention_mask``, ``token_type_ids`` and ``position_ids`` are passed to
    ``forward`` where it takes them, and whose ``labels`` are the targets. The model is called as
    ``forward(input_ids=..., attention_mask=...)`` (or with the ids first, positionally, when ``forward`` names no
    ``input_ids``). Classifiers (logits (N, K), a dict or ``ModelOutput``, regression or multi-label heads) are
    explained for the label (else the predicted class); causal language models (logits (N, T, V)) for the predicted
    next token after each prompt, a given token id, or a :class:`~lightning_explain.attribution.Continuation`.

    Bad configuration (a batch without ids, float inputs, no embedding layer found, a method that cannot run, masks
    of the wrong shape) stops ``fit`` before the first step; a failure inside a later event is a warning.

    Args:
        probe: ``None`` = the first ``probe_size`` validation texts (else training texts); a dict with
            ``input_ids`` (and ``attention_mask``, ``labels``, ...), ids (N, T), or ``(ids, labels)``.
        probe_size: how many texts to take when ``probe`` is None.
        methods: names from :func:`~lightning_explain.attribution.token_methods`: ``"input_x_gradient"`` and
            ``"saliency"`` (the default; one forward and one backward pass together) and ``"integrated_gradients"``
            (``steps`` passes; its baseline is the padding token).
        method_options: per-method options, e.g. ``{"integrated_gradients": {"steps": 16, "baseline_token_id": 0}}``.
        embedding: the embedding layer (a module or its dotted name); ``None`` = ``get_input_embeddings()`` of the
            model or a submodule, else the ``nn.Embedding`` that reads ``input_ids``.
        tokenizer: turns ids into readable tokens (anything with ``convert_ids_to_tokens`` or ``decode``, such as a
            Hugging Face tokenizer); without it the ids are drawn, and a one-time note says how to pass one.
        baseline_token_id: the token integrated gradients start from and deletion and insertion put in; ``None`` =
            the model's ``config.pad_token_id``, else its embedding's ``padding_idx``, else the tokenizer's
            ``pad_token_id`` (a method that needs one and finds none stops ``fit`` naming this argument).
        target: ``None`` (the label where the probe has class labels, else the prediction; a language model's
            predicted next token), ``"label"``, ``"predicted"``, a class index (a language model: a token id), a
            :class:`~lightning_explain.attribution.Continuation`, or a callable ``(output, probe_targets) -> (N,)``.
        max_tokens: the most tokens drawn (and written) per text; the attributions are always of the whole text.
        every_n_steps: also log every this many optimizer steps (``None`` = off).
        every_n_epochs: log at the end of every this many epochs (``None`` = off).
        unpack_batch: turns a batch into ``(input_ids, targets)`` or ``(input_ids, targets, {keyword: tensor})``,
            every keyword then passed to ``forward``; the default reads dicts, ``(ids, labels)`` and
            ``(ids, attention_mask, labels)``.
        output: the tensor of the model's output to read (a key, an index or a callable; see ``select_output``).
        quality: ``("deletion", "insertion", "pointing_game", "energy_in_mask")`` or a part of it; ``None`` = off.
        masks: bool (N, T), one per probe text, True on the tokens it should rely on (the localisation metrics).
        prefix: the logging namespace.

    Example::

        trainer = Trainer(callbacks=[TokenExplainCallback(tokenizer=tokenizer, every_n_steps=100)])
        trainer.fit(model, train_loader, val_loader)  # then: tensorboard --logdir lightning_logs
    """

    _needs_images = True
    _class_targets = False  # regression values, multi-hot rows and a language model's labels are kept
    _takes_forward_kwargs = True

    def __init__(
        self,
        *,
        probe: Any = None,
        probe_size: int = 8,
        methods: Sequence[str] = TOKEN_GRADIENT_METHODS,
        method_options: dict[str, dict[str, Any]] | None = None,
        embedding: LayerSpec = None,
        tokenizer: Any = None,
        baseline_token_id: int | None = None,
        target: Any = None,
        max_tokens: int = 64,
        every_n_steps: int | None = None,
        every_n_epochs: int | None = 1,
        unpack_batch: Callable[[Any], tuple] | None = None,
        output: OutputSpec = None,
        quality: Sequence[str] | None = None,
        masks: Tensor | None = None,
        prefix: str = "explain",
    ) -> None:
        if isinstance(probe, Mapping):
            probe = Probe(*unpack_token_batch(probe))
        super().__init__(probe=probe, probe_size=probe_size, unpack_batch=unpack_batch)
        self.methods = check_methods(methods, "tokens")
        self.method_options = check_options(method_options, self.methods, "tokens")
        self.quality, self.masks = check_quality(quality, masks, ndim=2)
        self.output = check_output_spec(output)
        if embedding is not None and not isinstance(embedding, (str, nn.Module)):
            raise ValueError(f"embedding must be a module, its dotted name or None, got {type(embedding).__name__}.")
        self.embedding = embedding
        self.tokenizer = check_tokenizer(tokenizer)
        self.baseline_token_id = check_int("baseline_token_id", baseline_token_id, low=0, none_ok=True)
        self.target = target if isinstance(target, Continuation) else check_target_choice(target, callable_ok=True)
        self.max_tokens = check_int("max_tokens", max_tokens, low=1, expected="a positive int")
        self.schedule = Schedule(every_n_steps=every_n_steps, every_n_epochs=every_n_epochs)
        self.prefix = prefix
        self._reset_series()

    def _reset_series(self) -> None:
        super()._reset_series()
        self._batch: TokenBatch | None = None
        self._embedding_name: str | None = None
        self._embedding_module: nn.Module | None = None
        self._head = "classification"
        self._target_mode: Any = "predicted"
        self._tokens: list[list[str]] = []
        self._joins: list[list[bool]] = []
        self._names: dict[int, str] | None = None
        self._options: dict[str, dict[str, Any]] = {}
        self._pad_id: int | None = None
        self._change = ChangeSeries()

    def _state_key_fields(self) -> dict[str, Any]:
        embedding = self.embedding if not isinstance(self.embedding, nn.Module) else type(self.embedding).__name__
        target = self.target if not isinstance(self.target, Continuation) else "continuation"
        return dict(
            methods=self.methods,
            embedding=embedding,
            target=target if not callable(target) else "callable",
            every_n_steps=self.every_n_steps,
            every_n_epochs=self.every_n_epochs,
            probe_size=self.probe_size,
            quality=self.quality,
            prefix=self.prefix,
        )

    @property
    def embedding_name(self) -> str | None:
        """The embedding layer explained (as found or given), once ``fit`` has started."""
        return self._embedding_name

    @property
    def head(self) -> str:
        """The head found at fit start: ``"classification"``, ``"multilabel"``, ``"regression"``, ``"custom"`` or
        ``"language_model"``."""
        return self._head

    _default_unpack_batch = staticmethod(unpack_token_batch)

    # ----------------------------------------------------------------------------------- fit start
    def _check_probe(self, probe: Probe) -> None:
        ids = probe.inputs
        if ids.ndim != 2 or ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise MisconfigurationException(
                f"TokenExplainCallback explains token ids, integers of shape (N, T); the probe's inputs are "
                f"{tuple(ids.shape)} {ids.dtype}. For images use ExplainCallback, for float features or sequences "
                "FeatureExplainCallback; for custom batches pass unpack_batch= that returns (input_ids, labels)."
            )
        check_token_masks(self.masks, ids)

    def _dry_run(self, trainer: Any, pl_module: Any) -> Explanation:
        """Build the probe's batch, find the embedding and the head, then explain the probe once: a model that does
        not take the batch, no embedding, a bad target or method stops ``fit`` here."""
        probe = self._device_probe
        keys = list(probe.forward_kwargs)
        passed = keys if self.unpack_batch is not None else forward_keywords(pl_module, keys)
        mask = probe.forward_kwargs.get("attention_mask")
        extra = {key: probe.forward_kwargs[key] for key in passed if key != "attention_mask"}
        self._batch = TokenBatch(probe.inputs, mask, extra, mask_in_forward="attention_mask" in passed)
        self._embedding_name, self._embedding_module = resolve_embedding(pl_module, self.embedding, self._batch)
        raw, _ = record_outputs(pl_module, probe.inputs, {}, forward=self._batch)
        logits = check_logits(raw, self.output)
        self._head = token_head(logits, self._embedding_module, self.target, "TokenExplainCallback") or detect_head(
            logits, probe.targets, self.target, "TokenExplainCallback"
        )
        self._target_mode = token_target_mode(self._head, self.target, probe.targets)
        given = self.method_options.get("integrated_gradients", {}).get("baseline_token_id", self.baseline_token_id)
        needed = "integrated_gradients" in self.methods or bool({"deletion", "insertion"} & set(self.quality))
        self._pad_id = padding_token_for(pl_module, self._embedding_module, given, self.tokenizer, needed)
        self._options = self.method_options
        if "integrated_gradients" in self.methods:
            ig = {"baseline_token_id": self._pad_id, **self.method_options.get("integrated_gradients", {})}
            self._options = {**self.method_options, "integrated_gradients": ig}
        self._names = label_names(pl_module)
        self._tokens, self._joins = token_strings(self.tokenizer, probe.inputs)
        if self.tokenizer is None:
            self._warn(
                "no-tokenizer",
                "draws token ids, not words: pass tokenizer= (e.g. the Hugging Face tokenizer that made the batches) "
                "to read the tokens.",
            )
        explanation = self._compute(pl_module)
        mask_passed = self._batch.mask_in_forward and mask is not None
        with_args = ", ".join(["input_ids", *(["attention_mask"] if mask_passed else []), *extra])
        rank_zero_info(
            f"TokenExplainCallback: {', '.join(self.methods)} for the {self._head} head at the embedding layer "
            f"{self._embedding_name!r}; forward gets {with_args}."
        )
        return explanation

    # ------------------------------------------------------------------------------- the event
    def _explanation_target(self) -> Any:
        if self._head == "language_model":
            return self._target_mode
        return head_target(self._target_mode, self._device_probe, self.target)

    def _compute(self, pl_module: Any) -> Explanation:
        return compute_token_explanation(
            pl_module,
            self._batch.input_ids,
            self._explanation_target(),
            self._embedding_module,
            self.methods,
            options=self._options or None,
            output=self.output,
            batch=self._batch,
        )

    def _log_event(self, pl_module: Any, explanation: Explanation, step: int) -> None:
        probe, batch = self._device_probe, self._batch
        real = batch.real
        samples, tags, correct = text_outcomes(
            self._head, explanation.logits, probe.targets, explanation.target, self._names, self._token_text
        )
        names: list[str] = []
        values: list[Tensor] = []
        for method, maps in explanation.maps.items():
            if not bool(torch.isfinite(maps).all()):
                self._warn(f"nonfinite-{method}", f"{method} attributions hold NaN or inf at step {step}; not logged.")
                continue
            key = f"{self.prefix}/{method}"
            if self._writer.can_log_images:
                image, blocks = render_token_rows(
                    self._tokens, maps, real=real, joins=self._joins, labels=tags, correct=correct,
                    title=f"{method}  step {step}", max_tokens=self.max_tokens,
                )  # fmt: skip
                metadata = grid_metadata(method, step, image.shape, blocks, samples)
                self._writer.image(key, image.numpy(), step, metadata=metadata)
            text = tokens_markdown(method, step, self._tokens, maps, real, tags, self.max_tokens, correct, self._joins)
            self._writer.text(key, text, step)
            names += [f"{key}/concentration"]
            values += [top_mass(maps, mask=real).nanmean()]
            change = self._change.update(method, maps, mask=real)
            if change is not None:
                names.append(f"{key}/change")
                values.append(change)
        if correct is not None:
            names.append(f"{self.prefix}/probe_accuracy")
            labelled = probe.targets >= 0 if probe.targets.ndim == 1 else torch.ones_like(correct)
            values.append(correct[labelled.to(correct.device)].float().mean())
        if self.quality:
            finite = {m: v for m, v in explanation.maps.items() if bool(torch.isfinite(v).all())}
            # a Continuation is resolved on the prompts with their continuation: the metric extends them itself
            target = self._target_mode if isinstance(self._target_mode, Continuation) else explanation.target
            measured = token_quality_scalars(
                pl_module, batch, finite, target, metrics=self.quality, masks=self.masks,
                scores=HEAD_SCORES.get(self._head, "logits"),
                output=self.output, baseline_token_id=self._pad_id, step=step, prefix=self.prefix,
            )  # fmt: skip
            names += list(measured)
            values += list(measured.values())
        host = torch.stack(values).cpu().tolist() if values else []
        self._writer.scalars({n: v for n, v in zip(names, host, strict=True) if v == v}, step)  # NaN left out

    def _token_text(self, ids: list[int]) -> str:
        if self.tokenizer is None:
            return " ".join(map(str, ids))
        strings, joins = token_strings(self.tokenizer, torch.tensor([ids]))
        return joined_text(strings[0], joins[0])

    # ------------------------------------------------------------------------------ checkpoint
    def _extra_state(self) -> dict[str, Any]:
        return {"previous_ranks": self._change.state_dict()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self._change.load_state_dict(dict(state.get("previous_ranks", {})))
