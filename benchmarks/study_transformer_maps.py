"""Grad-CAM on a trained vision transformer against a trained CNN, and a gradient-weighted attention rollout.

On :func:`~lightning_explain.synthetic.make_shapes` images (one shape at a random place, no marker, the class
independent of the place) it trains, per seed, a small CNN and a real transformer architecture
(``transformers``' ``ViTForImageClassification`` from a small ``ViTConfig``, eager attention), and on a
held-out set, before and after training, scores each method's maps for the true class against the shape's
bounding box:

- pointing game: the share of maps whose maximum lies inside the box (a map that is zero everywhere misses);
- energy in mask: the share of the map's positive mass inside the box (0 for a map that is zero everywhere);
- empty: the share of maps that are zero everywhere.

Methods: ``grad_cam`` (CNN: the automatic layer; ViT: the last block's ``layernorm_before``, ``drop_tokens=1``),
``saliency``, ``integrated_gradients`` (library defaults: 32 steps, zero baseline, ``max_abs``), and for the ViT
the gradient-weighted attention rollout of Chefer et al. (2021), written here:
``R <- R + mean_heads((dS/dA * A).clamp(min=0)) @ R`` over the blocks from ``R = I``, the CLS row over the
patch tokens reshaped to the grid and upsampled bilinearly, as Grad-CAM is; and as an ablation the same rollout
without the gradient (``mean_heads(A)``). A "uniform map" row gives the chance level (the box's share of the
image). A second table gives the mean per-image Pearson r between the trained models' maps.

Usage::

    python benchmarks/study_transformer_maps.py --seeds 0 1 2
    python benchmarks/study_transformer_maps.py --quick  # a smoke run, the numbers mean nothing
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from itertools import combinations
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lightning_explain.attribution import explain  # noqa: E402
from lightning_explain.synthetic import make_shapes  # noqa: E402

LIBRARY_METHODS = ("grad_cam", "saliency", "integrated_gradients")
ROLLOUT = "grad_rollout"
PLAIN_ROLLOUT = "rollout_no_grad"


class ShapesCNN(nn.Module):
    """Three conv layers (two poolings) and global average pooling: Grad-CAM's automatic layer is 8x8."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class ViTLogits(nn.Module):
    """``ViTForImageClassification`` whose forward returns the logits tensor (what ``explain`` needs)."""

    def __init__(self, layers: int = 4, classes: int = 4) -> None:
        super().__init__()
        from transformers import ViTConfig, ViTForImageClassification

        config = ViTConfig(
            image_size=32,
            patch_size=4,
            num_channels=1,
            hidden_size=64,
            num_hidden_layers=layers,
            num_attention_heads=4,
            intermediate_size=128,
            num_labels=classes,
            attn_implementation="eager",
        )
        self.hf = ViTForImageClassification(config)

    def forward(self, x: Tensor) -> Tensor:
        return self.hf(pixel_values=x).logits

    @property
    def grad_cam_layer(self) -> nn.Module:
        return self.hf.vit.layers[-1].layernorm_before


