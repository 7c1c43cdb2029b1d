"""Which words does a text classifier read? A tiny BERT learns texts whose class is decided by one planted keyword.

No labelled real text dataset ships inside a Python package that installs offline here, so the data is synthetic,
with a known ground truth: every text is 8 to 30 ordinary English filler words (a fixed list, written below) with
exactly one keyword planted at a random position, and the keyword alone decides the class (4 classes, 2 keywords
each; the filler words never do). A BPE tokenizer is trained locally on the training texts with the
``tokenizers`` package and wrapped as a ``transformers.PreTrainedTokenizerFast``; a
``transformers.BertForSequenceClassification`` built from a small ``BertConfig`` (random init, 2 layers of width
128, no download) is fine-tuned on dict batches that the tokenizer pads, as Hugging Face data collators make them.

``TokenExplainCallback`` explains the first ``--probe-size`` (32) validation texts at step 0, every
``--every-n-steps`` steps and at each epoch's end with input x gradient, saliency and integrated gradients, and logs
the texts' tokens shaded by attribution (Images), the same as markdown (Text) and, with ``quality=``, the deletion
and insertion AUCs and the token-level pointing game against the keyword masks (Scalars), beside random maps. At the
end the script reads the scalars back from TensorBoard and prints the final validation accuracy and, per method and
for the random maps, the pointing game (the share of probe texts whose highest-attributed token is the keyword) at
the first event (step 0, the untrained model) and the last, and the deletion and insertion AUCs at the last event;
then, for the two signed methods on the trained model, in how many probe texts the keyword holds the largest value
and the largest |value|.

What to expect (the defaults, seeds 0-9, about 40 s each on 2 CPU cores): validation accuracy 1.000; at the last
event saliency points at the keyword in 31-32 of the 32 texts and integrated gradients in 27-32 (at step 0: 0 and
0-8; random maps 0-2). Input x gradient does poorly: 4-21 of 32, and its deletion and insertion AUCs are worse than
the random maps' in 7 of the 10 seeds, although the keyword holds its largest |value| in 24-32 texts: its value on
the keyword, the embedding times its gradient, is often negative, and the pointing game and deletion and insertion
rank tokens by value, not by magnitude. The callback's 13 events take most of the run: with quality on, an event
costs about 65 training steps, and the fit takes about 4 times as long as without the callback
(``python benchmarks/bench_text_event.py --threads 2``).

    pip install -e ".[text]"
    python examples/text.py            # then: tensorboard --logdir logs/text --samples_per_plugin images=1000
    python examples/text.py --help     # options
"""

from __future__ import annotations

import argparse
import random
import warnings
from typing import Any

import torch
import transformers
from lightning.pytorch import LightningModule, Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from torch import Tensor
from torch.utils.data import DataLoader

from lightning_explain import TokenExplainCallback
from lightning_explain.attribution import token_attribution
from lightning_explain.attribution.faithfulness import pointing_game

KEYWORDS = {
    "sport": ("football", "tennis"),
    "weather": ("rain", "snow"),
    "food": ("bread", "cheese"),
    "music": ("guitar", "violin"),
}
"""The classes, in label order, and the keywords that decide each; a text holds exactly one keyword."""

CLASSES = tuple(KEYWORDS)

