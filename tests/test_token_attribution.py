"""Token attribution at a text model's embedding layer: the three token methods against Captum on real Hugging Face
models (BERT, DistilBERT, GPT-2, Llama), integrated gradients' completeness, the shared plain pass, the model left as
found, the embedding lookup, the targets (classes, next tokens, continuations) and the error messages."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerGradientXActivation, LayerIntegratedGradients
from text_models import VOCAB, LitTextClassifier, bert, distilbert, gpt2, llama, text_batch
from torch import Tensor, nn
from toy_models import assert_model_unchanged, assert_no_hooks, snapshot_model

from lightning_explain.attribution import Continuation, compute_token_explanation, token_attribution, token_methods
from lightning_explain.core import gradients as gradients_module

N, T = 4, 10
STEPS = 16  # integrated gradients' points in the Captum comparisons (both sides use the same Gauss-Legendre rule)
EOS = 2  # GPT-2's config names no pad token; its end-of-text token is the usual baseline

# Every token method must name the test that checks it against Captum. The functions named here must exist, so a
# new token method cannot be registered without one (as REFERENCE_TESTS in test_registry.py for the dense methods).
CAPTUM_TESTS = ("test_bert_matches_captum", "test_distilbert_matches_captum", "test_gpt2_matches_captum")
REFERENCE_TESTS = {
    "saliency": (*CAPTUM_TESTS, "test_llama_with_right_padding_matches_captum_per_sample"),
    "input_x_gradient": (*CAPTUM_TESTS, "test_llama_with_right_padding_matches_captum_per_sample"),
    "integrated_gradients": (*CAPTUM_TESTS, "test_llama_with_right_padding_matches_captum_per_sample"),
}


def captum_reference(
    method: str,
    forward,
    embedding: nn.Module,
    ids: Tensor,
    target: Tensor | None,
    args: tuple = (),
    baseline_id: int = 0,
    steps: int = STEPS,
) -> Tensor:
    """Captum's value of ``method`` per token, (N, T): the layer attribution at ``embedding`` reduced over D."""
    args = args or None
    if method == "integrated_gradients":
        attribution = LayerIntegratedGradients(forward, embedding).attribute(
            ids, baselines=torch.full_like(ids, baseline_id), target=target, additional_forward_args=args, n_steps=steps
        )
        return attribution.detach().sum(dim=-1)
    if method == "saliency":  # the gradient alone: LayerGradientXActivation without the multiplication
        gradient = LayerGradientXActivation(forward, embedding, multiply_by_inputs=False)
        return gradient.attribute(ids, target=target, additional_forward_args=args).detach().norm(dim=-1)
    assert method == "input_x_gradient", method
    attribution = LayerGradientXActivation(forward, embedding).attribute(
        ids, target=target, additional_forward_args=args
    )
    return attribution.detach().sum(dim=-1)


def assert_matches(actual: Tensor, expected: Tensor, tolerance: float = 1e-5) -> None:
    """``actual`` equals ``expected`` up to ``tolerance`` times the attribution's scale (its largest magnitude)."""
    scale = expected.abs().max()
    assert scale > 0, "the reference is all zero: the comparison would prove nothing"
    torch.testing.assert_close(actual, expected, rtol=0, atol=tolerance * float(scale))


def assert_token_map(values: Tensor, mask: Tensor | None = None) -> None:
    """float32 (N, T), finite, not all zero, and exactly 0 at the padding."""
    assert values.dtype == torch.float32 and values.ndim == 2
    assert torch.isfinite(values).all() and values.abs().max() > 0
    if mask is not None:
        assert values.shape == mask.shape
        assert (values[mask == 0] == 0).all(), "padding must get exactly 0"


