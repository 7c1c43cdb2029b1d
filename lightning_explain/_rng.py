"""The global random number streams, saved and restored around work that must not consume them."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def preserved_global_rng() -> Iterator[None]:
    """Restore the torch CPU stream, every initialised CUDA device's stream, NumPy's and Python's on exit.

    A model that draws random numbers in eval mode (Monte-Carlo dropout, noise layers, a VAE's
    sampling), a dataset index that draws, or a lazy module materialised inside the block would
    otherwise move these streams, and every later training step would differ from a run
    without the callbacks. CUDA streams are saved only once CUDA is initialised: before that
    nothing can have drawn from them, and saving them would initialise CUDA.
    """
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.random.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