FILLER = tuple(
    dict.fromkeys(
        """
    the a an and or but so then of to in on at by for with from about over under after before into through
    between during without around near far this that these those it its we they he she you i my our your their
    his her them us me is was are were be been being have has had do does did will would can could should may
    might must not no yes very quite just only also still even again already always never often sometimes soon
    later today yesterday tomorrow morning evening night week month year day time moment hour minute people
    person man woman child friend family neighbour teacher student doctor driver worker group member house home
    room door window wall floor table chair bed kitchen garden street road city town village country place office
    shop market station bridge river hill field forest tree flower grass stone paper book letter page story word
    name number line question answer idea plan reason problem way part side end point case fact thing object box
    bag key phone car bus bicycle ship boat plane ticket map clock picture colour shadow voice water ground
    go went come came take took make made give gave find found think thought know knew see saw look looked want
    need like liked feel felt leave left put keep kept let begin began seem help show heard turn start move live
    believe bring happen write sit stand lose pay meet include continue set learn change lead understand follow
    stop create speak read allow add spend grow open close offer remember consider appear buy wait send expect
    build stay fall cut reach remain suggest raise pass sell require report decide pull carry explain hope
    develop drive return visit ask call try use work tell become walk talk sleep clean fix paint count
    good new first last long great little own other old right big high different small large next early young
    important few public bad same able late hard major better best real sure clear easy strong free whole simple
    ready quiet busy happy tired careful honest polite calm bright dark heavy empty full narrow wide short tall
    slow quick red blue green yellow brown grey white black purple pink round square soft loud gentle strange
    usual modern ancient local famous private general special common certain possible final main
    """.split()
    )
)
"""Ordinary English words the texts are made of; none of them is a keyword or tells the class."""

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # [PAD] = 0


class TextData:
    """Texts, their labels and, per text, the word position of its keyword; a map-style dataset of
    ``{"text", "label"}`` samples."""

    def __init__(self, texts: list[str], labels: list[int], keyword_positions: list[int]) -> None:
        self.texts = texts
        self.labels = labels
        self.keyword_positions = keyword_positions

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"text": self.texts[index], "label": self.labels[index]}


def make_texts(n: int, seed: int, min_words: int = 8, max_words: int = 30) -> TextData:
    """``n`` texts of ``min_words`` to ``max_words`` filler words, one of them replaced by a keyword of the class.

    Classes are balanced (``i % 4``, then shuffled); deterministic from ``seed``.
    """
    rng = random.Random(seed)
    labels = [i % len(CLASSES) for i in range(n)]
    rng.shuffle(labels)
    texts, positions = [], []
    for label in labels:
        words = rng.choices(FILLER, k=rng.randint(min_words, max_words))
        position = rng.randrange(len(words))
        words[position] = rng.choice(KEYWORDS[CLASSES[label]])
        texts.append(" ".join(words))
        positions.append(position)
    return TextData(texts, labels, positions)


def train_tokenizer(texts: list[str], vocab_size: int = 800):
    """A BPE tokenizer trained on ``texts`` (lowercased; SentencePiece's ``▁`` marks the start of each word;
    ``[CLS] text [SEP]``), wrapped as a ``transformers.PreTrainedTokenizerFast``. Raises when a keyword is not one
    token of its own.

    BPE, not WordPiece: the ``tokenizers`` package breaks ties between equally frequent merges by hash order when
    it trains WordPiece (or BPE with a ``##`` continuation prefix), so those vocabularies, and every result after
    them, change from run to run; its plain BPE trainer gives the same vocabulary for the same texts.
    """
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    wrapped = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
    keyword_ids(wrapped)  # every keyword one token, and no filler word holds one
    return wrapped


def keyword_ids(tokenizer) -> dict[str, int]:
    """``{keyword: token id}``. Raises ``ValueError`` when a keyword is not a single token of the vocabulary, or when
    a filler word's tokens include a keyword's (then the keyword masks would mark filler)."""
    ids = {}
    for word in (w for words in KEYWORDS.values() for w in words):
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(pieces) != 1 or pieces[0] == tokenizer.unk_token_id:
            raise ValueError(
                f"the keyword {word!r} is tokenized as {tokenizer.convert_ids_to_tokens(pieces)}, not one token of its "
                "own: the keyword masks need every keyword to be a single token; raise --vocab-size."
            )
        ids[word] = pieces[0]
    for word in FILLER:
        shared = set(tokenizer(word, add_special_tokens=False)["input_ids"]) & set(ids.values())
        if shared:
            raise ValueError(f"the filler word {word!r} is tokenized with a keyword's token {shared}.")
    return ids


def keyword_masks(input_ids: Tensor, tokenizer) -> Tensor:
    """bool (N, T): True where the token is a keyword."""
    return torch.isin(input_ids, torch.tensor(list(keyword_ids(tokenizer).values())))


