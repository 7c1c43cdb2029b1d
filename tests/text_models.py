"""Small real text models from Hugging Face ``transformers`` configs (random init, no download), and text batches.

Shared by the token-attribution and text-callback tests. Every builder returns a model in eval mode whose
configuration is small enough that a forward pass of a few short texts takes milliseconds on one CPU thread.
``initializer_range`` is larger than the default, so random logits differ between samples and classes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import transformers
from lightning.pytorch import LightningModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

transformers.logging.set_verbosity_error()

VOCAB = 60
"""The vocabulary size of every model here; id 0 is the padding token where the model has one."""
CLASSES = 3


def bert(classes: int = CLASSES, dropout: float = 0.1) -> transformers.BertForSequenceClassification:
    """``BertForSequenceClassification``: 2 layers of width 32, pad id 0, absolute positions, token types."""
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=64,
        num_labels=classes,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        initializer_range=0.2,
        pad_token_id=0,
    )
    return transformers.BertForSequenceClassification(config).eval()


def distilbert(classes: int = CLASSES) -> transformers.DistilBertForSequenceClassification:
    """``DistilBertForSequenceClassification``: 2 layers of width 32, pad id 0, no token types."""
    config = transformers.DistilBertConfig(
        vocab_size=VOCAB,
        dim=32,
        n_layers=2,
        n_heads=2,
        hidden_dim=48,
        max_position_embeddings=64,
        num_labels=classes,
        initializer_range=0.2,
        pad_token_id=0,
    )
    return transformers.DistilBertForSequenceClassification(config).eval()


def gpt2() -> transformers.GPT2LMHeadModel:
    """``GPT2LMHeadModel``: 2 layers of width 32, no pad id in its config (like the real GPT-2)."""
    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=64,
        initializer_range=0.2,
        bos_token_id=1,
        eos_token_id=2,
    )
    return transformers.GPT2LMHeadModel(config).eval()


def llama() -> transformers.LlamaForCausalLM:
    """``LlamaForCausalLM``: 2 layers of width 32, rotary positions, RMSNorm, SwiGLU, grouped-query attention."""
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        initializer_range=0.2,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return transformers.LlamaForCausalLM(config).eval()


def text_batch(n: int = 4, length: int = 10, seed: int = 0, pad_right: bool = True) -> dict[str, Tensor]:
    """A tokenised batch as a Hugging Face tokenizer returns it: ``input_ids`` (ids 3 to VOCAB - 1), an
    ``attention_mask`` with padding (id 0) on the right (or left) of all but the first text, and ``token_type_ids``
    of zeros. The texts' lengths run from ``length`` down to about half of it."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (n, length), generator=generator)
    lengths = [length - (i * length) // (2 * max(1, n)) for i in range(n)]
    mask = torch.zeros(n, length, dtype=torch.long)
    for row, size in enumerate(lengths):
        if pad_right:
            mask[row, :size] = 1
        else:
            mask[row, length - size :] = 1
    ids = ids * mask  # padding is id 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


class TextDataset(Dataset):
    """Dict samples (``input_ids``, ``attention_mask``, ``labels``), as a tokenised Hugging Face dataset yields them.

    The label is decided by a planted keyword: class ``c`` texts hold token ``KEYWORDS[c]`` once, at a random
    position, among filler tokens that are never keywords.
    """

    KEYWORDS = (3, 4, 5)

    def __init__(self, n: int = 48, length: int = 12, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % len(self.KEYWORDS)
        self.ids = torch.randint(10, VOCAB, (n, length), generator=generator)
        self.mask = torch.ones(n, length, dtype=torch.long)
        lengths = torch.randint(length // 2, length + 1, (n,), generator=generator)
        self.keyword_position = (torch.rand(n, generator=generator) * lengths).long()
        for row in range(n):
            self.mask[row, lengths[row] :] = 0
            self.ids[row, lengths[row] :] = 0
            self.ids[row, self.keyword_position[row]] = self.KEYWORDS[self.labels[row]]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"input_ids": self.ids[index], "attention_mask": self.mask[index], "labels": self.labels[index]}


class LitTextClassifier(LightningModule):
    """A LightningModule around a small BERT, trained on dict batches as most text fine-tuning code is written:
    ``forward(input_ids, attention_mask=None)`` returns the ``ModelOutput``; ``training_step`` calls
    ``self.model(**batch)`` and uses its loss."""

    def __init__(self, lr: float = 3e-3, dropout: float = 0.1) -> None:
        super().__init__()
        self.model = bert(dropout=dropout).train()  # the builders return eval mode; training uses dropout
        self.lr = lr

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Any:
        return self.model(input_ids=input_ids, attention_mask=attention_mask)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        assert self.training, "a callback left the module in eval mode during training"
        return self.model(**batch).loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        logits = self(batch["input_ids"], batch["attention_mask"]).logits
        self.log("val_loss", F.cross_entropy(logits, batch["labels"]))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr)


def text_loaders(n_train: int = 48, n_val: int = 16, batch_size: int = 8) -> tuple[DataLoader, DataLoader]:
    """Training (shuffled) and validation loaders of :class:`TextDataset`."""
    train = DataLoader(TextDataset(n_train, seed=0), batch_size=batch_size, shuffle=True)
    val = DataLoader(TextDataset(n_val, seed=1), batch_size=batch_size)
    return train, val


class PromptDataset(Dataset):
    """Dict samples of right-padded prompts for a causal LM: ``input_ids``, ``attention_mask`` and ``labels`` (the
    ids, padding as -100), as a language-modelling collator makes them."""

    def __init__(self, n: int = 32, length: int = 10, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(3, VOCAB, (n, length), generator=generator)
        lengths = torch.randint(length // 2, length + 1, (n,), generator=generator)
        self.mask = (torch.arange(length)[None] < lengths[:, None]).long()
        self.ids = self.ids * self.mask

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        labels = self.ids[index].masked_fill(self.mask[index] == 0, -100)
        return {"input_ids": self.ids[index], "attention_mask": self.mask[index], "labels": labels}


class LitCausalLM(LightningModule):
    """A LightningModule around a small GPT-2 (``model``) trained on next-token prediction from dict batches."""

    def __init__(self) -> None:
        super().__init__()
        self.model = gpt2().train()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Any:
        return self.model(input_ids=input_ids, attention_mask=attention_mask)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self.model(**batch).loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=3e-3)


def prompt_loader(n: int = 32, batch_size: int = 8) -> DataLoader:
    """A shuffled loader of :class:`PromptDataset`."""
    return DataLoader(PromptDataset(n), batch_size=batch_size, shuffle=True)