def random_ids(n: int = N, length: int = 8, seed: int = 0) -> Tensor:
    """Token ids without padding (ids 3 to VOCAB - 1)."""
    return torch.randint(3, VOCAB, (n, length), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def bert_model():
    torch.manual_seed(0)
    return bert()


@pytest.fixture(scope="module")
def distilbert_model():
    torch.manual_seed(1)
    return distilbert()


@pytest.fixture(scope="module")
def gpt2_model():
    torch.manual_seed(2)
    return gpt2()


@pytest.fixture(scope="module")
def llama_model():
    torch.manual_seed(3)
    return llama()


@pytest.fixture
def padded():
    """Right-padded ids (N, T) with their attention mask, and token types of both kinds (0, then 1)."""
    batch = text_batch(N, T)
    token_types = (torch.arange(T)[None] >= T // 2).long().expand(N, -1) * batch["attention_mask"]
    return batch["input_ids"], batch["attention_mask"], token_types


# --- equality with Captum -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients"])
def test_bert_matches_captum(bert_model, padded, method):
    model = bert_model
    ids, mask, token_types = padded
    assert token_types.any(), "token types of both kinds, so a dropped forward_kwargs would show"

    def forward(ids, mask, token_types):
        return model(input_ids=ids, attention_mask=mask, token_type_ids=token_types).logits

    with torch.no_grad():
        predicted = forward(ids, mask, token_types).argmax(dim=1)
    actual = token_attribution(
        model,
        ids,
        method=method,
        attention_mask=mask,
        forward_kwargs={"token_type_ids": token_types},
        steps=STEPS,
    )
    expected = captum_reference(
        method, forward, model.bert.embeddings.word_embeddings, ids, predicted, (mask, token_types)
    )
    assert_token_map(actual, mask)
    real = mask.bool()
    assert_matches(actual[real], expected[real])
    # The token types reach the model: without them the values differ.
    without = token_attribution(model, ids, predicted, method=method, attention_mask=mask, steps=STEPS)
    assert not torch.allclose(without, actual, atol=1e-4)


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients"])
def test_distilbert_matches_captum(distilbert_model, padded, method):
    model = distilbert_model
    ids, mask, _ = padded
    target = torch.tensor([2, 0, 1, 2])

    def forward(ids, mask):
        return model(input_ids=ids, attention_mask=mask).logits

    actual = token_attribution(model, ids, target, method=method, attention_mask=mask, steps=STEPS)
    expected = captum_reference(method, forward, model.distilbert.embeddings.word_embeddings, ids, target, (mask,))
    assert_token_map(actual, mask)
    real = mask.bool()
    assert_matches(actual[real], expected[real])


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients"])
def test_gpt2_matches_captum(gpt2_model, method):
    model = gpt2_model
    ids = random_ids()

    def forward(ids):
        return model(ids).logits[:, -1]

    with torch.no_grad():
        predicted = forward(ids).argmax(dim=1)
    actual = token_attribution(model, ids, method=method, baseline_token_id=EOS, steps=STEPS)
    expected = captum_reference(method, forward, model.transformer.wte, ids, predicted, baseline_id=EOS)
    assert_token_map(actual)
    assert_matches(actual, expected)


@pytest.mark.parametrize("target", [None, 5], ids=["predicted", "token_id"])
@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients"])
def test_llama_with_right_padding_matches_captum_per_sample(llama_model, padded, method, target):
    model = llama_model
    ids, mask, _ = padded
    lengths = mask.sum(dim=1)
    assert lengths.unique().numel() == N, "every text its own length"

    def forward(ids):
        return model(ids).logits[:, -1]

    actual = token_attribution(model, ids, target, method=method, attention_mask=mask, steps=STEPS)
    assert_token_map(actual, mask)
    for row, length in enumerate(lengths.tolist()):
        text = ids[row : row + 1, :length]  # the text alone, without its padding
        with torch.no_grad():
            token = forward(text).argmax(dim=1) if target is None else torch.tensor([target])
        expected = captum_reference(method, forward, model.model.embed_tokens, text, token)
        assert_matches(actual[row : row + 1, :length], expected, tolerance=2e-5)


def continuation_forward(model: nn.Module, prompt_length: int, continuation: Tensor):
    """``ids -> sum_i log p(continuation_i | ...)`` for ids that are a prompt of ``prompt_length`` tokens followed by
    ``continuation``."""

    def forward(ids: Tensor) -> Tensor:
        logits = model(ids).logits[:, prompt_length - 1 : prompt_length - 1 + len(continuation)]
        picked = logits.log_softmax(dim=-1).gather(2, continuation.view(1, -1, 1).expand(ids.shape[0], -1, 1))
        return picked.sum(dim=(1, 2))

    return forward


@pytest.mark.parametrize("per_prompt", [False, True], ids=["shared", "per_prompt"])
@pytest.mark.parametrize("method", ["saliency", "input_x_gradient"])
def test_llama_continuation_with_right_padding_matches_captum(llama_model, padded, method, per_prompt):
    model = llama_model
    ids, mask, _ = padded
    continuation = torch.tensor([[7, 11, 13], [8, 9, 10], [21, 22, 23], [30, 7, 41]])
    given = continuation if per_prompt else continuation[0]
    explanation = compute_token_explanation(model, ids, Continuation(given), methods=(method,), attention_mask=mask)
    actual = explanation.maps[method]
    assert_token_map(actual, mask)
    for row, length in enumerate(mask.sum(dim=1).tolist()):
        tokens = continuation[row] if per_prompt else continuation[0]
        text = torch.cat([ids[row, :length], tokens])[None]  # the continuation right after the last real token
        forward = continuation_forward(model, length, tokens)
        expected = captum_reference(method, forward, model.model.embed_tokens, text, None)[:, :length]
        assert_matches(actual[row : row + 1, :length], expected, tolerance=2e-5)
        with torch.no_grad():  # the explained score is the continuation's log-likelihood
            score = forward(text)
        assert explanation.target.log_softmax
        assert explanation.target.index[row].tolist() == tokens.tolist()
        assert score.item() < 0


def test_gpt2_continuation_integrated_gradients_keeps_the_continuation_on_the_path(gpt2_model, padded):
    model = gpt2_model
    ids, mask, _ = padded
    continuation = torch.tensor([7, 11, 13])
    actual = token_attribution(
        model,
        ids,
        Continuation(continuation),
        method="integrated_gradients",
        attention_mask=mask,
        baseline_token_id=EOS,
        steps=32,
    )
    for row, length in enumerate(mask.sum(dim=1).tolist()):
        prompt = ids[row : row + 1, :length]
        inner = continuation_forward(model, length, continuation)

        def forward(prompt: Tensor, inner=inner) -> Tensor:  # Captum explains the prompt; the continuation is fixed
            return inner(torch.cat([prompt, continuation.expand(prompt.shape[0], -1)], dim=1))

        expected = captum_reference("integrated_gradients", forward, model.transformer.wte, prompt, None, (), EOS, 32)
        with torch.no_grad():
            difference = forward(prompt) - forward(torch.full_like(prompt, EOS))
        # The reference is sound: Captum's values are complete, and 0 on the continuation (it is not on the path).
        torch.testing.assert_close(expected.sum(), difference[0], rtol=1e-4, atol=1e-4)
        assert (expected[:, length:] == 0).all()
        torch.testing.assert_close(actual[row].sum(), difference[0], rtol=1e-3, atol=1e-3)
        assert_matches(actual[row : row + 1, :length], expected[:, :length])


# --- integrated gradients' completeness ---------------------------------------------------------------------------


def test_integrated_gradients_sum_to_the_score_difference_on_bert(bert_model, padded):
    model = bert_model
    ids, mask, token_types = padded
    kwargs = {"attention_mask": mask, "token_type_ids": token_types}
    values = token_attribution(
        model,
        ids,
        1,
        method="integrated_gradients",
        attention_mask=mask,
        forward_kwargs={"token_type_ids": token_types},
        steps=32,
    )
    assert_token_map(values, mask)
    with torch.no_grad():
        difference = (
            model(input_ids=ids, **kwargs).logits[:, 1] - model(input_ids=torch.zeros_like(ids), **kwargs).logits[:, 1]
        )
    assert difference.abs().min() > 1e-2
    torch.testing.assert_close(values.sum(dim=1), difference, rtol=1e-3, atol=1e-3 * float(difference.abs().max()))


def test_integrated_gradients_sum_to_the_next_token_score_difference_on_gpt2(gpt2_model, padded):
    model = gpt2_model
    ids, mask, _ = padded
    values = token_attribution(
        model, ids, 5, method="integrated_gradients", attention_mask=mask, baseline_token_id=EOS, steps=32
    )
    rows, last = torch.arange(N), mask.sum(dim=1) - 1
    with torch.no_grad():
        at_x = model(input_ids=ids, attention_mask=mask).logits[rows, last, 5]
        at_baseline = model(input_ids=torch.full_like(ids, EOS), attention_mask=mask).logits[rows, last, 5]
    difference = at_x - at_baseline
    assert difference.abs().min() > 1e-2
    torch.testing.assert_close(values.sum(dim=1), difference, rtol=1e-3, atol=1e-3 * float(difference.abs().max()))
    # Two points are not enough on this path: the sum then misses the difference (the steps are used).
    rough = token_attribution(
        model, ids, 5, method="integrated_gradients", attention_mask=mask, baseline_token_id=EOS, steps=2
    )
    assert not torch.allclose(rough.sum(dim=1), difference, rtol=1e-3, atol=1e-3)


# --- one shared pass ----------------------------------------------------------------------------------------------


def test_saliency_and_input_x_gradient_share_one_forward_and_one_backward(bert_model, padded, monkeypatch):
    model = bert_model
    ids, mask, _ = padded
    counts = {"forward": 0, "grad": 0}
    real_grad = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        counts["grad"] += 1
        return real_grad(*args, **kwargs)

    def count_forward(module, args, kwargs=None):
        counts["forward"] += 1

    monkeypatch.setattr(gradients_module.torch.autograd, "grad", counting_grad)
    handle = model.register_forward_pre_hook(count_forward, with_kwargs=True)
    try:
        explanation = compute_token_explanation(
            model, ids, methods=["saliency", "input_x_gradient"], attention_mask=mask
        )
    finally:
        handle.remove()
    assert counts == {"forward": 1, "grad": 1}
    monkeypatch.undo()
    assert set(explanation.maps) == {"saliency", "input_x_gradient"}
    assert explanation.layer_name == "bert.embeddings.word_embeddings"
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(explanation.logits, logits)
    assert explanation.targets.tolist() == logits.argmax(dim=1).tolist()
    for method, values in explanation.maps.items():
        assert_token_map(values, mask)
        alone = token_attribution(model, ids, method=method, attention_mask=mask)
        torch.testing.assert_close(values, alone, rtol=0, atol=0)


def test_the_pass_counter_sees_forward_passes(bert_model, padded):
    """The counter above would see more passes: integrated gradients alone runs several."""
    model = bert_model
    ids, mask, _ = padded
    counts = {"forward": 0}

    def count_forward(module, args, kwargs=None):
        counts["forward"] += 1

    handle = model.register_forward_pre_hook(count_forward, with_kwargs=True)
    try:
        compute_token_explanation(model, ids, methods=["integrated_gradients"], attention_mask=mask)
    finally:
        handle.remove()
    assert counts["forward"] > 2


# --- the model left as found --------------------------------------------------------------------------------------


class NoisyClassifier(nn.Module):
    """A BERT classifier inside a plain module whose forward also draws from torch's random stream (as a noise layer
    or Monte-Carlo dropout would); the draw does not change the logits."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.classifier = bert(dropout=0.3)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        logits = self.classifier(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits + 0.0 * torch.rand_like(logits)


CONTEXTS = ("train_mode_with_grads", "no_grad", "inference_mode", "inference_mode_ids")


def state_cases() -> list:
    """(method, context) for every token method."""
    return [
        pytest.param(method, context, id=f"{method}-{context}") for method in token_methods() for context in CONTEXTS
    ]


@pytest.mark.parametrize(("method", "context"), state_cases())
def test_every_token_method_leaves_the_model_exactly_as_found(padded, method, context):
    ids, mask, _ = padded
    model = NoisyClassifier().eval()
    options = {"steps": 4} if method == "integrated_gradients" else {}
    expected = token_attribution(model, ids, method=method, attention_mask=mask, **options)
    if context == "train_mode_with_grads":
        model.train()
        model.classifier.bert.encoder.layer[0].eval()  # a frozen block keeps its own flag
        model.classifier.classifier.weight.grad = torch.randn_like(model.classifier.classifier.weight)
        embeddings = model.classifier.bert.embeddings.word_embeddings
        embeddings.weight.grad = torch.randn_like(embeddings.weight)
    before = snapshot_model(model)
    manager = {
        "train_mode_with_grads": contextlib.nullcontext,
        "no_grad": torch.no_grad,
        "inference_mode": torch.inference_mode,
        "inference_mode_ids": torch.inference_mode,
    }[context]
    rng = torch.get_rng_state()
    with manager():
        if context == "inference_mode_ids":  # ids made under inference mode too
            ids, mask = ids.clone(), mask.clone()
        values = token_attribution(model, ids, method=method, attention_mask=mask, **options)
    assert torch.equal(torch.get_rng_state(), rng), "torch's random stream moved"
    assert_model_unchanged(model, before)
    assert_no_hooks(model)
    assert model.training == (context == "train_mode_with_grads")
    # Dropout is off while explaining: the values are those of the model in eval mode.
    assert_token_map(values, mask)
    torch.testing.assert_close(values, expected, rtol=0, atol=0)


def test_the_noisy_classifier_does_draw_random_numbers(padded):
    """Without the package's care, a forward pass of NoisyClassifier moves the stream (the RNG check above can fail)."""
    ids, mask, _ = padded
    model = NoisyClassifier().eval()
    rng = torch.get_rng_state()
    with torch.no_grad():
        model(ids, mask)
    assert not torch.equal(torch.get_rng_state(), rng)


# --- the embedding layer ------------------------------------------------------------------------------------------


class WrappedClassifier(nn.Module):
    """A Hugging Face classifier inside a plain module: ``forward(input_ids, attention_mask=None)`` -> logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


@pytest.mark.parametrize("wrapper", ["plain_module", "lightning_module"])
def test_a_wrapped_hugging_face_model_uses_its_input_embeddings(bert_model, padded, wrapper):
    ids, mask, _ = padded
    if wrapper == "plain_module":
        model, inner, prefix = WrappedClassifier(bert_model), bert_model, "model."
    else:
        torch.manual_seed(6)
        model = LitTextClassifier().eval()
        inner, prefix = model.model, "model."
    explanation = compute_token_explanation(model, ids, methods=("input_x_gradient",), attention_mask=mask)
    assert explanation.layer_name == prefix + "bert.embeddings.word_embeddings"
    direct = token_attribution(inner, ids, attention_mask=mask)
    assert_token_map(explanation.maps["input_x_gradient"], mask)
    torch.testing.assert_close(explanation.maps["input_x_gradient"], direct)


class PositionalTokenModel(nn.Module):
    """A plain text classifier: a position embedding (registered and called first, on ids of the same shape) plus a
    token embedding, then a mean and a linear head. No ``get_input_embeddings``."""

    def __init__(self, classes: int = 3, width: int = 8) -> None:
        super().__init__()
        self.positions = nn.Embedding(T, width)
        self.tokens = nn.Embedding(VOCAB, width)
        self.head = nn.Linear(width, classes)

    def forward(self, input_ids: Tensor) -> Tensor:
        where = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        hidden = torch.tanh(self.positions(where) + self.tokens(input_ids))
        return self.head(hidden.mean(dim=1))


def test_the_embedding_that_reads_the_ids_is_found(padded):
    torch.manual_seed(7)
    model = PositionalTokenModel().eval()
    ids = random_ids(length=T)
    target = torch.tensor([0, 1, 2, 1])
    explanation = compute_token_explanation(model, ids, target, methods=("input_x_gradient",))
    assert explanation.layer_name == "tokens"
    found = explanation.maps["input_x_gradient"]
    expected = LayerGradientXActivation(model, model.tokens).attribute(ids, target=target).detach().sum(dim=-1)
    assert_token_map(found)
    assert_matches(found, expected)
    by_name = token_attribution(model, ids, target, embedding="tokens")
    by_module = token_attribution(model, ids, target, embedding=model.tokens)
    torch.testing.assert_close(by_name, found, rtol=0, atol=0)
    torch.testing.assert_close(by_module, found, rtol=0, atol=0)
    other = token_attribution(model, ids, target, embedding="positions")  # another layer, other values
    assert not torch.allclose(other, found, atol=1e-4)


def test_an_embedding_given_by_dotted_name_on_a_hugging_face_model(bert_model, padded):
    ids, mask, _ = padded
    default = token_attribution(bert_model, ids, attention_mask=mask)
    by_name = token_attribution(bert_model, ids, attention_mask=mask, embedding="bert.embeddings.word_embeddings")
    by_module = token_attribution(
        bert_model, ids, attention_mask=mask, embedding=bert_model.bert.embeddings.word_embeddings
    )
    torch.testing.assert_close(by_name, default, rtol=0, atol=0)
    torch.testing.assert_close(by_module, default, rtol=0, atol=0)
    # The sum of the three embeddings (words, positions, token types) is another layer: other values.
    summed = token_attribution(bert_model, ids, attention_mask=mask, embedding="bert.embeddings.LayerNorm")
    assert_token_map(summed, mask)
    assert not torch.allclose(summed, default, atol=1e-4)


class OneHotModel(nn.Module):
    """A text model without an embedding layer: one-hot ids into a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(VOCAB, 3)

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.linear(F.one_hot(input_ids, VOCAB).float()).mean(dim=1)


def test_a_model_without_an_embedding_asks_for_embedding():
    model = OneHotModel()
    before = snapshot_model(model)
    with pytest.raises(ValueError, match="embedding="):
        token_attribution(model, random_ids())
    assert_model_unchanged(model, before)
    assert_no_hooks(model)


def test_an_embedding_that_does_not_give_one_vector_per_token_asks_for_embedding(bert_model, padded):
    ids, mask, _ = padded
    with pytest.raises(ValueError, match="embedding="):
        token_attribution(bert_model, ids, attention_mask=mask, embedding="bert.pooler")
    assert_no_hooks(bert_model)


# --- targets ------------------------------------------------------------------------------------------------------


def test_classifier_targets_int_tensor_and_callable(distilbert_model, padded):
    model = distilbert_model
    ids, mask, _ = padded
    by_class = {k: token_attribution(model, ids, k, attention_mask=mask) for k in range(3)}
    assert not torch.allclose(by_class[0], by_class[1], atol=1e-4)
    torch.testing.assert_close(token_attribution(model, ids, torch.full((N,), 2), attention_mask=mask), by_class[2])
    per_sample = torch.tensor([2, 0, 1, 2])
    mixed = token_attribution(model, ids, per_sample, attention_mask=mask)
    for row, k in enumerate(per_sample.tolist()):
        torch.testing.assert_close(mixed[row], by_class[k][row])
    called = token_attribution(model, ids, lambda logits: logits[:, 1], attention_mask=mask)
    torch.testing.assert_close(called, by_class[1])
    with torch.no_grad():
        predicted = model(input_ids=ids, attention_mask=mask).logits.argmax(dim=1)
    default = token_attribution(model, ids, attention_mask=mask)
    torch.testing.assert_close(default, token_attribution(model, ids, predicted, attention_mask=mask), rtol=0, atol=0)
    explanation = compute_token_explanation(model, ids, per_sample, attention_mask=mask)
    assert explanation.targets.tolist() == per_sample.tolist()


@pytest.mark.parametrize("model_name", ["gpt2", "llama"])
def test_causal_lm_default_target_is_the_predicted_token_after_the_last_real_one(request, padded, model_name):
    model = request.getfixturevalue(f"{model_name}_model")
    ids, mask, _ = padded
    explanation = compute_token_explanation(model, ids, methods=("input_x_gradient",), attention_mask=mask)
    last = mask.sum(dim=1) - 1
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    predicted = logits[torch.arange(N), last].argmax(dim=1)
    assert not torch.equal(predicted, logits[:, -1].argmax(dim=1)), "the padding's prediction must differ somewhere"
    assert explanation.targets.tolist() == predicted.tolist()
    assert explanation.target.position.tolist() == last.tolist()
    values = explanation.maps["input_x_gradient"]
    assert_token_map(values, mask)
    torch.testing.assert_close(values, token_attribution(model, ids, predicted, attention_mask=mask), rtol=0, atol=0)


def test_causal_lm_explicit_token_id(llama_model, padded):
    ids, mask, _ = padded
    as_int = token_attribution(llama_model, ids, 5, attention_mask=mask)
    torch.testing.assert_close(as_int, token_attribution(llama_model, ids, torch.full((N,), 5), attention_mask=mask))
    other = token_attribution(llama_model, ids, 6, attention_mask=mask)
    assert not torch.allclose(as_int, other, atol=1e-4)
    explanation = compute_token_explanation(llama_model, ids, torch.tensor([5, 6, 7, 8]), attention_mask=mask)
    assert explanation.targets.tolist() == [5, 6, 7, 8]


class DictOutput(nn.Module):
    """A classifier whose forward returns a dict (no ``logits`` key) or a tuple."""

    def __init__(self, model: nn.Module, as_tuple: bool) -> None:
        super().__init__()
        self.model = model
        self.as_tuple = as_tuple

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        pooled = out.hidden_states[-1][:, 0]
        if self.as_tuple:
            return pooled, out.logits
        return {"pooled": pooled, "scores": out.logits}


@pytest.mark.parametrize(
    ("as_tuple", "output", "other"), [(False, "scores", "pooled"), (True, 1, 0)], ids=["dict", "tuple"]
)
def test_output_picks_the_explained_tensor(distilbert_model, padded, as_tuple, output, other):
    ids, mask, _ = padded
    model = DictOutput(distilbert_model, as_tuple)
    for method in ("input_x_gradient", "integrated_gradients"):
        values = token_attribution(model, ids, 1, method=method, attention_mask=mask, output=output, steps=4)
        reference = token_attribution(distilbert_model, ids, 1, method=method, attention_mask=mask, steps=4)
        assert_token_map(values, mask)
        torch.testing.assert_close(values, reference)
    pooled = token_attribution(model, ids, 1, attention_mask=mask, output=other)  # dimension 1 of the pooled output
    assert not torch.allclose(pooled, reference, atol=1e-4)


# --- errors -------------------------------------------------------------------------------------------------------


def test_float_input_ids_are_refused(bert_model):
    with pytest.raises(ValueError, match="integer token ids"):
        token_attribution(bert_model, random_ids().float())


def test_an_attention_mask_of_another_shape_is_refused(bert_model, padded):
    ids, mask, _ = padded
    with pytest.raises(ValueError, match=r"attention_mask must have the ids' shape \(4, 10\), got \(4, 9\)"):
        token_attribution(bert_model, ids, attention_mask=mask[:, :-1])


def test_gpt2_integrated_gradients_without_a_baseline_token_asks_for_baseline_token_id(gpt2_model):
    assert gpt2_model.config.pad_token_id is None
    with pytest.raises(ValueError, match="baseline_token_id="):
        token_attribution(gpt2_model, random_ids(), method="integrated_gradients")
    assert_no_hooks(gpt2_model)


# --- every token method has a reference test ----------------------------------------------------------------------


def test_every_token_method_names_a_reference_test():
    assert set(REFERENCE_TESTS) == set(token_methods()), "add the new token method's Captum test to REFERENCE_TESTS"
    for method, functions in REFERENCE_TESTS.items():
        for function in functions:
            test = globals().get(function)
            assert callable(test) and function.startswith("test_"), f"{method}: {function} does not exist"
            marks = getattr(test, "pytestmark", [])
            parametrized = [m.args[1] for m in marks if m.name == "parametrize" and m.args[0] == "method"]
            assert parametrized and method in parametrized[0], f"{function} does not run {method}"
