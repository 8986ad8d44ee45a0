"""`make figures`: the course's diagrams, drawn with matplotlib and written as SVGs to docs/figures/.

    python scripts/make_figures.py                     # every figure -> docs/figures/<name>.svg
    python scripts/make_figures.py --out DIR --png     # elsewhere, with a PNG of each beside it (to look at)
    python scripts/make_figures.py lora_path           # only the named figures

Every figure uses the same two colours: grey-blue for what is **frozen** (the pretrained weights) and orange
for what is **trainable** (prefix, LoRA matrices, a fully fine-tuned model). The output is deterministic (fixed
SVG ids, no date, text drawn as paths), so the committed SVGs must equal a fresh run; ``tests/test_figures.py``
checks that, so edit this script and run ``make figures`` rather than editing an SVG.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import matplotlib
import matplotlib.ft2font
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Arc, Circle, FancyArrowPatch, FancyBboxPatch, Polygon

from minipeft.paths import REPO_ROOT

OUT = REPO_ROOT / "docs" / "figures"

# The SVG's Creator line names the versions that shaped its bytes (tests/test_figures.py reads it back).
CREATOR = f"minipeft scripts/make_figures.py, Matplotlib v{matplotlib.__version__}, " \
          f"FreeType {matplotlib.ft2font.__freetype_version__}"
RC = {
    "svg.hashsalt": "minipeft",  # fixed ids for clip paths and glyphs: the same file on every run
    "svg.fonttype": "path",  # text as outlines: looks the same in every browser, with or without DejaVu Sans
    "svg.image_inline": True,
    "font.family": "DejaVu Sans",
    "mathtext.fontset": "dejavusans",
    "font.size": 11,
    "path.simplify": False,
}


class Look(NamedTuple):
    """A box's fill and outline colours."""

    face: str
    edge: str


FROZEN = Look("#dbe5f0", "#4a6a8a")  # pretrained weights: grey-blue
TRAIN = Look("#ffd7a8", "#e8590c")  # trained parameters: orange
DATA = Look("#ffffff", "#6b6b6b")  # activations, inputs and outputs
MERGED = Look("#f3e4d4", "#8a6a4a")  # W0 + (alpha/r) B A: frozen and trained in one matrix
INK = "#222222"
GREY = "#6b6b6b"
SHAPE_W = r"$d_\mathrm{out} \times d_\mathrm{in}$"
SHAPE_A = r"$r \times d_\mathrm{in}$"
SHAPE_B = r"$d_\mathrm{out} \times r$"


def canvas(width: float, height: float) -> tuple[Figure, Axes]:
    """A figure whose data coordinates are inches: (0, 0) bottom left, (width, height) top right.

    Built without pyplot (no global state, no backend switch), on an Agg canvas that can measure text."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def box(ax: Axes, x: float, y: float, w: float, h: float, text: str = "", look: Look = DATA, *,
        size: float = 11, dashed: bool = False, bold: bool = False, color: str = INK, lw: float = 1.4,
        round_: float = 0.06) -> None:
    """A rounded box with (x, y) its bottom-left corner and ``text`` centred in it."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle=f"round,pad=0,rounding_size={round_}",
                                facecolor=look.face, edgecolor=look.edge, linewidth=lw,
                                linestyle=(0, (4, 2.5)) if dashed else "-"))
    if text:
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, color=color,
                fontweight="bold" if bold else "normal", linespacing=1.35)


def arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], *, color: str = GREY,
          dashed: bool = False, lw: float = 1.5, both: bool = False, rad: float = 0.0) -> None:
    """An arrow from ``start`` to ``end`` (inches)."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="<|-|>" if both else "-|>", mutation_scale=13,
                                 color=color, linewidth=lw, shrinkA=0, shrinkB=0, zorder=3,
                                 connectionstyle=f"arc3,rad={rad}",
                                 linestyle=(0, (4, 2.5)) if dashed else "-"))


def write(ax: Axes, x: float, y: float, text: str, *, size: float = 11, color: str = INK, ha: str = "center",
          va: str = "center", bold: bool = False, italic: bool = False) -> None:
    ax.text(x, y, text, ha=ha, va=va, fontsize=size, color=color, linespacing=1.35,
            fontweight="bold" if bold else "normal", fontstyle="italic" if italic else "normal")


def padlock(ax: Axes, x: float, y: float, s: float = 0.22, look: Look = FROZEN) -> None:
    """A small padlock, (x, y) the bottom-left of its body: the sign for frozen."""
    ax.add_patch(Arc((x + s / 2, y + 0.7 * s), 0.65 * s, 0.9 * s, theta1=0, theta2=180, color=look.edge, lw=1.6))
    ax.add_patch(FancyBboxPatch((x, y), s, 0.72 * s, boxstyle=f"round,pad=0,rounding_size={0.12 * s}",
                                facecolor=look.edge, edgecolor=look.edge))


def key(ax: Axes, x: float, y: float, items: Sequence[tuple[Look, str]], *, size: float = 10.5) -> None:
    """A legend: one swatch and label per item, left to right from (x, y)."""
    renderer = ax.figure.canvas.get_renderer()  # type: ignore[attr-defined]
    to_inches = ax.transData.inverted()
    for look, label in items:
        box(ax, x, y - 0.09, 0.32, 0.18, look=look, round_=0.03)
        text = ax.text(x + 0.42, y, label, ha="left", va="center", fontsize=size, color=INK)
        right = to_inches.transform(text.get_window_extent(renderer).get_points())[1, 0]
        x = right + 0.4


# --------------------------------------------------------------------------------------------- 1. robot


def robot(ax: Axes, cx: float, y0: float, look: Look) -> None:
    """A boxy robot standing on y0, centred on cx: 2.6 in wide (arms), 4.3 in tall (antenna)."""
    for dx in (-0.55, 0.15):  # legs and feet
        box(ax, cx + dx, y0 + 0.15, 0.4, 1.0, look=look)
        box(ax, cx + dx - 0.08, y0, 0.56, 0.2, look=look)
    for dx in (-1.3, 0.95):  # arms
        box(ax, cx + dx, y0 + 1.55, 0.35, 1.45, look=look)
    box(ax, cx - 0.9, y0 + 1.2, 1.8, 1.95, look=look)  # torso
    box(ax, cx - 0.16, y0 + 3.15, 0.32, 0.12, look=look, round_=0.02)  # neck
    box(ax, cx - 0.5, y0 + 3.27, 1.0, 0.72, look=look)  # head
    for dx in (-0.22, 0.22):
        ax.add_patch(Circle((cx + dx, y0 + 3.68), 0.09, facecolor="white", edgecolor=look.edge, lw=1.4))
    ax.plot([cx - 0.2, cx + 0.2], [y0 + 3.44, y0 + 3.44], color=look.edge, lw=1.6)
    ax.plot([cx, cx], [y0 + 3.99, y0 + 4.2], color=look.edge, lw=1.6)
    ax.add_patch(Circle((cx, y0 + 4.25), 0.06, facecolor=look.edge, edgecolor=look.edge))


def draw_robot(ax: Axes) -> None:
    write(ax, 5.25, 6.35, "The Transformer robot: clip on a mission kit, or refit every part?", size=15, bold=True)

    # left: PEFT, one frozen robot with two kits clipped on, and a rack of kits for other missions
    write(ax, 3.2, 5.87, "PEFT: keep the robot, clip on a small kit", size=13, bold=True)
    cx, y0 = 1.45, 1.35
    robot(ax, cx, y0, FROZEN)
    write(ax, cx, y0 + 2.5, "pretrained\nweights")
    padlock(ax, cx - 0.5, y0 + 1.6)
    write(ax, cx - 0.18, y0 + 1.69, "frozen", ha="left")
    box(ax, cx + 0.88, y0 + 2.72, 0.5, 0.42, "P", TRAIN, bold=True, size=12)  # shoulder kit: prefix
    box(ax, cx + 0.88, y0 + 1.62, 0.5, 0.42, "BA", TRAIN, bold=True, size=12)  # forearm kit: LoRA
    arrow(ax, (cx + 1.78, y0 + 3.05), (cx + 1.43, y0 + 2.95), color=TRAIN.edge)
    write(ax, cx + 1.85, y0 + 3.05, "kit 1: prefix vectors\n(notebook 02)", ha="left", size=10.5)
    arrow(ax, (cx + 1.78, y0 + 1.72), (cx + 1.43, y0 + 1.83), color=TRAIN.edge)
    write(ax, cx + 1.85, y0 + 1.72, "kit 2: LoRA matrices\n(notebook 03)", ha="left", size=10.5)
    write(ax, 0.15, y0 - 0.38, "only the kit trains: a tiny share of the numbers", ha="left", size=10.5)

    rack_x = 5.0
    write(ax, rack_x + 0.58, 5.38, "one robot, many kits", size=11.5, bold=True)
    write(ax, rack_x + 0.58, 5.1, "one kit per mission:", size=10, color=GREY)
    for i, mission in enumerate(("restaurant data\n→ a sentence", "list the\nslot values", "your next\nmission")):
        box(ax, rack_x, 4.25 - 0.95 * i, 1.16, 0.7, mission, TRAIN, size=10)
    write(ax, rack_x + 0.58, 1.75, "swap kits per\nmission: the base\nmodel stays loaded,\neach kit is a\nsmall file",
          size=10, color=GREY)

    ax.plot([6.6, 6.6], [0.85, 5.95], color="#bbbbbb", lw=1.2, ls=(0, (5, 4)))

    # right: full fine-tuning, every part of the robot is trained, and a full copy per mission
    write(ax, 8.6, 5.87, "Full fine-tuning: refit every part", size=13, bold=True)
    robot(ax, 8.85, y0 + 0.1, Look("#fff3e6", "#f2b07a"))  # the copy for another mission, behind
    robot(ax, 8.25, y0, TRAIN)
    write(ax, 8.25, y0 + 2.2, "every\nweight\nis trained")
    write(ax, 6.85, y0 - 0.38, "gradients and AdamW state for every weight;\na full copy of the model per mission",
          ha="left", size=10.5)

    key(ax, 0.15, 0.55, [(FROZEN, "frozen (pretrained weights, requires_grad = False)"), (TRAIN, "trainable")])
    write(ax, 0.15, 0.17, "Where the analogy stops: the kits act inside the model, a prefix in every attention layer "
          "and LoRA beside weight matrices.", size=9.5, color=GREY, ha="left", italic=True)


# ------------------------------------------------------------------------------------- 2. prefix_block


def draw_prefix_block(ax: Axes) -> None:
    write(ax, 5.25, 7.2, "Prefix-tuning: learned keys and values in front of every layer's cache", size=15, bold=True)

    # left: what is trained, and the MLP that exists only while training
    write(ax, 1.45, 6.6, "What is trained", size=12.5, bold=True)
    box(ax, 0.2, 5.55, 2.5, 0.6, "$P'$: [P, d]", TRAIN, dashed=True)
    arrow(ax, (1.45, 5.55), (1.45, 5.2), color=TRAIN.edge, dashed=True)
    box(ax, 0.2, 4.1, 2.5, 1.1, "MLP\nLinear(d, 512) → tanh\n→ Linear(512, L·2·d)", TRAIN, dashed=True, size=10.5)
    arrow(ax, (1.45, 4.1), (1.45, 3.15), color=TRAIN.edge)
    write(ax, 1.55, 3.62, "P = MLP($P'$)", ha="left", size=10.5)
    box(ax, 0.2, 2.25, 2.5, 0.9, "prefix P: [P, L·2·d]\none row per position", TRAIN)
    arrow(ax, (2.7, 2.62), (3.3, 2.62), color=TRAIN.edge, lw=2)
    write(ax, 1.45, 1.6, "view(P, L·2, H, $d_h$): a $P_K$\nand a $P_V$ for every layer\n"
          "(H heads of width $d_h$ = d / H)", size=10)
    write(ax, 1.45, 0.75, "dashed: training only.\nfold() computes P once and\ndrops $P'$ and the MLP.", size=10,
          color=GREY)

    # middle: one GPT-2 attention block, repeated in every layer
    for shift in (0.2, 0.1):
        box(ax, 3.1 + shift, 0.95 + shift, 4.35, 5.2, look=Look("#ffffff", "#b5b5b5"), lw=1.1)
    box(ax, 3.1, 0.95, 4.35, 5.2, look=Look("#fbfbfb", GREY), lw=1.3)
    write(ax, 3.28, 5.9, "GPT-2 block, layer ℓ of L", size=12, bold=True, ha="left")
    write(ax, 3.28, 5.6, "L = n_layer layers, each with its own $P_K$, $P_V$", size=10, color=GREY, ha="left")

    box(ax, 3.75, 0.2, 3.1, 0.5, "x: hidden states of T tokens [B, T, d]")
    write(ax, 6.98, 0.3, "LayerNorms and residuals\nnot drawn", size=9, color=GREY, ha="left")
    arrow(ax, (5.3, 0.7), (5.3, 1.25))
    box(ax, 3.75, 1.25, 3.5, 0.55, "c_attn (frozen): d → 3d", FROZEN)
    bars = {"P_K": (3.4, 0.5, TRAIN), "K": (3.9, 0.8, DATA), "P_V": (4.95, 0.5, TRAIN), "V": (5.45, 0.8, DATA),
            "Q": (6.5, 0.8, DATA)}
    for name, (x, w, look) in bars.items():
        label = f"${name}$" if "_" in name else name
        count = "P pos." if "_" in name else "T tokens"
        box(ax, x, 2.3, w, 0.65, look=look, round_=0.03)
        write(ax, x + w / 2, 2.73, label, size=12, bold=True)
        write(ax, x + w / 2, 2.47, count, size=9, color=GREY)
        if "_" not in name:
            arrow(ax, (x + w / 2, 1.8), (x + w / 2, 2.3))
    box(ax, 3.3, 2.2, 3.05, 0.85, look=Look("none", GREY), dashed=True, lw=1.1)
    write(ax, 3.32, 3.3, "KV cache of layer ℓ\n(past_key_values)", size=10, color=GREY, ha="left")
    for x in (5.6, 6.9):
        arrow(ax, (x, 3.05 if x < 6 else 2.95), (x, 3.6))
    box(ax, 3.3, 3.6, 3.95, 0.95, "", DATA)
    write(ax, 5.27, 4.25, r"softmax$\left(Q\,[P_K; K]^\top / \sqrt{d_h}\right)\,[P_V; V]$", size=12)
    write(ax, 5.27, 3.85, "per head; mask: P ones in front of the T real ones", size=9.5, color=GREY)
    arrow(ax, (5.27, 4.55), (5.27, 4.8))
    box(ax, 3.75, 4.8, 3.05, 0.55, "c_proj, MLP (frozen)", FROZEN, size=10.5)
    arrow(ax, (6.45, 5.35), (6.45, 6.65))
    write(ax, 6.55, 6.5, "to layer ℓ + 1", size=10, ha="left", color=GREY)

    # right: prompt tuning, trainable embeddings at the input only
    write(ax, 9.0, 6.48, "Prompt tuning\n(for comparison)", size=12.5, bold=True)
    layers = [(5.05, "layer L (frozen)"), (3.65, "layer 2 (frozen)"), (2.85, "layer 1 (frozen)")]
    for y, text in layers:
        box(ax, 7.95, y, 2.1, 0.55, text, FROZEN, size=10.5)
    write(ax, 9.0, 4.75, "⋮", size=14)
    for y0, y1 in ((3.4, 3.65), (4.2, 4.45), (4.75 + 0.2, 5.05)):
        arrow(ax, (9.0, y0), (9.0, y1))
    box(ax, 7.8, 1.75, 1.0, 0.6, "soft\nprompt: P", TRAIN, size=10)
    box(ax, 8.8, 1.75, 1.4, 0.6, "wte(tokens):\nT", DATA, size=10)
    arrow(ax, (9.0, 2.35), (9.0, 2.85))
    write(ax, 9.0, 1.5, "inputs_embeds [B, P + T, d]", size=10)
    write(ax, 9.0, 0.85, "only the input layer: P·d numbers\n(prefix-tuning: P·L·2·d)", size=10, color=GREY)

    key(ax, 0.2, 0.17, [(FROZEN, "frozen"), (TRAIN, "trainable")])


# ----------------------------------------------------------------------------------------- 3. lora_path


def trapezoid(ax: Axes, cx: float, y: float, h: float, bottom: float, top: float, look: Look) -> None:
    """A trapezoid centred on cx from y to y + h, ``bottom`` wide at the bottom and ``top`` wide at the top."""
    corners = [(cx - bottom / 2, y), (cx + bottom / 2, y), (cx + top / 2, y + h), (cx - top / 2, y + h)]
    ax.add_patch(Polygon(corners, closed=True, facecolor=look.face, edgecolor=look.edge, linewidth=1.4))


def elbow(ax: Axes, points: Sequence[tuple[float, float]], *, color: str = GREY, lw: float = 1.5) -> None:
    """A line through ``points`` with an arrowhead on its last segment."""
    xs, ys = zip(*points)
    ax.plot(xs[:-1], ys[:-1], color=color, lw=lw, solid_capstyle="butt")
    arrow(ax, points[-2], points[-1], color=color, lw=lw)


def node(ax: Axes, x: float, y: float, text: str, *, r: float = 0.22, size: float = 13) -> None:
    ax.add_patch(Circle((x, y), r, facecolor="white", edgecolor=GREY, linewidth=1.4, zorder=2))
    ax.text(x, y, text, ha="center", va="center", fontsize=size, color=INK, zorder=4)


def draw_lora_path(ax: Axes) -> None:
    write(ax, 5.0, 6.85, "LoRA: a low-rank path beside the frozen weight", size=15, bold=True)
    base = 0.55  # everything sits above the legend

    # the frozen weight
    box(ax, 0.5, base + 1.35, 2.4, 2.4, look=FROZEN)
    write(ax, 1.7, base + 2.95, "$W_0$", size=20)
    write(ax, 1.7, base + 2.45, SHAPE_W, size=12)
    padlock(ax, 1.18, base + 1.76)
    write(ax, 1.5, base + 1.84, "frozen", ha="left")

    # the trainable low-rank path: A squeezes d_in to r, B widens r to d_out
    cx = 4.9
    trapezoid(ax, cx, base + 1.35, 0.95, 2.2, 0.45, TRAIN)
    write(ax, cx, base + 1.95, "$A$", size=16)
    write(ax, cx, base + 1.58, SHAPE_A, size=11)
    trapezoid(ax, cx, base + 2.8, 0.95, 0.45, 2.2, TRAIN)
    write(ax, cx, base + 3.45, "$B$", size=16)
    write(ax, cx, base + 3.05, SHAPE_B, size=11)
    arrow(ax, (cx, base + 2.3), (cx, base + 2.8))
    write(ax, cx + 0.15, base + 2.55, "r numbers", ha="left", size=9.5, color=GREY)
    write(ax, 6.25, base + 3.35, "B = 0 at the start:\nstep 0 is the base model, exactly", ha="left", size=10.5)
    write(ax, 6.25, base + 1.8, "A random (Kaiming-uniform):\nso that B gets a gradient", ha="left", size=10.5)
    node(ax, cx, base + 4.3, "×α/r", r=0.36, size=11.5)
    arrow(ax, (cx, base + 3.75), (cx, base + 3.94))
    write(ax, 5.4, base + 4.3, "α/r: a fixed scale, not trained", ha="left", size=10.5)

    # input, sum, output
    box(ax, 2.2, base + 0.25, 2.2, 0.5, r"x: $d_\mathrm{in}$ numbers per token")
    arrow(ax, (2.8, base + 0.75), (1.9, base + 1.35))
    arrow(ax, (3.8, base + 0.75), (4.7, base + 1.35))
    write(ax, 4.38, base + 1.0, "dropout (training)", ha="left", size=9.5, color=GREY)
    node(ax, 3.3, base + 4.95, "+")
    elbow(ax, [(1.7, base + 3.75), (1.7, base + 4.95), (3.08, base + 4.95)])
    elbow(ax, [(cx, base + 4.66), (cx, base + 4.95), (3.52, base + 4.95)])
    write(ax, 1.8, base + 4.4, "$W_0 x$", ha="left", size=11)
    arrow(ax, (3.3, base + 5.17), (3.3, base + 5.45))
    box(ax, 1.55, base + 5.45, 3.5, 0.6, look=DATA)
    write(ax, 3.3, base + 5.75, r"$h = W_0 x + \dfrac{\alpha}{r} B A x$", size=14)

    d_in, d_out = r"$d_\mathrm{in}$", r"$d_\mathrm{out}$"
    write(ax, 6.25, base + 0.65, f"trained: r·({d_in} + {d_out}) numbers, not {d_out}·{d_in}\n"
          "GPT-2 small's c_attn (768 → 2304) at r = 4:\n12,288 trained beside 1,769,472 frozen", ha="left", size=10)
    key(ax, 0.5, 0.2, [(FROZEN, "frozen"), (TRAIN, "trainable")])


# ---------------------------------------------------------------------------------------- 4. lora_merge


def draw_lora_merge(ax: Axes) -> None:
    write(ax, 5.25, 7.35, "Merging LoRA: one matrix at inference", size=15, bold=True)
    key(ax, 1.6, 6.85, [(FROZEN, "frozen"), (TRAIN, "trainable"), (MERGED, "merged: frozen + trained in one matrix")])

    # the sum, drawn as matrices of their real proportions (d_out x d_in, d_out x r, r x d_in)
    y, s = 4.85, 1.6
    box(ax, 0.5, y, s, s, "$W_0$", FROZEN, size=18, round_=0.02)
    write(ax, 0.5 + s / 2, y - 0.25, SHAPE_W + ", frozen", size=10.5)
    write(ax, 2.45, y + s / 2, "+", size=20)
    write(ax, 2.95, y + s / 2, r"$\dfrac{\alpha}{r}$", size=16)
    box(ax, 3.35, y, 0.32, s, "$B$", TRAIN, size=13, round_=0.02)
    box(ax, 3.8, y + s - 0.32, s, 0.32, "$A$", TRAIN, size=13, round_=0.02)
    box(ax, 3.8, y, s, s - 0.42, look=Look("none", TRAIN.edge), dashed=True, lw=1.0, round_=0.02)
    write(ax, 3.8 + s / 2, y + 0.82, "B A:", size=11)
    write(ax, 3.8 + s / 2, y + 0.5, SHAPE_W + ",\nrank ≤ r", size=9.5, color=GREY)
    write(ax, 4.0, y - 0.25, "B: " + SHAPE_B + ",  A: " + SHAPE_A, size=10.5)
    write(ax, 5.85, y + s / 2, "=", size=20)
    box(ax, 6.3, y, s, s, "$W$", MERGED, size=18, round_=0.02)
    write(ax, 6.3 + s / 2, y - 0.25, SHAPE_W + ", the same shape", size=10.5)
    write(ax, 8.35, y + 0.85, "an ordinary layer again:\nthe base model's own\noperations, no extra\n"
          "matmul, no extra latency", size=10.5, ha="left")

    # unmerged (two paths) <-> merged (one path)
    y = 1.75
    write(ax, 1.75, y + 2.25, "unmerged (training)", size=11.5, bold=True)
    box(ax, 1.0, y, 1.5, 0.45, "x")
    box(ax, 0.45, y + 0.8, 1.2, 0.6, "$W_0$", FROZEN, size=13)
    box(ax, 1.85, y + 0.8, 1.2, 0.6, r"$(\alpha / r)\, B A$", TRAIN, size=12)
    arrow(ax, (1.5, y + 0.45), (1.05, y + 0.8))
    arrow(ax, (2.0, y + 0.45), (2.45, y + 0.8))
    node(ax, 1.75, y + 1.75, "+", r=0.18, size=12)
    arrow(ax, (1.05, y + 1.4), (1.6, y + 1.65))
    arrow(ax, (2.45, y + 1.4), (1.9, y + 1.65))
    write(ax, 2.05, y + 1.95, "h", size=12)

    arrow(ax, (3.5, y + 1.3), (6.3, y + 1.3), color=INK, lw=1.8)
    write(ax, 4.9, y + 1.55, r"merge_lora:  $W = W_0 + (\alpha / r)\, B A$", size=11.5)
    arrow(ax, (6.3, y + 0.6), (3.5, y + 0.6), color=INK, lw=1.8)
    write(ax, 4.9, y + 0.3, r"unmerge_lora:  $W_0 = W - (\alpha / r)\, B A$", size=11.5)
    write(ax, 4.9, y - 0.05, "(up to float rounding)", size=9.5, color=GREY)

    write(ax, 7.45, y + 2.25, "merged (inference)", size=11.5, bold=True)
    box(ax, 6.7, y, 1.5, 0.45, "x")
    box(ax, 6.85, y + 0.8, 1.2, 0.6, "$W$", MERGED, size=13)
    arrow(ax, (7.45, y + 0.45), (7.45, y + 0.8))
    arrow(ax, (7.45, y + 1.4), (7.45, y + 1.8))
    write(ax, 7.6, y + 1.95, "h = W x", size=12, ha="left")
    write(ax, 8.55, y + 1.05, "unload_lora() then\nleaves a plain model,\nno LoRA layers", size=10.5, ha="left",
          color=GREY)

    # swapping adapters on one base model
    y = 0.25
    ax.plot([0.4, 10.1], [y + 1.15, y + 1.15], color="#cccccc", lw=1.0)
    write(ax, 0.45, y + 0.8, "Swapping adapters:", size=11.5, bold=True, ha="left")
    write(ax, 0.45, y + 0.4, "one base model,\nmany tasks", size=10.5, ha="left")
    box(ax, 2.5, y + 0.05, 1.3, 0.8, "$W_0$\nloaded once", FROZEN, size=10.5)
    write(ax, 4.05, y + 0.45, "+", size=16)
    for i, task in enumerate(("A, B: restaurants", "A, B: slot values")):
        box(ax, 4.4, y + 0.5 - 0.47 * i, 1.8, 0.38, task, TRAIN, size=10)
    write(ax, 6.45, y + 0.45, "switch task: copy its A and B into the\nLoRA layers (AdapterBank.use; unmerge\n"
          "first): a few small tensors, not a model", size=10.5, ha="left")


# ---------------------------------------------------------------------------------------- 5. lora_family


NF4 = Look("#e4e9f2", "#4a6a8a")  # a frozen weight stored in 4 bits: drawn hatched


def _family_skeleton(ax: Axes, x0: float, title: str, subtitle: str) -> tuple[float, float]:
    """One panel's title, subtitle, input box and the two arrows up from it; returns the left and right branches'
    centres."""
    cx = x0 + 1.3
    write(ax, cx, 5.55, title, size=13.5, bold=True)
    write(ax, cx, 5.12, subtitle, size=9.5, color=GREY)
    box(ax, cx - 0.6, 0.95, 1.2, 0.38, "x")
    left, right = x0 + 0.6, x0 + 2.0
    arrow(ax, (cx - 0.25, 1.33), (left, 1.75))
    arrow(ax, (cx + 0.25, 1.33), (right, 1.75))
    return left, right


def _lora_branch(ax: Axes, cx: float, scale: str) -> None:
    """A and B as two trapezoids (r numbers between them) and the scale node above them, from y = 1.75 to 3.45."""
    trapezoid(ax, cx, 1.75, 0.5, 0.9, 0.25, TRAIN)
    write(ax, cx, 1.97, "$A$", size=12)
    trapezoid(ax, cx, 2.35, 0.5, 0.25, 0.9, TRAIN)
    write(ax, cx, 2.63, "$B$", size=12)
    node(ax, cx, 3.22, scale, r=0.3, size=10)
    arrow(ax, (cx, 2.85), (cx, 2.92))


def _sum_to(ax: Axes, x0: float, left: float, right: float, left_top: float, right_top: float, y: float = 3.95) -> None:
    """The two branches meet in a + node at height ``y``, centred in the panel."""
    cx = x0 + 1.3
    node(ax, cx, y, "+", r=0.17, size=12)
    elbow(ax, [(left, left_top), (left, y), (cx - 0.17, y)])
    elbow(ax, [(right, right_top), (right, y), (cx + 0.17, y)])


def draw_lora_family(ax: Axes) -> None:
    write(ax, 6.75, 6.3, "The LoRA family: each one a small change to notebook 03's layer", size=15, bold=True)
    w = 2.7  # one panel's width
    for i in range(1, 5):
        ax.plot([i * w, i * w], [0.95, 5.8], color="#cccccc", lw=1.0)

    # LoRA and rsLoRA: the same picture, only the scale differs
    for x0, name, cite, scale, formula, note in (
            (0.0, "LoRA", "Hu et al., 2021", "×α/r", r"$h = W_0 x + \frac{\alpha}{r} B A x$",
             "B = 0 at the start:\nstep 0 is the base model"),
            (w, "rsLoRA", "Kalajdzievski, 2023", "×α/√r", r"$h = W_0 x + \frac{\alpha}{\sqrt{r}} B A x$",
             "one line changed, the scale:\na high rank keeps learning")):
        left, right = _family_skeleton(ax, x0, name, cite)
        box(ax, left - 0.45, 1.75, 0.9, 1.1, "$W_0$", FROZEN, size=13)
        _lora_branch(ax, right, scale)
        _sum_to(ax, x0, left, right, 2.85, 3.52)
        write(ax, x0 + 1.3, 4.55, formula, size=11.5)
        write(ax, x0 + 1.3, 0.62, note, size=9.5)

    # DoRA: V = W0 + s B A, each output row scaled to length m
    x0 = 2 * w
    left, right = _family_skeleton(ax, x0, "DoRA", "Liu et al., 2024")
    box(ax, left - 0.45, 1.75, 0.9, 1.1, "$W_0$", FROZEN, size=13)
    _lora_branch(ax, right, "×α/r")
    _sum_to(ax, x0, left, right, 2.85, 3.52, y=3.7)
    cx = x0 + 1.3
    arrow(ax, (cx, 3.87), (cx, 4.02))
    box(ax, cx - 0.95, 4.02, 1.9, 0.4, r"$m \cdot V \,/\, \|V\|_\mathrm{row}$", TRAIN, size=11)
    write(ax, cx, 4.72, r"$V = W_0 + \frac{\alpha}{r} B A$", size=11.5)
    write(ax, x0 + 1.3, 0.62, "m: a trained length per output;\nLoRA moves the direction;\n‖V‖ is a constant "
          "for backward", size=9.5)

    # PiSSA: the top r singular directions of W0 start the adapter, the residual stays frozen
    x0 = 3 * w
    left, right = _family_skeleton(ax, x0, "PiSSA", "Meng et al., 2024")
    box(ax, left - 0.45, 1.75, 0.9, 1.1, look=FROZEN)
    write(ax, left, 2.45, "$W_\\mathrm{res}$", size=13)
    write(ax, left, 2.05, "the rest", size=9, color=GREY)
    _lora_branch(ax, right, "×α/r")
    _sum_to(ax, x0, left, right, 2.85, 3.52)
    write(ax, x0 + 1.3, 4.6, "$W_0 = U S V^\\top$: top r of it\n→ B A, the rest → $W_\\mathrm{res}$", size=9.5)
    write(ax, x0 + 1.3, 0.62, "the same model at the start,\nprincipal directions trained", size=9.5)

    # QLoRA: the frozen weight in NF4, dequantised at each call, LoRA on top in full precision
    x0 = 4 * w
    left, right = _family_skeleton(ax, x0, "QLoRA", "Dettmers et al., 2023")
    ax.add_patch(FancyBboxPatch((left - 0.45, 1.75), 0.9, 1.1, boxstyle="round,pad=0,rounding_size=0.06",
                                facecolor=NF4.face, edgecolor=NF4.edge, linewidth=1.4, hatch="////"))
    box(ax, left - 0.38, 2.1, 0.76, 0.42, "$W_0$\nNF4", FROZEN, size=9.5)
    _lora_branch(ax, right, "×α/r")
    _sum_to(ax, x0, left, right, 2.85, 3.52)
    write(ax, x0 + 1.3, 4.6, "4 bits a weight, blocks of 64,\none absmax per block", size=9.5)
    write(ax, x0 + 1.3, 0.62, "LoRA in full precision on a\n4-bit base, dequantised\nat each call", size=9.5)

    key(ax, 0.2, 0.12, [(FROZEN, "frozen"), (TRAIN, "trainable")], size=9.5)
    write(ax, 2.75, 0.12, "hatched: stored in 4 bits (NF4)", size=9.5, ha="left")


FIGURES: dict[str, tuple[tuple[float, float], Callable[[Axes], None]]] = {
    "robot": ((10.5, 6.65), draw_robot),
    "prefix_block": ((10.5, 7.5), draw_prefix_block),
    "lora_path": ((10.0, 7.15), draw_lora_path),
    "lora_merge": ((10.5, 7.65), draw_lora_merge),
    "lora_family": ((13.5, 6.65), draw_lora_family),
}


@contextmanager
def matplotlibs_own_fonts() -> Iterator[None]:
    """Draw with the font files matplotlib ships, never a system copy of the same family: the SVG names each glyph
    by its number in the file, and the system's DejaVu Sans Bold numbers them differently (6,196 glyphs against
    6,184), so which copy matplotlib's font cache happened to pick changed the figures' bytes."""
    own = sorted((Path(matplotlib.get_data_path()) / "fonts" / "ttf").glob("*.ttf"))
    manager = font_manager.fontManager
    saved = manager.ttflist  # from a cache shared by every matplotlib on the machine: its paths may be another's
    manager.ttflist = [font_manager.ttfFontProperty(font_manager.get_font(str(path))) for path in own]
    manager._findfont_cached.cache_clear()  # findfont remembers its answers: forget them on the way in and out
    try:
        yield
    finally:
        manager.ttflist = saved
        manager._findfont_cached.cache_clear()


def make(name: str, out_dir: Path, png: bool = False) -> Path:
    """Draw figure ``name`` into ``out_dir/<name>.svg`` (and ``.png`` beside it when ``png``)."""
    (width, height), draw = FIGURES[name]
    with matplotlib.rc_context(RC), matplotlibs_own_fonts():
        fig, ax = canvas(width, height)
        draw(ax)
        path = out_dir / f"{name}.svg"
        fig.savefig(path, format="svg", metadata={"Date": None, "Creator": CREATOR, "Title": name})
        if png:
            fig.savefig(out_dir / f"{name}.png", format="png", dpi=100, metadata={"Software": None})
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"figures to draw (default: all of {', '.join(FIGURES)})")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the SVGs (default: docs/figures)")
    parser.add_argument("--png", action="store_true", help="also write a PNG of each figure, to look at")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(FIGURES))
    if unknown:
        parser.error(f"no figure named {', '.join(unknown)}; the figures are {', '.join(FIGURES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names or FIGURES:
        path = make(name, args.out, png=args.png)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
