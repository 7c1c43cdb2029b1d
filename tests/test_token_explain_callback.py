"""TokenExplainCallback on real Hugging Face text models (small configs): what it logs, that it equals the pure
function, that it leaves training alone, and that bad configuration stops fit before the first step."""

from __future__ import annotations

import json
import re

import pytest
import torch
from lightning.pytorch import LightningModule, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lit_helpers import RecordingLogger, read_tensorboard, trainer
from text_models import VOCAB, LitCausalLM, LitTextClassifier, TextDataset, prompt_loader, text_loaders
from torch import nn
from torch.utils.data import DataLoader

from lightning_explain import TokenExplainCallback
from lightning_explain._compat import MisconfigurationException
from lightning_explain.attribution import Continuation, token_attribution, token_deletion_insertion
from lightning_explain.callbacks import token_explain_callback as module
from lightning_explain.callbacks._log_writer import PNG_METADATA_KEY
from lightning_explain.render.png import png_text

ALL = ("input_x_gradient", "saliency", "integrated_gradients")
FAST = {"integrated_gradients": {"steps": 4}}


class WordTokenizer:
    """A stand-in tokenizer: id ``i`` is the word ``w{i}``; id 0 is ``[PAD]``."""

    pad_token_id = 0

    def convert_ids_to_tokens(self, ids):
        return ["[PAD]" if i == 0 else f"w{i}" for i in ids]


class DecodeOnly:
    def decode(self, ids):
        return "".join(f"\u0120d{i}" for i in ids)  # a byte-level BPE's leading-space marker


def fit(tmp_path, callback, *, model=None, loaders=None, logger=None, **kwargs):
    model = model or LitTextClassifier()
    train, val = loaders or text_loaders()
    run = trainer(tmp_path, kwargs.pop("callbacks", [callback]), logger=logger, **kwargs)
    run.fit(model, train, val)
    return model, run


def test_zero_config_on_dict_batches_logs_pictures_text_and_scalars(tmp_path):
    callback = TokenExplainCallback(every_n_steps=3, every_n_epochs=None)
    model, run = fit(tmp_path, callback, logger=TensorBoardLogger(tmp_path, name="", version=""))
    assert callback.head == "classification"
    assert callback.embedding_name == "model.bert.embeddings.word_embeddings"
    assert set(callback.probe.forward_kwargs) == {"attention_mask"}  # the labels are the targets, not an argument
    assert torch.equal(callback.probe.inputs.cpu(), TextDataset(16, seed=1).ids[:8])  # the validation texts
    events = read_tensorboard(tmp_path)
    steps = list(range(0, run.global_step + 1, 3))
    for method in ("input_x_gradient", "saliency"):
        assert [e.step for e in events.Images(f"explain/{method}")] == steps
        assert [e.step for e in events.Scalars(f"explain/{method}/concentration")] == steps
        assert [e.step for e in events.Scalars(f"explain/{method}/change")] == steps[1:]
        assert f"explain/{method}/text_summary" in events.Tags()["tensors"]
    accuracy = [e.value for e in events.Scalars("explain/probe_accuracy")]
    assert len(accuracy) == len(steps) and all(0 <= a <= 1 for a in accuracy)
    png = events.Images("explain/saliency")[-1].encoded_image_string
    metadata = json.loads(png_text(png)[PNG_METADATA_KEY])
    assert metadata["format"] == "lightning-explain/grid" and metadata["samples"] == 8
    assert metadata["target"] == TextDataset(16, seed=1).labels[:8].tolist()
    assert len(metadata["correct"]) == 8 and all(isinstance(c, bool) for c in metadata["correct"])


