"""Deletion and insertion for token maps (top tokens replaced by the padding token), and the localisation metrics on
token maps, against their definitions written out as loops."""

from __future__ import annotations

import math

import pytest
import torch
from text_models import bert, gpt2, llama, text_batch

from lightning_explain.attribution import (
    Continuation,
    energy_in_mask,
    pointing_game,
    token_attribution,
    token_deletion_insertion,
)


def by_hand(model, ids, mask, maps, steps, pad, score):
    """Each text on its own: rank its real tokens (ties in position order), replace the top ceil(k L / steps) by
    ``pad`` (deletion) or all others (insertion), score with ``score(ids, mask)``, trapezoid over k / steps."""
    deletion, insertion = [], []
    for row in range(len(ids)):
        length = int(mask[row].sum())
        real = mask[row].nonzero().flatten()
        order = real[maps[row, real].argsort(descending=True, stable=True)]
        down, up = [], []
        for level in range(steps + 1):
            top = order[: math.ceil(level * length / steps)]
            deleted = ids[row].clone()
            deleted[top] = pad
            inserted = torch.where(mask[row].bool(), pad, ids[row])
            inserted[top] = ids[row, top]
            down.append(score(row, deleted))
            up.append(score(row, inserted))
        fractions = torch.linspace(0, 1, steps + 1)
        deletion.append(torch.trapezoid(torch.tensor(down), fractions).item())
        insertion.append(torch.trapezoid(torch.tensor(up), fractions).item())
    return torch.tensor(deletion), torch.tensor(insertion)


@pytest.mark.parametrize("steps", [1, 4, 20])
def test_a_classifier_s_curves_equal_their_definition(steps):
    torch.manual_seed(0)
    model = bert()
    batch = text_batch(4, 9)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    maps = torch.randn(ids.shape)
    maps[0, :3] = 1.0  # ties keep position order
    with torch.no_grad():
        predicted = model(input_ids=ids, attention_mask=mask).logits.argmax(1)

    def score(row, text):
        with torch.no_grad():
            logits = model(input_ids=text[None], attention_mask=mask[row : row + 1]).logits
        return logits.softmax(-1)[0, predicted[row]].item()

    deletion, insertion = token_deletion_insertion(model, ids, maps, attention_mask=mask, steps=steps, chunk_size=5)
    expected = by_hand(model, ids, mask, maps, steps, 0, score)
    torch.testing.assert_close(deletion, expected[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(insertion, expected[1], atol=1e-5, rtol=1e-4)
    again = token_deletion_insertion(model, ids, maps, attention_mask=mask, steps=steps, chunk_size=1000)
    torch.testing.assert_close(again[0], deletion)  # chunking changes nothing


def test_a_causal_language_model_s_next_token_and_a_continuation_equal_their_definition():
    torch.manual_seed(1)
    model = gpt2()
    batch = text_batch(3, 8)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    maps = torch.randn(ids.shape)
    last = mask.sum(1) - 1
    with torch.no_grad():
        predicted = model(ids, attention_mask=mask).logits[torch.arange(3), last].argmax(-1)

    def next_token(row, text):
        with torch.no_grad():
            logits = model(text[None], attention_mask=mask[row : row + 1]).logits
        return logits[0, last[row]].softmax(-1)[predicted[row]].item()

    got = token_deletion_insertion(model, ids, maps, attention_mask=mask, steps=4, baseline_token_id=2)
    expected = by_hand(model, ids, mask, maps, 4, 2, next_token)
    torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got[1], expected[1], atol=1e-5, rtol=1e-4)

    continuation = torch.tensor([5, 7])

    def probability(row, text):  # the prompt's real tokens, then the continuation: its joint probability
        length = int(last[row]) + 1
        full = torch.cat([text[:length], continuation])[None]
        with torch.no_grad():
            log_probs = model(full).logits[0].log_softmax(-1)
        return (log_probs[length - 1, 5] + log_probs[length, 7]).exp().item()

    got = token_deletion_insertion(
        model, ids, maps, Continuation(continuation), attention_mask=mask, steps=4, baseline_token_id=2
    )
    expected = by_hand(model, ids, mask, maps, 4, 2, probability)
    torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got[1], expected[1], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="scores='softmax'"):
        token_deletion_insertion(model, ids, maps, Continuation([5]), scores="sigmoid", baseline_token_id=2)


def test_a_faithful_map_beats_its_reverse_and_random_maps():
    """A model that reads one token: the map that ranks it first deletes it first (low deletion, high insertion)."""

    class KeywordModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(20, 4, padding_idx=0)
            with torch.no_grad():
                self.embed.weight.zero_()
                self.embed.weight[7] = 1.0  # only token 7 carries anything

        def forward(self, input_ids):
            evidence = self.embed(input_ids).sum(dim=(1, 2))
            return torch.stack([-evidence, evidence], dim=1)

    model = KeywordModel()
    ids = torch.randint(1, 7, (6, 10))
    ids[torch.arange(6), torch.arange(6)] = 7
    right = token_attribution(model, ids, target=1)
    deletion, insertion = token_deletion_insertion(model, ids, right, target=1, steps=10)
    wrong = token_deletion_insertion(model, ids, -right, target=1, steps=10)
    assert bool((deletion < wrong[0]).all()) and bool((insertion > wrong[1]).all())
    keyword = ids == 7
    assert bool(pointing_game(right, keyword).all()) and not bool(pointing_game(-right, keyword).any())
    torch.testing.assert_close(energy_in_mask(right, keyword), torch.ones(6))


def test_the_localisation_metrics_leave_the_padding_out():
    maps = torch.tensor([[-2.0, -1.0, -3.0, 0.0, 0.0], [0.5, 0.1, 0.0, 0.0, 0.0]])
    real = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()
    keyword = torch.tensor([[0, 1, 0, 0, 0], [1, 0, 0, 0, 0]]).bool()
    assert pointing_game(maps, keyword, within=real).tolist() == [True, True]  # padding's 0 beats -1 without within
    assert pointing_game(maps, keyword).tolist() == [False, True]
    flat = torch.zeros(1, 5)
    assert pointing_game(flat, keyword[:1], within=real[:1]).tolist() == [False]  # a constant map has no maximum
    torch.testing.assert_close(energy_in_mask(maps, keyword, within=real), torch.tensor([0.0, 0.5 / 0.6]))
    with pytest.raises(ValueError, match="within must be bool shaped like the maps"):
        pointing_game(maps, keyword, within=torch.ones(2, 3, dtype=torch.bool))


def test_bad_arguments_name_the_fix():
    model = llama()
    batch = text_batch(2, 6)
    ids = batch["input_ids"]
    with pytest.raises(ValueError, match=r"maps must hold one value per token, \(2, 6\)"):
        token_deletion_insertion(model, ids, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="steps must be a positive int"):
        token_deletion_insertion(model, ids, torch.zeros(2, 6), steps=0)
    with pytest.raises(ValueError, match="scores must be one of"):
        token_deletion_insertion(model, ids, torch.zeros(2, 6), scores="probability")
    with pytest.raises(ValueError, match="baseline_token_id="):
        token_deletion_insertion(gpt2(), ids, torch.zeros(2, 6))  # GPT-2 names no padding token
