"""What a callback says about the layer it explains: the fit-start info line and the TensorBoard text."""

from __future__ import annotations

from collections.abc import Sequence

from lightning_explain.core.layout import LayerLayout


def describe_run(owner: str, methods: Sequence[str], head: str, layer: str | None, layout: LayerLayout | None) -> str:
    """The fit-start info line: the methods, the head, the layer and how it is read."""
    text = f"{owner}: {', '.join(methods)} for the {head} head"
    if layer is not None:
        text += f", layer {layer!r}"
        if layout is not None:
            text += f" ({layout.describe()})"
    return text + "."


def layer_markdown(layer: str, head: str, layout: LayerLayout | None) -> str:
    """The explained layer, for TensorBoard's Text tab (markdown)."""
    lines = [f"**Layer explained:** `{layer}`", f"**Head:** {head}"]
    if layout is not None:
        lines.append(f"**Layout:** {layout.describe()}")
        if layout.kind == "tokens":
            lines.append(f"**Prefix tokens dropped:** {layout.prefix_tokens}; **patch grid:** {layout.grid}")
    return "  \n".join(lines)