def test_the_last_event_equals_token_attribution_on_the_final_model_with_the_attention_mask(tmp_path):
    callback = TokenExplainCallback(methods=ALL, method_options=FAST, every_n_epochs=1)
    model, _ = fit(tmp_path, callback)
    probe = callback.probe
    mask = probe.forward_kwargs["attention_mask"]
    with torch.no_grad():
        explanation = callback._compute(model)
    for method in ALL:
        steps = {"steps": 4} if method == "integrated_gradients" else {}
        expected = token_attribution(model, probe.inputs, probe.targets, method=method, attention_mask=mask, **steps)
        torch.testing.assert_close(explanation.maps[method], expected)
        assert torch.all(explanation.maps[method][mask == 0] == 0)
    unmasked = token_attribution(model, probe.inputs, probe.targets)
    assert not torch.allclose(unmasked * mask, explanation.maps["input_x_gradient"])  # the mask reached forward


def test_training_is_bit_identical_with_and_without_the_callback(tmp_path):
    def run(callbacks):
        seed_everything(11)
        model = LitTextClassifier(dropout=0.2)
        fitted = trainer(tmp_path, callbacks, deterministic=True)
        fitted.fit(model, *text_loaders())
        return model.state_dict(), fitted.optimizers[0].state_dict()["state"]

    plain, plain_optimizer = run([])
    quality = ("deletion", "insertion")
    explained, explained_optimizer = run(
        [TokenExplainCallback(methods=ALL, method_options=FAST, quality=quality, every_n_steps=1)]
    )
    for key in plain:
        assert torch.equal(plain[key], explained[key]), key
    for index, state in plain_optimizer.items():
        assert torch.equal(state["exp_avg"], explained_optimizer[index]["exp_avg"])


def test_a_tokenizer_names_the_tokens_and_without_one_a_note_says_how_to_pass_one(tmp_path):
    callback = TokenExplainCallback(tokenizer=WordTokenizer(), every_n_epochs=None, max_tokens=3)
    logger = TensorBoardLogger(tmp_path, name="", version="")
    fit(tmp_path, callback, logger=logger, max_epochs=1)
    ids = callback.probe.inputs[0].tolist()
    assert callback._tokens[0] == ["[PAD]" if i == 0 else f"w{i}" for i in ids]
    text = read_tensorboard(tmp_path).Tensors("explain/input_x_gradient/text_summary")[0]
    markdown = text.tensor_proto.string_val[0].decode()
    first_text = markdown.split("\n")[3]
    assert re.sub("</?(strong|em)>", "", first_text).startswith(f"w{ids[0]}")
    assert len(re.findall(r"w\d+", first_text)) == 3  # max_tokens=3: the first 3 tokens ...
    assert first_text.endswith(f"(+{int(callback.probe.forward_kwargs['attention_mask'][0].sum()) - 3} tokens)")
    decoded = TokenExplainCallback(tokenizer=DecodeOnly(), every_n_epochs=None)
    fit(tmp_path, decoded, max_epochs=1)
    assert decoded._tokens[0][0] == f"d{ids[0]}"  # the leading-space marker is drawn as a space and stripped
    with pytest.warns(UserWarning, match="pass tokenizer="):
        fit(tmp_path, TokenExplainCallback(every_n_epochs=None), max_epochs=1)


def test_max_tokens_cuts_the_drawing_never_the_computation(tmp_path):
    short = TokenExplainCallback(every_n_epochs=None, max_tokens=2, prefix="short")
    full = TokenExplainCallback(every_n_epochs=None, prefix="full")
    logger = TensorBoardLogger(tmp_path, name="", version="")
    model, _ = fit(tmp_path, short, logger=logger, max_epochs=1, callbacks=[short, full])
    events = read_tensorboard(tmp_path)
    cut, whole = (events.Images(f"{p}/input_x_gradient")[0].encoded_image_string for p in ("short", "full"))
    assert cut != whole
    with torch.no_grad():
        maps = short._compute(model).maps["input_x_gradient"]
    assert maps.shape == (8, 12)
    torch.testing.assert_close(maps, full._compute(model).maps["input_x_gradient"])