def attention_rollout(model: ViTLogits, x: Tensor, target: Tensor, gradient: bool = True) -> Tensor:
    """Chefer et al. (2021)'s rollout for the HF ViT: (N, H, W) at input resolution, float32.

    ``gradient=False`` rolls out the head-mean of the attention probabilities themselves.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            out = model.hf(pixel_values=x, output_attentions=True)
            attentions = out.attentions  # per block (N, heads, T, T), the tensors the eager path multiplies by V
            score = out.logits.gather(1, target[:, None]).sum()  # samples are independent: one backward for all
            grads = torch.autograd.grad(score, attentions) if gradient else [None] * len(attentions)
    finally:
        model.train(was_training)
    n, _, tokens, _ = attentions[0].shape
    relevance = torch.eye(tokens).expand(n, tokens, tokens)
    for attention, grad in zip(attentions, grads, strict=True):
        weighted = attention.detach() if grad is None else (grad * attention.detach()).clamp(min=0)
        relevance = relevance + weighted.mean(dim=1) @ relevance
    side = int((tokens - 1) ** 0.5)
    cls = relevance[:, 0, 1:].reshape(n, 1, side, side)
    return F.interpolate(cls, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0].float()


def maps_for(model: nn.Module, kind: str, x: Tensor, y: Tensor, ig_steps: int) -> dict[str, Tensor]:
    if kind == "vit":
        layer, options = model.grad_cam_layer, {"grad_cam": {"drop_tokens": 1}}
    else:
        layer, options = None, {}
    options["integrated_gradients"] = {"steps": ig_steps}
    maps = explain(model, x, y, layer, methods=LIBRARY_METHODS, options=options)
    if kind == "vit":
        maps[ROLLOUT] = attention_rollout(model, x, y)
        maps[PLAIN_ROLLOUT] = attention_rollout(model, x, y, gradient=False)
    maps["uniform map"] = torch.ones_like(maps["saliency"])
    return maps


def scores(heat: Tensor, masks: Tensor) -> dict[str, float]:
    """Pointing game, energy in mask and the share of empty maps, over the batch."""
    flat, inside = heat.flatten(1), masks.flatten(1)
    empty = flat.amax(1) <= 0 if not torch.all(flat == 1) else torch.zeros(len(flat), dtype=torch.bool)
    hit = inside.gather(1, flat.argmax(1, keepdim=True))[:, 0] & ~empty
    if torch.all(flat == 1):  # the uniform map: its maximum is everywhere; score the expected hit rate
        hit = inside.float().mean(1)
    positive = flat.clamp(min=0)
    total = positive.sum(1)
    energy = torch.where(total > 0, (positive * inside).sum(1) / total.clamp(min=1e-30), torch.zeros_like(total))
    return {"pointing": float(hit.float().mean()), "energy": float(energy.mean()), "empty": float(empty.float().mean())}


def pearson(a: Tensor, b: Tensor) -> float:
    """The mean over images of Pearson's r between two maps (images where either map is constant skipped)."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    norm = a.norm(dim=1) * b.norm(dim=1)
    ok = norm > 0
    return float(((a * b).sum(1)[ok] / norm[ok]).mean()) if ok.any() else float("nan")


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train(model: nn.Module, data_seed: int, plan: dict, kind: str, batch: int = 64) -> float:
    """AdamW with a one-cycle schedule and cross-entropy, on fresh images every epoch (no memorisation).

    Epoch ``e`` draws ``make_shapes(plan["n_train"], seed=data_seed + e)``. Returns the seconds it took.
    """
    epochs, lr, n = plan[f"{kind}_epochs"], plan[f"{kind}_lr"], plan["n_train"]
    generator = torch.Generator().manual_seed(data_seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * ((n + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    start = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        x, y = make_shapes(n, seed=data_seed + epoch).tensors()
        order = torch.randperm(n, generator=generator)
        for first in range(0, n, batch):
            index = order[first : first + batch]
            optimizer.zero_grad()
            F.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
            schedule.step()
    return time.perf_counter() - start


def check_position_independence(data) -> float:
    """The largest gap between a class's mean box centre and the overall mean centre, in pixels."""
    rows = torch.arange(data.masks.shape[1]).float()
    box = data.masks.float()
    centre_row = (box.sum(2) * rows).sum(1) / box.sum((1, 2))
    centre_col = (box.sum(1) * rows).sum(1) / box.sum((1, 2))
    overall = torch.stack([centre_row.mean(), centre_col.mean()])
    gaps = [
        float(
            (torch.stack([centre_row[data.labels == c].mean(), centre_col[data.labels == c].mean()]) - overall)
            .abs()
            .max()
        )
        for c in data.labels.unique()
    ]
    return max(gaps)


def run_seed(seed: int, plan: dict, log) -> tuple[list[dict], dict]:
    """Both models for one seed (initialisation and training images); the held-out images are the same for all seeds."""
    train_seed = 100_000 * (seed + 1)  # epoch e draws seed train_seed + e: never the held-out seed 0
    log(
        f"seed {seed}: largest gap between a class's mean box centre and the overall mean: "
        f"{check_position_independence(make_shapes(plan['n_train'], seed=train_seed)):.2f} px "
        f"(first training epoch, {plan['n_train']} images)"
    )
    test = make_shapes(plan["n_test"], seed=0)
    xt, yt, masks = test.images, test.labels, test.masks
    rows, correlations = [], {}
    for kind in ("cnn", "vit"):
        torch.manual_seed(seed)
        model = ShapesCNN() if kind == "cnn" else ViTLogits(layers=plan["vit_layers"])
        for stage in ("untrained", "trained"):
            if stage == "trained":
                seconds = train(model, train_seed, plan, kind)
                log(f"seed {seed}: {kind} trained in {seconds:.0f} s")
            acc = accuracy(model, xt, yt)
            maps = maps_for(model, kind, xt, yt, plan["ig_steps"])
            for method, heat in maps.items():
                rows.append({"model": kind, "stage": stage, "method": method, "accuracy": acc, **scores(heat, masks)})
            if stage == "trained":
                names = [m for m in maps if m != "uniform map"]
                for a, b in combinations(names, 2):
                    correlations[(kind, a, b)] = pearson(maps[a], maps[b])
    return rows, correlations


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def print_tables(rows: list[dict], correlations: dict, seeds: list[int]) -> None:
    """The two markdown tables over the seeds run so far (printed after every seed)."""
    print(f"\nseeds {seeds}: mean ± std over seeds")
    print("| model | method | stage | accuracy | pointing game | energy in mask | empty maps |")
    print("|---|---|---|---|---|---|---|")
    methods = list(dict.fromkeys(r["method"] for r in rows))
    keys = dict.fromkeys((r["model"], r["method"], r["stage"]) for r in rows)
    for model, method, stage in sorted(
        keys, key=lambda k: (k[0], k[1] == "uniform map", methods.index(k[1]), k[2] == "trained")
    ):
        group = [r for r in rows if (r["model"], r["method"], r["stage"]) == (model, method, stage)]
        cells = [mean_std([r[k] for r in group]) for k in ("accuracy", "pointing", "energy", "empty")]
        print(f"| {model} | {method} | {stage} | " + " | ".join(cells) + " |")
    print()
    print("| model (trained) | methods | mean per-image Pearson r |")
    print("|---|---|---|")
    for (model, a, b), values in correlations.items():
        print(f"| {model} | {a} vs {b} | {mean_std(values)} |")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="one seed, tiny data, one epoch: a smoke run")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    plan = {
        "n_train": 2048,
        "n_test": 256,
        "cnn_epochs": 30,
        "cnn_lr": 3e-3,
        "vit_epochs": 40,
        "vit_lr": 3e-3,
        "vit_layers": 2,
        "ig_steps": 32,
    }
    seeds = args.seeds
    if args.quick:
        plan.update(n_train=128, n_test=16, cnn_epochs=1, vit_epochs=1, ig_steps=4)
        seeds = seeds[:1]
    print(f"plan: {plan}, seeds {seeds}", flush=True)
    rows, correlations = [], {}
    for seed in seeds:
        seed_rows, seed_correlations = run_seed(seed, plan, lambda line: print(line, flush=True))
        rows += seed_rows
        for key, value in seed_correlations.items():
            correlations.setdefault(key, []).append(value)
        print_tables(rows, correlations, seeds[: seeds.index(seed) + 1])
    return rows


if __name__ == "__main__":
    main()
