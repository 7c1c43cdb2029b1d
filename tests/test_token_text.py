"""What TokenExplainCallback reads and writes besides the maps: text batches, tokens as words (with real tokenizers
built from small vocabularies, no download), the markdown, class names."""

from __future__ import annotations

import pytest
import torch
import transformers
from tensorboard.plugin_util import markdown_to_safe_html
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import BatchEncoding

from lightning_explain.callbacks._token_text import (
    joined_text,
    label_names,
    token_strings,
    tokens_markdown,
    unpack_token_batch,
)


def wordpiece():
    """A BERT-style WordPiece tokenizer: ``##`` marks the pieces that continue a word."""
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "sh", "##ad", "##ow", "fell", "."])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )


def byte_level():
    """A GPT-2-style byte-level BPE: ``Ġ`` starts every word after the first."""
    vocab = {t: i for i, t in enumerate(["<|endoftext|>", "the", "Ġsh", "ad", "ow", "Ġfell", "."])}
    tokenizer = Tokenizer(models.BPE(vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>")


@pytest.mark.parametrize(
    ("make", "ids", "words", "joined"),
    [  # WordPiece marks only its ## pieces ("." stands alone); byte-level BPE marks word starts, so "." joins "fell"
        (wordpiece, [2, 4, 5, 6, 7, 8, 9, 3], ["[CLS]", "the", "sh", "ad", "ow", "fell", ".", "[SEP]"], {3, 4}),
        (byte_level, [1, 2, 3, 4, 5, 6, 0], ["the", "sh", "ad", "ow", "fell", ".", "<|endoftext|>"], {2, 3, 5}),
    ],
)
def test_word_pieces_are_found_and_their_markers_dropped(make, ids, words, joined):
    strings, joins = token_strings(make(), torch.tensor([ids]))
    assert strings == [words]
    assert joins == [[k in joined for k in range(len(words))]]  # special tokens never join, nor does the first
    assert "the shadow fell" in joined_text(strings[0], joins[0])


def test_a_decode_only_tokenizer_and_no_tokenizer():
    class Decoder:
        pieces = {1: " the", 2: " sh", 3: "ad", 4: "ow"}

        def decode(self, ids):
            return "".join(self.pieces[i] for i in ids)

    strings, joins = token_strings(Decoder(), torch.tensor([[1, 2, 3, 4]]))
    assert strings == [["the", "sh", "ad", "ow"]] and joins == [[False, False, True, True]]
    strings, joins = token_strings(None, torch.tensor([[7, 8]]))
    assert strings == [["7", "8"]] and joins == [[False, False]]


def test_text_batches_unpack_as_tokenizers_and_collators_make_them():
    ids, mask, types = torch.ones(2, 4, dtype=torch.long), torch.ones(2, 4), torch.zeros(2, 4, dtype=torch.long)
    labels = torch.tensor([0, 1])
    encoding = BatchEncoding({"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "label": labels})
    got_ids, got_labels, kwargs = unpack_token_batch(encoding)
    assert got_ids is ids and got_labels is labels and set(kwargs) == {"attention_mask", "token_type_ids"}
    assert unpack_token_batch((ids, mask, labels)) == (ids, labels, {"attention_mask": mask})
    assert unpack_token_batch((ids, labels)) == (ids, labels, {})
    assert unpack_token_batch(ids) == (ids, None, {})
    with pytest.raises(ValueError, match=r"under 'input_ids', and the batch has keys \['text'\]"):
        unpack_token_batch({"text": ["a"]})
    with pytest.raises(ValueError, match="Cannot read token ids from a batch of type str"):
        unpack_token_batch("a text")


def test_the_markdown_marks_the_extremes_joins_pieces_escapes_and_cuts():
    """As TensorBoard's Text tab renders it (its own markdown and sanitiser)."""
    tokens = [["[CLS]", "sh", "ad", "ow", "*bold*", "<b>x</b>", "[PAD]"]]
    values = torch.tensor([[0.0, 0.9, -0.8, 0.0, -0.5, 0.01, 0.0]])
    real = torch.tensor([[True] * 6 + [False]])
    joins = [[False, False, True, True, False, False, False]]
    text = tokens_markdown("saliency", 7, tokens, values, real, ["true a  pred a 90%"], 64, torch.tensor([True]), joins)
    shown = markdown_to_safe_html(text).split("\n")
    assert shown[0].startswith("<p><strong>saliency</strong> at step 7")
    assert shown[1] == "<p>text 0 · true a  pred a 90% ✓<br>"
    # one tenth of 6 real tokens each way: "sh" (+0.9) and "ad" (-0.8), inside one word; the others literal text
    assert shown[2] == "[CLS] <strong>sh</strong><em>ad</em>ow (+0.9, -0.8) *bold* &lt;b&gt;x&lt;/b&gt;</p>"
    cut = tokens_markdown("saliency", 7, tokens, values, real, ["t"], 2, None, joins)
    assert cut.split("\n")[3].endswith("… (+4 tokens)") and "✓" not in cut


def test_class_names_come_from_a_real_id2label_only():
    named = transformers.BertConfig(id2label={0: "neg", 1: "pos"})
    placeholder = transformers.BertConfig(num_labels=2)

    class Holder(torch.nn.Module):
        def __init__(self, config):
            super().__init__()
            self.inner = torch.nn.Linear(1, 1)
            self.inner.config = config

    assert label_names(Holder(named)) == {0: "neg", 1: "pos"}
    assert label_names(Holder(placeholder)) is None