def test_a_causal_language_model_explains_its_next_token_and_a_continuation(tmp_path):
    model = LitCausalLM()
    callback = TokenExplainCallback(methods=ALL, method_options={"integrated_gradients": {"steps": 4,
                                    "baseline_token_id": 2}})  # fmt: skip
    continued = TokenExplainCallback(
        target=Continuation([5, 7]), prefix="continued", quality=("deletion",), baseline_token_id=2
    )
    logger = RecordingLogger()
    run = trainer(tmp_path, [callback, continued], logger=logger, max_epochs=1)
    run.fit(model, prompt_loader())
    assert callback.head == continued.head == "language_model"
    assert not logger.series("explain/probe_accuracy")  # a language model's prompts are neither right nor wrong
    assert [s for s, _ in logger.series("explain/integrated_gradients/concentration")] == [0, 4]
    probe = callback.probe
    mask = probe.forward_kwargs["attention_mask"]
    with torch.no_grad():
        explanation = callback._compute(model)
        continuation = continued._compute(model)
    last = mask.long().cumsum(1).argmax(1)
    rows = torch.arange(len(last))
    assert torch.equal(explanation.targets, explanation.logits[rows, last].argmax(1))  # the predicted next token
    expected = token_attribution(model, probe.inputs, Continuation([5, 7]), attention_mask=mask)
    torch.testing.assert_close(continuation.maps["input_x_gradient"], expected)
    tags = module.text_outcomes("language_model", continuation.logits, None, continuation.target, None, str)[1]
    assert all(tag.startswith("continuation '[5, 7]'") for tag in tags)
    deletion, _ = token_deletion_insertion(
        model, probe.inputs, expected, Continuation([5, 7]), attention_mask=mask, baseline_token_id=2
    )  # the continuation's own tokens are never replaced, and its log-likelihood is the score
    assert logger.series("continued/input_x_gradient/deletion_auc")[-1][1] == pytest.approx(deletion.mean().item())


def test_quality_scores_each_method_beside_random_maps_and_equals_the_pure_functions(tmp_path):
    dataset = TextDataset(8, seed=1)
    probe = {"input_ids": dataset.ids, "attention_mask": dataset.mask, "labels": dataset.labels}
    keyword = torch.zeros_like(dataset.ids, dtype=torch.bool)
    keyword[torch.arange(8), dataset.keyword_position] = True
    callback = TokenExplainCallback(
        probe=probe, quality=("deletion", "insertion", "pointing_game", "energy_in_mask"), masks=keyword
    )
    logger = RecordingLogger()
    model, _ = fit(tmp_path, callback, logger=logger, max_epochs=1)
    for name in ("input_x_gradient", "saliency", "random"):
        for metric in ("deletion_auc", "insertion_auc", "pointing_game", "energy_in_mask"):
            assert [s for s, _ in logger.series(f"explain/{name}/{metric}")] == [0, 6], (name, metric)
    maps = token_attribution(model, dataset.ids, dataset.labels, attention_mask=dataset.mask)
    deletion, insertion = token_deletion_insertion(
        model, dataset.ids, maps, dataset.labels, attention_mask=dataset.mask
    )
    assert logger.series("explain/input_x_gradient/deletion_auc")[-1][1] == pytest.approx(deletion.mean().item())
    assert logger.series("explain/input_x_gradient/insertion_auc")[-1][1] == pytest.approx(insertion.mean().item())


