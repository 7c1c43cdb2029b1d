"""Suite-wide settings: the models here are tiny, so one intra-op thread is fastest and steadiest."""

import torch

torch.set_num_threads(1)
