"""Tests for lightning_explain.overfit.signals against direct autograd computations and hand-computed values."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from stats_by_hand import paired_t
from torch import nn

from lightning_explain.attribution import saliency
from lightning_explain.overfit.signals import (
    explanation_drift,
    explanation_gap,
    gradient_alignment,
    gradient_norm,
    map_ranks,
    mask_area,
    mask_fraction,
    paired_rise,
    read_probe,
)


def _image_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 4))


def _image_batch(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 6, 6, generator=generator), torch.randint(4, (n,), generator=generator)


def _batchnorm_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 4)
    )


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.flatten() for t in tensors])


# --- read_probe -------------------------------------------------------------------------------------------------------


def test_read_probe_losses_and_loss_equal_per_sample_cross_entropy():
    model = _image_model()
    x, y = _image_batch()
    reading = read_probe(model, x, y, list(model.parameters()))
    with torch.no_grad():
        expected = F.cross_entropy(model(x), y, reduction="none")
    assert reading.losses.shape == (6,) and reading.losses.dtype == torch.float32
    torch.testing.assert_close(reading.losses, expected)
    assert reading.loss.ndim == 0
    assert reading.loss.item() == pytest.approx(sum(expected.tolist()) / 6, rel=1e-5)


def test_read_probe_correct_and_accuracy_match_argmax_of_logits():
    model = _image_model()
    x, y = _image_batch(12)
    with torch.no_grad():
        logits = model(x)
    y[:6] = logits[:6].argmax(dim=1)  # at least six right
    y[6:] = (logits[6:].argmax(dim=1) + 1) % 4  # and six wrong
    reading = read_probe(model, x, y, list(model.parameters()))
    expected = [bool(logits[i].argmax() == y[i]) for i in range(12)]
    assert reading.correct.dtype == torch.bool
    assert reading.correct.tolist() == expected == [True] * 6 + [False] * 6
    assert reading.accuracy.item() == pytest.approx(0.5)


def test_read_probe_gradients_equal_autograd_grad_of_mean_loss():
    model = _image_model()
    x, y = _image_batch()
    parameters = list(model.parameters())
    reading = read_probe(model, x, y, parameters)
    expected = torch.autograd.grad(F.cross_entropy(model(x), y), parameters)
    assert len(reading.gradients) == len(parameters)
    for got, want, parameter in zip(reading.gradients, expected, parameters, strict=True):
        assert got.shape == parameter.shape
        assert not got.requires_grad
        torch.testing.assert_close(got, want)


def test_read_probe_gradients_follow_custom_per_sample_loss_and_none_for_unused_parameter():
    model = _image_model()
    x, y = _image_batch()
    unused = nn.Parameter(torch.ones(3))
    parameters = [model[0].weight, unused, model[3].bias]

    def loss_fn(logits, targets):
        return F.multi_margin_loss(logits, targets, reduction="none")

    reading = read_probe(model, x, y, parameters, loss_fn=loss_fn)
    logits = model(x)
    torch.testing.assert_close(reading.losses, F.multi_margin_loss(logits, y, reduction="none").detach())
    expected = torch.autograd.grad(F.multi_margin_loss(logits, y), [model[0].weight, model[3].bias])
    assert reading.gradients[1] is None
    torch.testing.assert_close(reading.gradients[0], expected[0])
    torch.testing.assert_close(reading.gradients[2], expected[1])


def test_read_probe_maps_equal_saliency_of_labelled_class():
    model = _image_model()
    x, y = _image_batch()
    reading = read_probe(model, x, y, list(model.parameters()))
    expected = saliency(model, x, target=y)
    assert reading.maps.shape == (6, 6, 6) and reading.maps.dtype == torch.float32
    torch.testing.assert_close(reading.maps, expected)
    # and by hand: max over channels of |d logit_y / dx|, one sample at a time
    for i in range(6):
        xi = x[i : i + 1].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(xi)[0, y[i]], xi)
        torch.testing.assert_close(reading.maps[i], grad[0].abs().amax(dim=0))


def test_read_probe_tabular_maps_are_absolute_input_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    x = torch.randn(4, 5)
    y = torch.tensor([0, 2, 1, 2])
    reading = read_probe(model, x, y, list(model.parameters()))
    assert reading.maps.shape == (4, 5)
    for i in range(4):
        jacobian = torch.autograd.functional.jacobian(lambda v, i=i: model(v.unsqueeze(0))[0, y[i]], x[i])
        torch.testing.assert_close(reading.maps[i], jacobian.abs())


def test_read_probe_uses_eval_mode_and_leaves_batchnorm_model_as_found():
    model = _batchnorm_model()
    model.train()
    model(torch.randn(8, 3, 6, 6) * 2 + 1)  # move the running statistics away from their defaults
    reference = copy.deepcopy(model).eval()
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    parameters = {name: p.detach().clone() for name, p in model.named_parameters()}
    x, y = _image_batch()
    reading = read_probe(model, x, y, list(model.parameters()))
    assert model.training and all(m.training for m in model.modules())
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, buffers[name]), name
    for name, parameter in model.named_parameters():
        assert parameter.grad is None, name
        assert torch.equal(parameter.detach(), parameters[name]), name
    with torch.no_grad():
        expected = F.cross_entropy(reference(x), y, reduction="none")  # eval mode: running statistics
    torch.testing.assert_close(reading.losses, expected)


def test_read_probe_leaves_an_eval_model_in_eval_mode():
    model = _batchnorm_model().eval()
    x, y = _image_batch()
    read_probe(model, x, y, list(model.parameters()))
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize("requires_grad", [False, True])
def test_read_probe_leaves_inputs_unchanged(requires_grad):
    model = _image_model()
    x, y = _image_batch()
    x.requires_grad_(requires_grad)
    before = x.detach().clone()
    targets_before = y.clone()
    read_probe(model, x, y, list(model.parameters()))
    assert x.requires_grad is requires_grad
    assert x.grad is None
    assert torch.equal(x.detach(), before)
    assert torch.equal(y, targets_before)


def test_read_probe_works_under_no_grad_and_gives_the_same_reading():
    model = _image_model()
    x, y = _image_batch()
    parameters = list(model.parameters())
    expected = read_probe(model, x, y, parameters)
    with torch.no_grad():
        reading = read_probe(model, x, y, parameters)
    assert torch.is_grad_enabled()
    torch.testing.assert_close(reading.losses, expected.losses)
    torch.testing.assert_close(reading.maps, expected.maps)
    for got, want in zip(reading.gradients, expected.gradients, strict=True):
        torch.testing.assert_close(got, want)
    assert all(p.grad is None for p in parameters)


def test_read_probe_works_under_inference_mode():
    model = _image_model()
    x, y = _image_batch()
    parameters = list(model.parameters())
    expected = read_probe(model, x, y, parameters)
    with torch.inference_mode():
        reading = read_probe(model, x, y, parameters)
        inference_inputs = x.clone()  # an inference tensor
        from_inference_inputs = read_probe(model, inference_inputs, y, parameters)
    for result in (reading, from_inference_inputs):
        torch.testing.assert_close(result.losses, expected.losses)
        torch.testing.assert_close(result.maps, expected.maps)
        for got, want in zip(result.gradients, expected.gradients, strict=True):
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_read_probe_accepts_targets_created_in_inference_mode_like_saliency_does(chunk_size):
    # saliency(model, x, target=y) accepts inference-tensor targets; so does read_probe (it clones the targets, in
    # every chunk), e.g. for a probe whose labels were taken from a batch inside a validation loop.
    model = _image_model()
    x, y = _image_batch()
    expected = read_probe(model, x, y, list(model.parameters()))
    with torch.inference_mode():
        inference_targets = y.clone()
        torch.testing.assert_close(saliency(model, x, target=inference_targets), expected.maps)
    assert inference_targets.is_inference()
    reading = read_probe(model, x, inference_targets, list(model.parameters()), chunk_size=chunk_size)
    torch.testing.assert_close(reading.losses, expected.losses)
    torch.testing.assert_close(reading.maps, expected.maps)
    for got, want in zip(reading.gradients, expected.gradients, strict=True):
        torch.testing.assert_close(got, want)


def test_read_probe_without_maps_gives_none_and_same_losses():
    model = _image_model()
    x, y = _image_batch()
    with_maps = read_probe(model, x, y, list(model.parameters()))
    reading = read_probe(model, x, y, list(model.parameters()), with_maps=False)
    assert reading.maps is None
    torch.testing.assert_close(reading.losses, with_maps.losses)
    for got, want in zip(reading.gradients, with_maps.gradients, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("chunk_size", [None, 64, 7, 1])
def test_read_probe_scalar_loss_raises_value_error_naming_reduction_none(chunk_size):
    model = _image_model()
    x, y = _image_batch(20)
    with pytest.raises(ValueError, match="reduction='none'"):
        read_probe(
            model,
            x,
            y,
            list(model.parameters()),
            loss_fn=lambda logits, targets: F.cross_entropy(logits, targets),
            chunk_size=chunk_size,
        )


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want.double()).norm() / want.double().norm())


@pytest.mark.parametrize("with_batchnorm", [False, True], ids=["plain", "batchnorm-in-train-mode"])
def test_read_probe_does_not_depend_on_chunk_size(with_batchnorm):
    # 20 samples: one chunk (None, 64), chunks of 7, 7 and 6 (unequal: the mean of chunk means would be wrong), or
    # one sample at a time. BatchNorm in train mode would use each chunk's statistics if eval mode were not used.
    model = _batchnorm_model() if with_batchnorm else _image_model()
    if with_batchnorm:
        model.train()
        model(torch.randn(8, 3, 6, 6) * 2 + 1)  # running statistics away from their defaults
    x, y = _image_batch(20)
    parameters = list(model.parameters())
    eval_model = copy.deepcopy(model).eval()
    logits = eval_model(x)
    expected_losses = F.cross_entropy(logits, y, reduction="none").detach()
    expected_gradients = torch.autograd.grad(F.cross_entropy(logits, y), list(eval_model.parameters()))
    expected_maps = saliency(eval_model, x, target=y)
    expected_correct = logits.argmax(dim=1) == y
    for chunk_size in (None, 64, 7, 1):
        reading = read_probe(model, x, y, parameters, chunk_size=chunk_size)
        assert reading.losses.shape == (20,) and reading.correct.shape == (20,) and reading.maps.shape == (20, 6, 6)
        torch.testing.assert_close(reading.losses, expected_losses)
        assert reading.loss.item() == pytest.approx(expected_losses.double().mean().item(), rel=1e-6)
        assert torch.equal(reading.correct, expected_correct)
        assert reading.accuracy.item() == pytest.approx(expected_correct.double().mean().item())
        torch.testing.assert_close(reading.maps, expected_maps)
        assert len(reading.gradients) == len(parameters)
        for got, want in zip(reading.gradients, expected_gradients, strict=True):
            assert _relative_error(got, want) < 1e-6, chunk_size
        assert all(p.grad is None for p in parameters)
    assert model.training and all(m.training for m in model.modules())  # left as found


def test_read_probe_chunks_give_the_same_custom_loss_gradients_and_unused_parameters_stay_none():
    model = _image_model()
    x, y = _image_batch(20)
    unused = nn.Parameter(torch.ones(3))
    parameters = [model[0].weight, unused, model[3].bias]

    def loss_fn(logits, targets):
        return F.multi_margin_loss(logits, targets, reduction="none")

    whole = read_probe(model, x, y, parameters, loss_fn=loss_fn, chunk_size=None)
    expected = torch.autograd.grad(F.multi_margin_loss(model(x), y), [model[0].weight, model[3].bias])
    for chunk_size in (None, 7, 1):
        reading = read_probe(model, x, y, parameters, loss_fn=loss_fn, chunk_size=chunk_size)
        torch.testing.assert_close(reading.losses, whole.losses)
        assert reading.gradients[1] is None
        assert _relative_error(reading.gradients[0], expected[0]) < 1e-6
        assert _relative_error(reading.gradients[2], expected[1]) < 1e-6


def test_read_probe_chunks_of_integer_inputs_give_no_maps_and_the_same_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(4 * 5, 3))
    tokens = torch.randint(10, (20, 5), generator=torch.Generator().manual_seed(2))
    y = torch.arange(20) % 3
    parameters = list(model.parameters())
    expected = torch.autograd.grad(F.cross_entropy(model(tokens), y), parameters)
    for chunk_size in (None, 7, 1):
        reading = read_probe(model, tokens, y, parameters, chunk_size=chunk_size)
        assert reading.maps is None
        for got, want in zip(reading.gradients, expected, strict=True):
            assert _relative_error(got, want) < 1e-6, chunk_size


def test_read_probe_integer_inputs_give_no_maps_but_losses_and_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(4 * 5, 3))
    tokens = torch.randint(10, (6, 5), generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    parameters = list(model.parameters())
    reading = read_probe(model, tokens, y, parameters)
    assert reading.maps is None
    logits = model(tokens)
    torch.testing.assert_close(reading.losses, F.cross_entropy(logits, y, reduction="none").detach())
    expected = torch.autograd.grad(F.cross_entropy(logits, y), parameters)
    for got, want in zip(reading.gradients, expected, strict=True):
        torch.testing.assert_close(got, want)


# --- gradient_alignment / gradient_norm -------------------------------------------------------------------------------


def _random_gradients(seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(3, 4, generator=generator),
        torch.randn(5, generator=generator),
        torch.randn(2, generator=generator),
    ]


def test_gradient_alignment_equals_cosine_of_concatenated_gradients():
    a, b = _random_gradients(0), _random_gradients(1)
    expected = F.cosine_similarity(_flat(a), _flat(b), dim=0)
    assert gradient_alignment(a, b).item() == pytest.approx(expected.item(), abs=1e-6)
    assert gradient_alignment(a, a).item() == pytest.approx(1.0, abs=1e-6)


def test_gradient_alignment_treats_none_as_zero():
    a, b = _random_gradients(0), _random_gradients(1)
    a_missing = [a[0], None, a[2]]
    b_missing = [b[0], b[1], None]
    expected = F.cosine_similarity(_flat([a[0], torch.zeros(5), a[2]]), _flat([b[0], b[1], torch.zeros(2)]), dim=0)
    assert gradient_alignment(a_missing, b_missing).item() == pytest.approx(expected.item(), abs=1e-6)
    # a parameter missing from both contributes nothing
    both_missing = gradient_alignment([a[0], None, a[2]], [b[0], None, b[2]])
    expected = F.cosine_similarity(_flat([a[0], a[2]]), _flat([b[0], b[2]]), dim=0)
    assert both_missing.item() == pytest.approx(expected.item(), abs=1e-6)


def test_gradient_alignment_is_minus_one_for_opposite_gradients():
    a = _random_gradients(3)
    assert gradient_alignment(a, [-g for g in a]).item() == pytest.approx(-1.0, abs=1e-6)
    assert gradient_alignment([torch.tensor([1.0, 0.0])], [torch.tensor([-1.0, 0.0])]).item() == -1.0


def test_gradient_alignment_orthogonal_gradients_give_zero():
    assert gradient_alignment([torch.tensor([1.0, 0.0]), None], [torch.tensor([0.0, 2.0]), None]).item() == 0.0
    assert gradient_alignment([torch.tensor([3.0]), None], [None, torch.tensor([4.0])]).item() == 0.0


def test_gradient_alignment_is_nan_when_one_gradient_is_all_zero():
    a = _random_gradients(0)
    assert math.isnan(gradient_alignment(a, [torch.zeros_like(g) for g in a]).item())
    assert math.isnan(gradient_alignment([None, None], [torch.ones(2), torch.ones(3)]).item())
    assert math.isnan(gradient_alignment([None], [None]).item())


def test_gradient_alignment_length_mismatch_raises():
    with pytest.raises(ValueError):
        gradient_alignment([torch.ones(2)], [torch.ones(2), torch.ones(2)])


def test_gradient_norm_equals_norm_of_concatenation():
    a = _random_gradients(4)
    by_hand = math.sqrt(sum(v * v for g in a for v in g.flatten().tolist()))
    assert gradient_norm(a).item() == pytest.approx(by_hand, rel=1e-6)
    assert gradient_norm([None, torch.tensor([3.0, 0.0]), torch.tensor([[4.0]])]).item() == pytest.approx(5.0)


def test_gradient_norm_needs_a_gradient():
    with pytest.raises(ValueError):
        gradient_norm([None, None])


# --- mask_fraction / mask_area ----------------------------------------------------------------------------------------


def test_mask_fraction_hand_computed_examples():
    maps = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[-1.0, 3.0], [0.0, 0.0]]])
    masks = torch.tensor([[[True, False], [False, True]], [[True, False], [False, False]]])
    # sample 0: (1 + 4) / 10; sample 1: |-1| / (1 + 3)
    torch.testing.assert_close(mask_fraction(maps, masks), torch.tensor([0.5, 0.25]))
    torch.testing.assert_close(mask_fraction(maps, masks.long()), torch.tensor([0.5, 0.25]))  # 0/1 masks
    assert mask_fraction(torch.tensor([[[1.0, 3.0]]]), torch.tensor([[[False, True]]])).item() == 0.75


def test_mask_fraction_full_and_empty_masks():
    maps = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0)) + 0.1
    torch.testing.assert_close(mask_fraction(maps, torch.ones(3, 4, 4, dtype=torch.bool)), torch.ones(3))
    torch.testing.assert_close(mask_fraction(maps, torch.zeros(3, 4, 4, dtype=torch.bool)), torch.zeros(3))


def test_mask_fraction_shape_mismatch_raises():
    with pytest.raises(ValueError):
        mask_fraction(torch.ones(2, 4, 4), torch.ones(2, 4, 5, dtype=torch.bool))


def test_mask_fraction_all_zero_map_is_nan():
    maps = torch.zeros(2, 3, 3)
    maps[1, 0, 0] = 2.0
    masks = torch.zeros(2, 3, 3, dtype=torch.bool)
    masks[:, 0, :] = True
    result = mask_fraction(maps, masks)
    assert math.isnan(result[0].item())
    assert result[1].item() == 1.0


def test_mask_fraction_of_uniform_map_equals_mask_area():
    masks = torch.zeros(3, 5, 4, dtype=torch.bool)
    masks[0, 1:3, 1:3] = True  # 4 of 20
    masks[1, :, 0] = True  # 5 of 20
    masks[2, 0, 0] = True  # 1 of 20
    area = mask_area(masks)
    torch.testing.assert_close(area, torch.tensor([4 / 20, 5 / 20, 1 / 20]))
    torch.testing.assert_close(mask_fraction(torch.full((3, 5, 4), 0.3), masks), area)


# --- explanation_gap --------------------------------------------------------------------------------------------------


def _naive_gap(train_maps: torch.Tensor, val_maps: torch.Tensor) -> float:
    def average(maps):
        scaled = [m.abs().double() / m.abs().double().sum() for m in maps if m.abs().sum() > 0]
        return sum(scaled) / len(scaled)

    return 0.5 * float((average(train_maps) - average(val_maps)).abs().sum())


def test_explanation_gap_is_zero_for_identical_sets():
    maps = torch.rand(4, 5, 5, generator=torch.Generator().manual_seed(0))
    assert explanation_gap(maps, maps.clone()).item() == pytest.approx(0.0, abs=1e-7)
    assert explanation_gap(maps, maps * 7).item() == pytest.approx(0.0, abs=1e-6)  # scale does not matter


def test_explanation_gap_is_one_for_disjoint_support():
    train = torch.zeros(3, 4, 4)
    val = torch.zeros(2, 4, 4)
    train[:, :2] = torch.rand(3, 2, 4, generator=torch.Generator().manual_seed(0)) + 0.1
    val[:, 2:] = torch.rand(2, 2, 4, generator=torch.Generator().manual_seed(1)) + 0.1
    assert explanation_gap(train, val).item() == pytest.approx(1.0, abs=1e-6)


def test_explanation_gap_is_symmetric_and_matches_naive_computation():
    generator = torch.Generator().manual_seed(0)
    train = torch.rand(5, 6, 6, generator=generator) ** 3
    val = torch.randn(3, 6, 6, generator=generator)  # signed maps count by magnitude
    val[1] = 0.0  # an all-zero map is left out
    expected = _naive_gap(train, val)
    assert 0 < expected < 1
    assert explanation_gap(train, val).item() == pytest.approx(expected, abs=1e-6)
    assert explanation_gap(val, train).item() == pytest.approx(expected, abs=1e-6)


def test_explanation_gap_shape_mismatch_raises():
    with pytest.raises(ValueError):
        explanation_gap(torch.rand(2, 4, 4), torch.rand(2, 4, 5))


# --- paired_rise ------------------------------------------------------------------------------------------------------


def test_paired_rise_equals_hand_computedpaired_t():
    losses = [1.1, 1.2, 1.3, 1.2]
    reference = [1.0, 1.0, 1.1, 1.0]
    # differences 0.1, 0.2, 0.2, 0.2: mean 0.175, std 0.05, t = 0.175 / (0.05 / 2) = 7
    assert paired_t(losses, reference) == pytest.approx(7.0)
    assert paired_rise(torch.tensor(losses), torch.tensor(reference)).item() == pytest.approx(7.0, rel=1e-4)
    generator = torch.Generator().manual_seed(0)
    reference = torch.rand(50, generator=generator)
    losses = reference + 0.05 + 0.2 * torch.randn(50, generator=generator)
    expected = paired_t(losses.tolist(), reference.tolist())
    assert paired_rise(losses, reference).item() == pytest.approx(expected, rel=1e-4)
    assert paired_rise(reference, losses).item() == pytest.approx(-expected, rel=1e-4)


def test_paired_rise_is_zero_when_nothing_changes():
    losses = torch.tensor([0.3, 1.7, 2.2, 0.9])
    assert paired_rise(losses, losses.clone()).item() == 0.0


def test_paired_rise_is_infinite_for_a_uniform_shift():
    reference = torch.tensor([0.5, 1.0, 2.0, 3.25])
    assert paired_rise(reference + 0.5, reference).item() == math.inf
    assert paired_rise(reference - 0.25, reference).item() == -math.inf


def test_paired_rise_few_large_rises_are_less_significant_than_a_broad_rise_of_the_same_mean():
    n = 40
    reference = torch.ones(n)
    # 4 samples rise by 1.0, the other 36 fall by 0.05: mean (4 - 1.8) / 40 = 0.055
    spiky = reference.clone()
    spiky[:4] += 1.0
    spiky[4:] -= 0.05
    # every sample rises by 0.055 with a small alternating jitter: same mean
    broad = reference + 0.055 + 0.01 * torch.tensor([1.0, -1.0] * (n // 2))
    spiky_t = paired_rise(spiky, reference).item()
    broad_t = paired_rise(broad, reference).item()
    assert (spiky - reference).mean().item() == pytest.approx((broad - reference).mean().item(), abs=1e-6)
    assert spiky_t == pytest.approx(paired_t(spiky.tolist(), reference.tolist()), rel=1e-4)
    assert spiky_t < 2 < 20 < broad_t


def test_paired_rise_rejects_mismatched_or_non_vector_inputs():
    with pytest.raises(ValueError):
        paired_rise(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError):
        paired_rise(torch.ones(2, 3), torch.ones(2, 3))


def test_paired_rise_of_a_single_sample_is_nan():
    assert math.isnan(paired_rise(torch.tensor([2.0]), torch.tensor([1.0])).item())


# --- map_ranks / explanation_drift ------------------------------------------------------------------------------------


def test_map_ranks_are_pixel_ranks_per_map():
    maps = torch.tensor([[[0.5, 0.1], [0.9, 0.3]], [[2.0, 2.0], [1.0, 3.0]]])
    expected = torch.tensor([[2.0, 0.0, 3.0, 1.0], [1.5, 1.5, 0.0, 3.0]])
    torch.testing.assert_close(map_ranks(maps), expected)


def test_explanation_drift_is_zero_for_identical_maps_and_two_for_reversed_order():
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 4, 4, generator=generator)
    ranks = map_ranks(maps)
    assert explanation_drift(ranks, map_ranks(maps.clone())).item() == pytest.approx(0.0, abs=1e-6)
    assert explanation_drift(ranks, map_ranks(maps * 3 + 1)).item() == pytest.approx(0.0, abs=1e-6)  # monotone
    assert explanation_drift(ranks, map_ranks(-maps)).item() == pytest.approx(2.0, abs=1e-6)


def test_explanation_drift_averages_spearman_over_samples_ignoring_constant_maps():
    previous = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    current = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], [5.0, 5.0, 5.0, 5.0]])
    # correlations 1 and -1 (the constant map is undefined and left out): mean 0, drift 1
    assert explanation_drift(map_ranks(current), map_ranks(previous)).item() == pytest.approx(1.0, abs=1e-6)
