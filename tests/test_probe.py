"""Tests for lightning_explain.callbacks.probe: choosing a fixed probe batch without disturbing training."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from lightning_explain.callbacks.probe import (
    Probe,
    check_probe_argument,
    default_unpack_batch,
    first_dataloader,
    preserved_global_rng,
    probe_from_dataloader,
    select_probe,
)

# --- helpers ----------------------------------------------------------------------------------------------------------


def _rng_states():
    return random.getstate(), np.random.get_state(), torch.random.get_rng_state()


def _assert_rng_states_equal(before, after):
    python_before, numpy_before, torch_before = before
    python_after, numpy_after, torch_after = after
    assert python_before == python_after
    assert numpy_before[0] == numpy_after[0]
    np.testing.assert_array_equal(numpy_before[1], numpy_after[1])
    assert numpy_before[2:] == numpy_after[2:]
    assert torch.equal(torch_before, torch_after)


def _seed_all(seed=123):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class RandomTransformDataset(Dataset):
    """Map-style data whose __getitem__ draws from every global generator, like a random augmentation."""

    def __init__(self, n=10):
        self.x = torch.arange(n * 2, dtype=torch.float32).reshape(n, 2)
        self.y = torch.arange(n) % 3

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        torch.rand(1)
        np.random.rand()
        random.random()
        return self.x[index], self.y[index]


class Stream(IterableDataset):
    """Yields single samples (x_i, y_i); also draws from the global generators as it starts."""

    def __init__(self, n=10, with_targets=True):
        self.n = n
        self.with_targets = with_targets

    def __iter__(self):
        torch.rand(3)
        np.random.rand(3)
        random.random()
        for i in range(self.n):
            x = torch.full((2,), float(i))
            yield (x, torch.tensor(i % 4)) if self.with_targets else x


class DictDataset(Dataset):
    def __init__(self, n=6):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return {"pixels": torch.full((3,), float(index)), "cls": torch.tensor(index % 2)}


# --- preserved_global_rng ---------------------------------------------------------------------------------------------


def test_preserved_global_rng_restores_all_three_generators():
    _seed_all()
    before = _rng_states()
    with preserved_global_rng():
        torch.rand(5)
        np.random.rand(5)
        random.random()
        torch.randint(0, 10, (3,))
    _assert_rng_states_equal(before, _rng_states())
    # The next draws are the same as if nothing had happened inside.
    _seed_all()
    expected = (torch.rand(2), np.random.rand(2), random.random())
    _seed_all()
    with preserved_global_rng():
        torch.rand(100)
        np.random.rand(100)
        random.random()
    actual = (torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(expected[0], actual[0])
    np.testing.assert_array_equal(expected[1], actual[1])
    assert expected[2] == actual[2]


def test_preserved_global_rng_restores_after_exception():
    _seed_all()
    before = _rng_states()
    with pytest.raises(RuntimeError, match="boom"), preserved_global_rng():
        torch.rand(5)
        np.random.rand(5)
        random.random()
        raise RuntimeError("boom")
    _assert_rng_states_equal(before, _rng_states())


def test_preserved_global_rng_restores_reseeding():
    _seed_all(1)
    before = _rng_states()
    with preserved_global_rng():
        _seed_all(999)
    _assert_rng_states_equal(before, _rng_states())


# --- default_unpack_batch ---------------------------------------------------------------------------------------------


def test_unpack_tensor():
    x = torch.randn(4, 3)
    inputs, targets = default_unpack_batch(x)
    assert inputs is x and targets is None


@pytest.mark.parametrize("container", [tuple, list])
def test_unpack_pair_with_class_targets(container):
    x, y = torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    inputs, targets = default_unpack_batch(container([x, y]))
    assert inputs is x and targets is y


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8])
def test_unpack_pair_integer_dtypes(dtype):
    x, y = torch.randn(3, 2), torch.tensor([0, 1, 2], dtype=dtype)
    assert default_unpack_batch((x, y))[1] is y


@pytest.mark.parametrize(
    "y",
    [
        torch.tensor([0.5, 1.5, 2.0]),  # regression targets
        torch.tensor([True, False, True]),  # boolean
        torch.tensor([[0], [1], [2]]),  # not (N,)
        torch.tensor([0, 1]),  # wrong length
        torch.zeros(3, 2, 2, dtype=torch.long),  # segmentation mask
        "labels",  # not a tensor
        None,
    ],
)
def test_unpack_pair_ignores_non_class_targets(y):
    x = torch.randn(3, 2)
    inputs, targets = default_unpack_batch((x, y))
    assert inputs is x and targets is None


def test_unpack_single_item_sequence():
    x = torch.randn(3, 2)
    assert default_unpack_batch([x]) == (x, None)


def test_unpack_extra_items_ignored():
    x, y = torch.randn(3, 2), torch.tensor([1, 0, 1])
    inputs, targets = default_unpack_batch((x, y, {"meta": 1}, torch.ones(3)))
    assert inputs is x and targets is y


@pytest.mark.parametrize(
    ("input_key", "target_key"),
    [("image", "label"), ("x", "y"), ("inputs", "targets"), ("images", "labels"), ("pixel_values", "target")],
)
def test_unpack_dict_keys(input_key, target_key):
    x, y = torch.randn(3, 2), torch.tensor([1, 0, 2])
    inputs, targets = default_unpack_batch({"id": [7, 8, 9], input_key: x, target_key: y})
    assert inputs is x and targets is y


def test_unpack_dict_without_targets_or_with_float_targets():
    x = torch.randn(3, 2)
    assert default_unpack_batch({"image": x}) == (x, None)
    inputs, targets = default_unpack_batch({"image": x, "label": torch.rand(3)})
    assert inputs is x and targets is None


def test_a_dict_with_an_unknown_label_key_gets_a_one_time_note(tmp_path):
    import warnings

    from lightning_explain.callbacks import probe as probe_module

    probe_module._noted_key_sets.clear()
    x, cls = torch.randn(3, 2), torch.tensor([0, 1, 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert default_unpack_batch({"image": x, "cls": cls}) == (x, None)
        assert default_unpack_batch({"image": x}) == (x, None)  # nothing else in the batch: nothing to say
    notes = [str(w.message) for w in caught]
    assert len(notes) == 1
    assert "'image'" in notes[0] and "['cls']" in notes[0] and "no probe accuracy" in notes[0]
    assert "unpack_batch=lambda batch: (batch['image'], batch['cls'])" in notes[0]


def test_unpack_dict_unknown_keys_raises_with_keys_and_hint():
    with pytest.raises(ValueError) as info:
        default_unpack_batch({"pixels": torch.randn(2, 3), "cls": torch.tensor([0, 1])})
    message = str(info.value)
    assert "unpack_batch" in message
    assert "pixels" in message and "cls" in message


def test_unpack_dict_input_key_not_a_tensor_raises():
    with pytest.raises(ValueError, match="unpack_batch"):
        default_unpack_batch({"image": [1, 2, 3], "label": torch.tensor([0, 1, 2])})


@pytest.mark.parametrize("batch", ["a string batch", 42, 3.5, None, [], (), [[1, 2], [3, 4]], b"bytes"])
def test_unpack_other_types_raise_with_probe_hint(batch):
    with pytest.raises(ValueError) as info:
        default_unpack_batch(batch)
    message = str(info.value)
    assert "probe=" in message
    assert "unpack_batch" in message


# --- check_probe_argument ---------------------------------------------------------------------------------------------


def test_check_probe_none():
    assert check_probe_argument(None) is None


def test_check_probe_tensor_is_a_detached_copy():
    x = torch.randn(4, 3, requires_grad=True)
    probe = check_probe_argument(x)
    assert isinstance(probe, Probe)
    assert probe.targets is None
    assert len(probe) == 4
    assert torch.equal(probe.inputs, x.detach())
    assert not probe.inputs.requires_grad
    expected = x.detach().clone()
    with torch.no_grad():
        x.add_(100)
    assert torch.equal(probe.inputs, expected)


@pytest.mark.parametrize("container", [tuple, list])
def test_check_probe_pair_is_copied(container):
    x, y = torch.randn(3, 2), torch.tensor([2, 0, 1])
    probe = check_probe_argument(container([x, y]))
    assert torch.equal(probe.inputs, x) and torch.equal(probe.targets, y)
    x_copy, y_copy = x.clone(), y.clone()
    x.zero_()
    y.fill_(5)
    assert torch.equal(probe.inputs, x_copy) and torch.equal(probe.targets, y_copy)


def test_check_probe_pair_with_none_targets():
    x = torch.randn(3, 2)
    probe = check_probe_argument((x, None))
    assert probe.targets is None and torch.equal(probe.inputs, x)


@pytest.mark.parametrize(
    "targets",
    [
        torch.tensor([0.0, 1.0, 2.0]),
        torch.tensor([0, 1]),
        torch.tensor([[0], [1], [2]]),
        torch.tensor([1, 0, 1]).bool(),
    ],
)
def test_check_probe_bad_targets_raise(targets):
    with pytest.raises(ValueError, match="targets"):
        check_probe_argument((torch.randn(3, 2), targets))


def test_check_probe_non_tensor_targets_raise():
    with pytest.raises(ValueError, match="targets"):
        check_probe_argument((torch.randn(3, 2), [0, 1, 2]))


@pytest.mark.parametrize(
    "probe",
    [
        np.zeros((3, 2)),
        [[0.0, 1.0]],
        (torch.randn(3, 2), torch.tensor([0, 1, 2]), "extra"),
        ("inputs", torch.tensor([0])),
        {"x": torch.randn(3, 2)},
        "probe",
        5,
    ],
)
def test_check_probe_wrong_type_raises(probe):
    with pytest.raises(ValueError, match="probe"):
        check_probe_argument(probe)


def test_probe_to_device_and_len():
    probe = Probe(torch.randn(5, 2), torch.arange(5))
    moved = probe.to("cpu")
    assert len(moved) == 5
    assert torch.equal(moved.inputs, probe.inputs) and torch.equal(moved.targets, probe.targets)
    assert Probe(torch.randn(2, 1)).to("cpu").targets is None


# --- probe_from_dataloader --------------------------------------------------------------------------------------------


def test_probe_from_shuffled_map_style_loader_takes_first_samples_and_keeps_rng():
    dataset = RandomTransformDataset(10)
    loader = DataLoader(dataset, batch_size=4, shuffle=True)
    _seed_all()
    before = _rng_states()
    probe = probe_from_dataloader(loader, 5)
    _assert_rng_states_equal(before, _rng_states())
    assert torch.equal(probe.inputs, dataset.x[:5])
    assert torch.equal(probe.targets, dataset.y[:5])
    # Taking it again gives the same probe.
    again = probe_from_dataloader(loader, 5)
    assert torch.equal(again.inputs, probe.inputs)


def test_probe_from_loader_does_not_change_the_training_batches():
    dataset = RandomTransformDataset(8)
    loader = DataLoader(dataset, batch_size=4, shuffle=True)
    _seed_all()
    expected = [x.clone() for x, _ in loader]
    _seed_all()
    probe_from_dataloader(loader, 3)
    actual = [x.clone() for x, _ in loader]
    for a, b in zip(expected, actual, strict=True):
        assert torch.equal(a, b)


def test_probe_size_larger_than_dataset_gives_whole_dataset():
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    loader = DataLoader(TensorDataset(x, y), batch_size=2, shuffle=True)
    probe = probe_from_dataloader(loader, 100)
    assert len(probe) == 4
    assert torch.equal(probe.inputs, x) and torch.equal(probe.targets, y)


def test_probe_from_loader_is_a_copy():
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    probe = probe_from_dataloader(DataLoader(TensorDataset(x, y), batch_size=2), 3)
    expected = x[:3].clone()
    x.zero_()
    assert torch.equal(probe.inputs, expected)


def test_probe_from_loader_float_targets_dropped():
    x, y = torch.randn(4, 3), torch.rand(4)
    probe = probe_from_dataloader(DataLoader(TensorDataset(x, y), batch_size=2), 3)
    assert probe.targets is None and torch.equal(probe.inputs, x[:3])


@pytest.mark.parametrize("size", [1, 3, 5, 7, 10, 25])
def test_probe_from_iterable_loader_concatenates_batches_and_keeps_rng(size):
    loader = DataLoader(Stream(10), batch_size=3)
    _seed_all()
    before = _rng_states()
    probe = probe_from_dataloader(loader, size)
    _assert_rng_states_equal(before, _rng_states())
    count = min(size, 10)
    assert len(probe) == count
    expected_x = torch.arange(count, dtype=torch.float32)[:, None].expand(count, 2)
    assert torch.equal(probe.inputs, expected_x)
    assert torch.equal(probe.targets, torch.arange(count) % 4)


def test_probe_from_iterable_loader_stops_early():
    consumed = []

    class Counting(IterableDataset):
        def __iter__(self):
            for i in range(100):
                consumed.append(i)
                yield torch.full((2,), float(i))

    probe = probe_from_dataloader(DataLoader(Counting(), batch_size=3), 4)
    assert probe.targets is None
    assert torch.equal(probe.inputs[:, 0], torch.arange(4.0))
    assert len(consumed) <= 9  # two batches of three are enough; it does not read the whole stream


def test_probe_from_iterable_loader_without_targets():
    probe = probe_from_dataloader(DataLoader(Stream(5, with_targets=False), batch_size=2), 4)
    assert probe.targets is None and len(probe) == 4


def test_probe_from_unbatched_map_style_loader_iterates():
    # batch_size=None: no automatic batching, the loader yields single samples (x of shape (2,), y scalar).
    def unpack(sample):
        x, y = sample
        return x[None], y[None]

    dataset = RandomTransformDataset(5)
    loader = DataLoader(dataset, batch_size=None, shuffle=False)
    _seed_all()
    before = _rng_states()
    probe = probe_from_dataloader(loader, 3, unpack_batch=unpack)
    _assert_rng_states_equal(before, _rng_states())
    assert torch.equal(probe.inputs, dataset.x[:3]) and torch.equal(probe.targets, dataset.y[:3])


def test_probe_from_plain_iterable_of_batches():
    batches = [(torch.full((2, 1), float(i)), torch.tensor([i, i])) for i in range(3)]
    probe = probe_from_dataloader(batches, 3)
    assert torch.equal(probe.inputs[:, 0], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.equal(probe.targets, torch.tensor([0, 0, 1]))


def test_probe_from_loader_custom_unpack_for_dict_batches():
    loader = DataLoader(DictDataset(6), batch_size=4, shuffle=True)
    with pytest.raises(ValueError, match="unpack_batch"):
        probe_from_dataloader(loader, 3)  # the default does not know these keys
    probe = probe_from_dataloader(loader, 3, unpack_batch=lambda batch: (batch["pixels"], batch["cls"]))
    assert torch.equal(probe.inputs, torch.arange(3.0)[:, None].expand(3, 3))
    assert torch.equal(probe.targets, torch.tensor([0, 1, 0]))


@pytest.mark.parametrize(
    "unpack",
    [
        lambda batch: batch[0],  # a tensor, not a pair
        lambda batch: [batch[0], batch[1]],  # a list, not a tuple
        lambda batch: (batch[0], batch[1], None),  # three items
        lambda batch: (batch[0].tolist(), batch[1]),  # inputs not a tensor
        lambda batch: None,
    ],
)
@pytest.mark.parametrize("iterable", [False, True])
def test_probe_from_loader_bad_unpack_raises(unpack, iterable):
    dataset = Stream(6) if iterable else TensorDataset(torch.randn(6, 2), torch.arange(6))
    with pytest.raises(ValueError, match="unpack_batch"):
        probe_from_dataloader(DataLoader(dataset, batch_size=2), 3, unpack_batch=unpack)


def test_probe_from_empty_map_style_dataset_raises():
    loader = DataLoader(TensorDataset(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)), batch_size=2)
    with pytest.raises(ValueError, match="probe="):
        probe_from_dataloader(loader, 4)


def test_probe_from_empty_iterable_raises():
    with pytest.raises(ValueError, match="probe="):
        probe_from_dataloader(DataLoader(Stream(0), batch_size=2), 4)


def test_probe_from_loader_rng_restored_when_unpack_fails():
    _seed_all()
    before = _rng_states()
    with pytest.raises(ValueError):
        probe_from_dataloader(DataLoader(RandomTransformDataset(4), batch_size=2, shuffle=True), 2, lambda b: None)
    _assert_rng_states_equal(before, _rng_states())


# --- first_dataloader -------------------------------------------------------------------------------------------------


def test_first_dataloader():
    a = DataLoader(TensorDataset(torch.zeros(2, 1)))
    b = DataLoader(TensorDataset(torch.ones(2, 1)))
    assert first_dataloader(a) is a
    assert first_dataloader([a, b]) is a
    assert first_dataloader((b, a)) is b
    assert first_dataloader({"first": b, "second": a}) is b
    assert first_dataloader(None) is None
    assert first_dataloader([]) is None
    assert first_dataloader({}) is None


# --- select_probe -----------------------------------------------------------------------------------------------------


def _loader(offset: float) -> DataLoader:
    x = torch.arange(6, dtype=torch.float32)[:, None] + offset
    return DataLoader(TensorDataset(x, torch.arange(6) % 2), batch_size=2, shuffle=True)


def test_select_probe_prefers_validation():
    trainer = SimpleNamespace(val_dataloaders=_loader(100), train_dataloader=_loader(0))
    probe = select_probe(trainer, 3)
    assert torch.equal(probe.inputs[:, 0], torch.tensor([100.0, 101.0, 102.0]))
    assert torch.equal(probe.targets, torch.tensor([0, 1, 0]))


@pytest.mark.parametrize("val", [None, [], {}])
def test_select_probe_falls_back_to_train(val):
    trainer = SimpleNamespace(val_dataloaders=val, train_dataloader=_loader(0))
    probe = select_probe(trainer, 2)
    assert torch.equal(probe.inputs[:, 0], torch.tensor([0.0, 1.0]))


def test_select_probe_uses_first_of_several_loaders():
    trainer = SimpleNamespace(val_dataloaders=[_loader(50), _loader(100)], train_dataloader={"a": _loader(0)})
    assert select_probe(trainer, 1).inputs.item() == 50.0
    assert select_probe(trainer, 1, source="train").inputs.item() == 0.0


def test_select_probe_source_train_forces_train():
    trainer = SimpleNamespace(val_dataloaders=_loader(100), train_dataloader=_loader(0))
    probe = select_probe(trainer, 2, source="train")
    assert torch.equal(probe.inputs[:, 0], torch.tensor([0.0, 1.0]))


def test_select_probe_source_val():
    trainer = SimpleNamespace(val_dataloaders=_loader(100), train_dataloader=_loader(0))
    assert select_probe(trainer, 1, source="val").inputs.item() == 100.0
    no_val = SimpleNamespace(val_dataloaders=None, train_dataloader=_loader(0))
    with pytest.raises(ValueError, match="probe="):
        select_probe(no_val, 1, source="val")


def test_select_probe_passes_unpack_batch():
    trainer = SimpleNamespace(val_dataloaders=DataLoader(DictDataset(4), batch_size=2), train_dataloader=None)
    probe = select_probe(trainer, 2, unpack_batch=lambda batch: (batch["pixels"], batch["cls"]))
    assert torch.equal(probe.targets, torch.tensor([0, 1]))


def test_select_probe_keeps_rng():
    trainer = SimpleNamespace(
        val_dataloaders=None, train_dataloader=DataLoader(RandomTransformDataset(6), shuffle=True)
    )
    _seed_all()
    before = _rng_states()
    select_probe(trainer, 3)
    _assert_rng_states_equal(before, _rng_states())


@pytest.mark.parametrize("source", ["auto", "train", "val"])
def test_select_probe_without_any_loader_raises(source):
    trainer = SimpleNamespace(val_dataloaders=None, train_dataloader=None)
    with pytest.raises(ValueError) as info:
        select_probe(trainer, 4, source=source)
    assert "probe=" in str(info.value)