def test_a_resumed_run_keeps_the_probe_its_arguments_and_the_change_series(tmp_path):
    first = TokenExplainCallback(every_n_epochs=1)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    model, _ = fit(tmp_path, first, max_epochs=1, enable_checkpointing=True, callbacks=[first, checkpoint])
    state = first.state_dict()
    assert set(state["probe_forward_kwargs"]) == {"attention_mask"}
    resumed = TokenExplainCallback(every_n_epochs=1)
    logger = RecordingLogger()
    run = trainer(tmp_path, [resumed], logger=logger, max_epochs=2, enable_checkpointing=True)
    run.fit(LitTextClassifier(), *text_loaders(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert torch.equal(
        resumed.probe.forward_kwargs["attention_mask"].cpu(), state["probe_forward_kwargs"]["attention_mask"]
    )
    assert [s for s, _ in logger.series("explain/saliency/change")] == [12]  # compared with the saved event's ranks


def test_an_explicit_unpack_batch_passes_its_keyword_arguments_as_given(tmp_path):
    seen = []

    class Recording(LitTextClassifier):
        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            seen.append(token_type_ids)
            return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)

    def unpack(batch):
        return batch["input_ids"], batch["labels"], {"token_type_ids": torch.zeros_like(batch["input_ids"])}

    fit(tmp_path, TokenExplainCallback(unpack_batch=unpack, every_n_epochs=None), model=Recording(), max_epochs=1)
    assert any(t is not None and t.shape == (8, 12) for t in seen)


class OneHotText(LightningModule):
    """A text model without an embedding layer: one-hot ids into a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(VOCAB, 3)

    def forward(self, input_ids, attention_mask=None):
        return self.linear(nn.functional.one_hot(input_ids, VOCAB).float()).mean(1)

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self(batch["input_ids"]), batch["labels"])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class LitTagger(LitTextClassifier):
    """A token-classification head: one row of 3 scores per token (N, T, 3), not over the vocabulary."""

    def forward(self, input_ids, attention_mask=None):
        hidden = self.model.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return hidden[..., :3]


def bad_starts():
    """(callback, model, loaders, the message) for configurations only the model or the data can refute."""
    floats = DataLoader([(torch.randn(6), 0)] * 8, batch_size=4)
    keyword = torch.zeros(3, 12, dtype=torch.bool)
    return {
        "float inputs": (TokenExplainCallback(), LitTextClassifier, (floats, None), r"token ids, integers of shape"),
        "no embedding": (TokenExplainCallback(), OneHotText, None, "embedding="),
        "misspelt embedding": (TokenExplainCallback(embedding="model.bert.embedings"), LitTextClassifier, None,
                               "Did you mean 'model.bert.embeddings'"),
        "no padding token": (TokenExplainCallback(methods=ALL), LitCausalLM, (prompt_loader(), None),
                             "baseline_token_id="),
        "masks of another shape": (TokenExplainCallback(quality=("pointing_game",), masks=keyword), LitTextClassifier,
                                   None, r"masks \(3, 12\)"),
        "a label for a language model": (TokenExplainCallback(target="label"), LitCausalLM, (prompt_loader(), None),
                                         "no class labels"),
        "a class beyond the head": (TokenExplainCallback(target=7), LitTextClassifier, None, "out of range"),
        "a token-classification head": (TokenExplainCallback(), LitTagger, None,
                                        r"one row of 3 scores per token.*Pass target= a callable"),
    }  # fmt: skip


@pytest.mark.parametrize("case", sorted(bad_starts()))
def test_bad_configuration_stops_fit_before_the_first_step(tmp_path, case):
    callback, make_model, data, match = bad_starts()[case]
    model = make_model()
    train, val = data or text_loaders()
    run = trainer(tmp_path, [callback], max_epochs=1)
    with pytest.raises(MisconfigurationException, match=match):
        run.fit(model, train, val)
    assert run.global_step == 0


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"methods": ["grad_cam"]}, r"Unknown method\(s\) \['grad_cam'\]; valid choices: \['input_x_gradient'"),
        ({"method_options": {"integrated_gradients": {"steps": 8}}}, "not in methods"),
        ({"method_options": {"integrated_gradients": {"steps": 1}}, "methods": ALL}, "steps must be"),
        ({"quality": ("pointing_game",)}, r"needs masks=: one bool \(T,\) mask per probe text"),
        ({"masks": torch.ones(2, 3, 4, dtype=torch.bool), "quality": ("pointing_game",)}, r"\(N, T\)"),
        ({"max_tokens": 0}, "max_tokens must be a positive int"),
        ({"tokenizer": object()}, "convert_ids_to_tokens"),
        ({"embedding": 3}, "embedding must be"),
        ({"target": -1}, "target must be"),
    ],
)
def test_bad_arguments_are_value_errors_in_init(arguments, match):
    with pytest.raises(ValueError, match=match):
        TokenExplainCallback(**arguments)


def test_a_failure_inside_a_later_event_is_a_warning_and_training_goes_on(tmp_path, monkeypatch):
    callback = TokenExplainCallback(every_n_steps=1, every_n_epochs=None)
    calls = []
    original = module.compute_token_explanation

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("an explanation went wrong")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "compute_token_explanation", failing)
    with pytest.warns(UserWarning, match="skipped the event at step 1 after RuntimeError"):
        _, run = fit(tmp_path, callback, max_epochs=1)
    assert run.global_step == 6 and len(calls) == 7

    nan_callback = TokenExplainCallback(every_n_steps=2, every_n_epochs=None)
    monkeypatch.setattr(module, "compute_token_explanation", original)
    monkeypatch.setattr(module, "top_mass", lambda maps, mask=None: torch.tensor(float("nan")))
    logger = RecordingLogger()
    fit(tmp_path, nan_callback, logger=logger, max_epochs=1)
    assert not logger.series("explain/saliency/concentration")  # NaN values are left out, the rest is logged
    assert [s for s, _ in logger.series("explain/saliency/change")] == [2, 4, 6]


def test_the_padding_token_comes_from_the_argument_the_model_or_the_tokenizer(tmp_path):
    """GPT-2 names no padding token: the tokenizer's (or baseline_token_id=) is integrated gradients' and deletion's."""

    class GPT2Tokenizer(WordTokenizer):
        pad_token_id = 2  # GPT-2 pads with its end-of-text token

    quality = ("deletion",)
    from_tokenizer = TokenExplainCallback(methods=ALL, tokenizer=GPT2Tokenizer(), quality=quality, prefix="a")
    given = TokenExplainCallback(methods=ALL, baseline_token_id=7, quality=quality, prefix="b")
    model = LitCausalLM()
    trainer(tmp_path, [from_tokenizer, given], max_epochs=1).fit(model, prompt_loader())
    assert from_tokenizer._options["integrated_gradients"]["baseline_token_id"] == from_tokenizer._pad_id == 2
    assert given._options["integrated_gradients"]["baseline_token_id"] == given._pad_id == 7
    with torch.no_grad():
        a, b = from_tokenizer._compute(model), given._compute(model)
    assert not torch.allclose(a.maps["integrated_gradients"], b.maps["integrated_gradients"])  # another path
    bert = TokenExplainCallback(methods=ALL, tokenizer=GPT2Tokenizer())
    fit(tmp_path, bert, max_epochs=1)
    assert bert._pad_id == 0  # the model's config.pad_token_id comes first


def test_a_callable_target_explains_any_head(tmp_path):
    """A token-classification head with a callable target: the tag score of each text's first token, class 1."""

    def first_token_tag(output, probe_targets):
        return output[:, 0, 1]

    callback = TokenExplainCallback(target=first_token_tag, every_n_epochs=None)
    model, _ = fit(tmp_path, callback, model=LitTagger(), loaders=(text_loaders()[0], None), max_epochs=1)
    assert callback.head == "custom"
    probe = callback.probe
    with torch.no_grad():
        maps = callback._compute(model).maps["input_x_gradient"]
    expected = token_attribution(
        model, probe.inputs, lambda out: out[:, 0, 1], attention_mask=probe.forward_kwargs["attention_mask"]
    )
    torch.testing.assert_close(maps, expected)
