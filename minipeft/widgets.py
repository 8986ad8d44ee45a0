"""An interactive memory calculator: pick a model, a precision and a method, see the memory bars move.

    calc = MemoryCalculator()
    calc.ui            # show it in JupyterLab / Colab

Every number comes from :mod:`minipeft.params` and :mod:`minipeft.memory`. The figure is drawn with matplotlib's
Agg canvas and shown as a PNG in an ``Image`` widget, so it works with any notebook front end and can be driven from
a test: set ``calc.model.value = ...`` and read ``calc.totals``, ``calc.summary.value`` or ``calc.ax``.
"""

from __future__ import annotations

import io

import ipywidgets as widgets
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .memory import GB, GPUS, PRECISIONS, method_memory
from .params import ModelSize, model_sizes

PART_COLOURS = {"weights": "tab:blue", "gradients": "tab:orange", "fp32 master weights": "tab:purple",
                "AdamW moments": "tab:red"}
GPU_STYLES = {"T4 (16 GB)": ":", "24 GB card": "--", "H100 (80 GB)": "-."}
RANKS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def method_label(method: str, r: int, prefix_length: int) -> str:
    """``"LoRA r=4"``, ``"prefix P=10"`` or ``"full fine-tuning"``."""
    return {"full": "full fine-tuning", "lora": f"LoRA r={r}", "prefix": f"prefix P={prefix_length}"}[method]


class MemoryCalculator:
    """Widgets (model, precision, method, rank, prefix length) wired to a bar chart of training memory."""

    def __init__(self, sizes: dict[str, ModelSize] | None = None, model: str = "GPT-2 medium",
                 precision: str = "fp32", method: str = "lora") -> None:
        self.sizes = sizes or model_sizes()
        style = {"description_width": "90px"}
        self.model = widgets.Dropdown(options=list(self.sizes), value=model, description="model", style=style)
        self.precision = widgets.Dropdown(options=list(PRECISIONS), value=precision, description="precision",
                                          style=style)
        self.method = widgets.ToggleButtons(options=[("full", "full"), ("LoRA", "lora"), ("prefix", "prefix")],
                                            value=method, description="method", style=style)
        self.rank = widgets.SelectionSlider(options=RANKS, value=4, description="LoRA rank r", style=style)
        self.prefix_length = widgets.IntSlider(value=10, min=1, max=200, description="prefix P", style=style)
        self.summary = widgets.HTML()
        self.image = widgets.Image(format="png")
        self.figure = Figure(figsize=(7.5, 4.2), layout="constrained")
        FigureCanvasAgg(self.figure)
        self.ax = self.figure.add_subplot()
        self.totals: dict[str, float] = {}  # bar label -> total GB, as last drawn
        for control in (self.model, self.precision, self.method, self.rank, self.prefix_length):
            control.observe(self._on_change, names="value")
        controls = widgets.VBox([self.model, self.precision, self.method, self.rank, self.prefix_length])
        self.ui = widgets.VBox([controls, self.summary, self.image])
        self.update()

    def _on_change(self, _change: dict) -> None:
        self.update()

    def update(self) -> None:
        """Recompute the memory for the current choices, redraw the bars and rewrite the summary."""
        size = self.sizes[self.model.value]
        method, r, length, prec = self.method.value, self.rank.value, self.prefix_length.value, self.precision.value
        self.rank.disabled = method != "lora"
        self.prefix_length.disabled = method != "prefix"
        bars = {"full fine-tuning": method_memory(size, "full", prec)}
        if method != "full":
            bars[method_label(method, r, length)] = method_memory(size, method, prec, r=r, prefix_length=length)
        self.totals = {label: mem.total / GB for label, (_, mem) in bars.items()}
        self._draw(size, prec, bars)
        trainable, mem = bars[method_label(method, r, length)]
        where = ", ".join(f"{gpu} {'yes' if mem.total <= cap else 'no'}" for gpu, cap in GPUS.items())
        target = {"lora": " on q and v of every attention block", "prefix": " (keys and values, every layer)",
                  "full": ""}[method]
        self.summary.value = (
            f"<b>{size.name}, {method_label(method, r, length)}{target}, {prec}</b>: "
            f"{trainable:,} trainable of {size.n_params:,} parameters ({100 * trainable / size.n_params:.3g}%). "
            f"Training state {mem.total / GB:,.2f} GB (full fine-tuning: {self.totals['full fine-tuning']:,.2f} GB), "
            f"before activations. Fits on: {where}.")

    def _draw(self, size: ModelSize, prec: str, bars: dict) -> None:
        ax = self.ax
        ax.clear()
        labels = list(bars)
        bottoms = [0.0] * len(labels)
        for part, colour in PART_COLOURS.items():
            heights = [mem.parts()[part] / GB for _, mem in bars.values()]
            if any(heights):
                ax.bar(labels, heights, bottom=bottoms, color=colour, label=part, width=0.5)
                bottoms = [b + h for b, h in zip(bottoms, heights)]
        top = max(1.2 * max(bottoms), 18.0)  # always keep the T4 line in view
        for gpu, capacity in GPUS.items():
            if capacity / GB < top:
                ax.axhline(capacity / GB, color="black", linestyle=GPU_STYLES[gpu], linewidth=1, label=gpu)
        for x, total in enumerate(bottoms):
            ax.text(x, total, f"{total:,.2f} GB", ha="center", va="bottom")
        ax.set_ylim(0, top)
        ax.set_ylabel("training memory (GB, before activations)")
        count = f"{size.n_params / 1e9:.1f}B" if size.n_params >= 1e9 else f"{size.n_params / 1e6:.0f}M"
        ax.set_title(f"{size.name}: {count} parameters, {prec}, AdamW")
        ax.legend(loc="upper right", fontsize="small")
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=90)
        self.image.value = buffer.getvalue()
