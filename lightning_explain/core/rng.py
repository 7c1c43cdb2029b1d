"""The global random number streams, saved and restored around work that must not consume them."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def preserved_torch_rng() -> Iterator[None]:
    """Restore torch's CPU stream and every initialised CUDA device's stream on exit (a few microseconds).

    What a forward pass draws from: a model that samples in eval mode (Monte-Carlo dropout, noise
    layers, a VAE's sampling) or a lazy module materialised inside the block would otherwise move
    these streams, and every later training step would differ from a run without the callbacks.
    CUDA streams are saved only once CUDA is initialised: before that nothing can have drawn
    from them, and saving them would initialise CUDA.
    """
    torch_state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        torch.random.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


@contextlib.contextmanager
def preserved_global_rng() -> Iterator[None]:
    """Restore every global stream on exit: torch's (:func:`preserved_torch_rng`), NumPy's and Python's.

    NumPy's state is the costly one (tens of microseconds), so this is for work done once per
    event or per run (a callback's event, its start, choosing a probe), not per forward pass.
    """
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    try:
        with preserved_torch_rng():
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