class Collate:
    """Pads a list of ``{"text", "label"}`` samples with the tokenizer into a dict batch (``input_ids``,
    ``token_type_ids``, ``attention_mask``, ``labels``), as a Hugging Face data collator does."""

    def __init__(self, tokenizer, max_length: int = 64) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Tensor]:
        batch = self.tokenizer(
            [s["text"] for s in samples],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {**batch, "labels": torch.tensor([s["label"] for s in samples])}


class TextClassifier(LightningModule):
    """``BertForSequenceClassification`` from a small ``BertConfig`` (random init), fine-tuned with AdamW.

    ``forward(input_ids, attention_mask=None)`` returns the model's ``ModelOutput``; ``training_step`` uses
    ``self.model(**batch).loss``, as most Hugging Face fine-tuning code does.
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 128,
        layers: int = 2,
        heads: int = 4,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        max_length: int = 64,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        config = transformers.BertConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=2 * hidden_size,
            max_position_embeddings=max_length,
            num_labels=len(CLASSES),
            id2label=dict(enumerate(CLASSES)),
            label2id={name: i for i, name in enumerate(CLASSES)},
            pad_token_id=0,
        )
        self.model = transformers.BertForSequenceClassification(config)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Any:
        return self.model(input_ids=input_ids, attention_mask=attention_mask)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.model(**batch).loss
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        output = self.model(**batch)
        self.log("val_loss", output.loss, prog_bar=True)
        self.log("val_acc", (output.logits.argmax(1) == batch["labels"]).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


METHODS = ("input_x_gradient", "saliency", "integrated_gradients")
QUALITY = ("deletion", "insertion", "pointing_game")
QUALITY_SCALARS = ("pointing_game", "deletion_auc", "insertion_auc")


def build(args: argparse.Namespace) -> dict[str, Any]:
    """Data, tokenizer, loaders, model and the probe (with its keyword masks) of a run with ``args``."""
    train = make_texts(args.n_train, seed=args.seed)
    val = make_texts(args.n_val, seed=args.seed + 1)
    tokenizer = train_tokenizer(train.texts, vocab_size=args.vocab_size)
    collate = Collate(tokenizer)
    probe = collate([val[i] for i in range(args.probe_size)])  # the first probe_size validation texts
    return dict(
        train=train,
        val=val,
        tokenizer=tokenizer,
        train_loader=DataLoader(train, batch_size=args.batch_size, shuffle=True, collate_fn=collate),
        val_loader=DataLoader(val, batch_size=256, collate_fn=collate),
        model=TextClassifier(len(tokenizer), lr=args.lr),
        probe=probe,
        masks=keyword_masks(probe["input_ids"], tokenizer),
    )


def explain_callback(parts: dict[str, Any], args: argparse.Namespace) -> TokenExplainCallback:
    """The example's callback: three methods and quality against the keyword masks, at step 0, every
    ``args.every_n_steps`` steps and at the end of every epoch."""
    return TokenExplainCallback(
        tokenizer=parts["tokenizer"],
        probe=parts["probe"],
        methods=METHODS,
        quality=QUALITY,
        masks=parts["masks"],
        every_n_steps=args.every_n_steps,
    )


def make_trainer(args: argparse.Namespace, logger: Any, callbacks: list) -> Trainer:
    """The example's quiet CPU Trainer."""
    return Trainer(
        max_epochs=args.max_epochs,
        accelerator="cpu",
        devices=1,
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=10,
    )


def fit(trainer: Trainer, parts: dict[str, Any]) -> None:
    """``trainer.fit`` on the example's loaders, without the warnings about data loader workers."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|bottleneck|LeafSpec).*")
        trainer.fit(parts["model"], parts["train_loader"], parts["val_loader"])


def read_scalars(log_dir: str) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of a TensorBoard run: ``{tag: [(step, value), ...]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(log_dir, size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def accuracy(model: TextClassifier, loader: DataLoader) -> float:
    """The share of texts whose predicted class is their label."""
    model.eval()
    right = total = 0
    with torch.no_grad():
        for batch in loader:
            logits = model(batch["input_ids"], batch["attention_mask"]).logits
            right += int((logits.argmax(1) == batch["labels"]).sum())
            total += len(batch["labels"])
    return right / total


def keyword_peaks(model: TextClassifier, probe: dict[str, Tensor], masks: Tensor, method: str) -> tuple[int, int]:
    """On the trained model: in how many probe texts the keyword holds the largest attribution and the largest
    |attribution| (the callback's pointing game takes the largest value; a signed method's sign can hide a peak)."""
    maps = token_attribution(
        model, probe["input_ids"], probe["labels"], method=method, attention_mask=probe["attention_mask"]
    )
    real = probe["attention_mask"].bool()
    return int(pointing_game(maps, masks, within=real).sum()), int(pointing_game(maps.abs(), masks, within=real).sum())


def print_table(scalars: dict[str, list[tuple[int, float]]], probe_size: int) -> dict[str, dict[str, float]]:
    """Print, per method and for the random maps, the pointing game at the first and the last event and the deletion
    and insertion AUCs at the last; return them."""
    steps = [step for step, _ in scalars.get("explain/random/pointing_game", [])]
    if not steps:
        print("no quality scalars were logged")
        return {}
    first, last = f"step {steps[0]}", f"step {steps[-1]}"
    print(f"probe: the first {probe_size} validation texts, one keyword each; {len(steps)} events")
    print(f"{'maps':<22}{'pointing game':>15}{'pointing game':>15}{'deletion AUC':>15}{'insertion AUC':>15}")
    print(f"{'':<22}{first:>15}{last:>15}{last + ' ↓':>15}{last + ' ↑':>15}")
    table = {}
    for method in [*METHODS, "random"]:
        game, deletion, insertion = (scalars.get(f"explain/{method}/{name}") for name in QUALITY_SCALARS)
        if not (game and deletion and insertion):
            print(f"{method:<22}not logged")
            continue
        table[method] = {
            "pointing_game_first": game[0][1],
            "pointing_game_last": game[-1][1],
            "deletion_auc": deletion[-1][1],
            "insertion_auc": insertion[-1][1],
        }
        print(f"{method:<22}" + "".join(f"{value:>15.3f}" for value in table[method].values()))
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-epochs", type=int, default=3, help="epochs to train (default: 3)")
    parser.add_argument("--n-train", type=int, default=2000, help="training texts (default: 2000)")
    parser.add_argument("--n-val", type=int, default=400, help="validation texts (default: 400)")
    parser.add_argument("--probe-size", type=int, default=32, help="validation texts explained (default: 32)")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch size (default: 32)")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW's learning rate (default: 0.001)")
    parser.add_argument("--vocab-size", type=int, default=800, help="the tokenizer's vocabulary (default: 800)")
    parser.add_argument("--every-n-steps", type=int, default=20, help="an event every N steps (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--logdir", default="logs/text", help="TensorBoard folder (default: logs/text)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    transformers.logging.set_verbosity_error()
    seed_everything(args.seed, workers=True, verbose=False)
    parts = build(args)
    logger = TensorBoardLogger(args.logdir, name="")
    fit(make_trainer(args, logger, [explain_callback(parts, args)]), parts)
    scalars = read_scalars(logger.log_dir)
    result: dict[str, Any] = {"val_accuracy": accuracy(parts["model"], parts["val_loader"])}
    print(f"validation accuracy: {result['val_accuracy']:.3f} ({len(parts['val'])} texts)")
    result.update(print_table(scalars, args.probe_size))
    for method in ("input_x_gradient", "integrated_gradients"):  # the signed methods
        peaks, magnitude_peaks = keyword_peaks(parts["model"], parts["probe"], parts["masks"], method)
        result[method] = {**result.get(method, {}), "keyword_largest": peaks, "keyword_largest_abs": magnitude_peaks}
        print(
            f"{method}: the keyword holds the largest value in {peaks} of {args.probe_size} probe texts, the largest "
            f"|value| in {magnitude_peaks}"
        )
    print(f"logs: tensorboard --logdir {args.logdir} --samples_per_plugin images=1000")
    return result


if __name__ == "__main__":
    main()
