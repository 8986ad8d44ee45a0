"""Notebook 08's ladder: every method on the restaurant task at one step budget, one JSON file per run.

Eight methods, each at the course recipe's size (:func:`minipeft.recipes.build`): full fine-tuning, LoRA, rsLoRA
at a high rank, DoRA, PiSSA, LoRA on the 4-bit NF4 base (QLoRA), prefix-tuning and prompt tuning. The ladder runs
in phases, each resumable (a run whose file exists is skipped):

1. **The rate check** (``rates/``): each method at three rates a half-decade apart around a centre (:func:`centre`:
   the recipe's rate for full fine-tuning, LoRA and prefix-tuning, which ``scripts/lr_check.py`` measured; LoRA's for
   its descendants; ten times prefix-tuning's for prompt tuning, the ratio of notebook 02's lesson rates on GPT-2),
   seed 0, ``rate_steps`` steps. A best rate at an edge of the rates checked is not known to be best (the next one
   out may be better still), so the check widens by one rate beyond that edge until the lowest loss lies inside, or
   at most :attr:`LadderScale.max_widen` rates beyond the first three (:func:`checked_grid`). Each method keeps the
   rate of lowest validation loss, or the smaller of two within :data:`RATE_TIE` nats (``scripts/lr_check.py``'s
   rule): :func:`picked_rates`.
2. **The ladder** (``runs/``): each method at its picked rate, :data:`SEEDS` seeds, ``steps`` steps; per run the
   task loss (validation cross-entropy), slot error rate and BLEU of greedy sentences for the test MRs, trainable
   and stored parameters (:func:`minipeft.params.count_parameters`; stored = what a checkpoint of the method holds),
   the model's weight bytes (from the storages: QLoRA's base is NF4), the median step time, the training memory
   (GPU: ``torch.cuda.max_memory_allocated``; CPU: the peak of :func:`heap_bytes`, the bytes allocated and not
   freed, while training, above the heap before the model was built: the model, its gradients, AdamW's state and
   the activations) and the provenance.
3. **Memory** (``memory/``), only for a method none of whose runs holds a memory measure: its first seed again,
   measured, not scored (:func:`memory_runs`; the first 24 runs' resident-memory peaks were dropped).

rsLoRA runs at rank :attr:`LadderScale.rslora_rank` with ``alpha = alpha0 / sqrt(r0)`` (the recipe's ``r0``,
``alpha0``): its scale ``alpha / sqrt(r)`` equals the recipe's LoRA scale at ``r = r0`` (rsLoRA's point: one alpha
serves every rank). The sizes are the recipe's; :func:`budget` says which of them store exactly LoRA's count (on
SmolLM2-135M: LoRA, PiSSA, QLoRA and prefix-tuning; DoRA adds its magnitude vectors) and each other method's ratio
to it (full fine-tuning is the reference, rsLoRA exists for high ranks, and a soft prompt of LoRA's count would be
hundreds of positions on every example). The table prints each method's trainable and stored parameters beside its
quality. ``python scripts/ladder.py`` (``make ladder``) runs it on SmolLM2-135M.
"""

from __future__ import annotations

import copy
import ctypes
import gc
import json
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import torch
from torch import nn

from .data import Pair, load_restaurant, make_loader
from .decode import generate_texts
from .forgetting.frontier import Interval, t_interval
from .forgetting.lab import code_version, provenance, run_missing
from .lora import lora_layers
from .metrics import bleu, slot_error_rate
from .params import count_parameters
from .paths import REPO_ROOT
from .profiles import Profile, get_profile
from .quant import storage_bytes
from .recipes import Recipe, build, recipe_for
from .seeding import seed_everything
from .tables import format_table
from .train import evaluate_loss, train

LADDER_DIR = REPO_ROOT / "results" / "ladder"
METHODS = ("full", "lora", "rslora", "dora", "pissa", "qlora", "prefix", "prompt")  # recipes.SHORT_NAMES
LORA_FAMILY = ("lora", "rslora", "dora", "pissa", "qlora")
SEEDS = (0, 1, 2)
RATE_FACTOR = math.sqrt(10)  # the rate check's rates: centre / RATE_FACTOR, centre, centre * RATE_FACTOR
RATE_TIE = 0.03  # nats: of two rates this close in validation loss, the smaller is picked
BATCH = 8
PROMPT_OVER_PREFIX = 10  # prompt tuning's centre rate over prefix-tuning's: notebook 02's lessons, 1e-1 and 1e-2


@dataclass(frozen=True)
class LadderScale:
    """How big the ladder is: steps of a ladder run and of a rate-check run, validation examples, test MRs scored,
    length of generated sentences and of task examples, rsLoRA's rank, the seeds, and how far the rate check may
    widen."""

    steps: int
    rate_steps: int
    n_val: int
    n_mrs: int
    max_new_tokens: int
    max_len: int
    rslora_rank: int
    seeds: tuple[int, ...] = SEEDS
    max_widen: int = 2  # rates the rate check may add beyond its first three on either side (checked_grid)


# SmolLM2-135M. Measured on 6 Dec 2026, one torch thread on 2 cores busy with another sweep, lr 9e-3, seed 0: a LoRA
# run 412 s (median step 5.9 s), a QLoRA run 975 s (12.1 s: every step dequantises every layer), decoding included.
FULL_SCALE = LadderScale(steps=60, rate_steps=30, n_val=64, n_mrs=32, max_new_tokens=40, max_len=512,
                         rslora_rank=64)
# The ci profile's smoke test on the mini GPT-2: every line runs in seconds, no number is a result.
CI_SCALE = LadderScale(steps=3, rate_steps=2, n_val=8, n_mrs=3, max_new_tokens=6, max_len=128, rslora_rank=32,
                       seeds=(0,), max_widen=1)


def ladder_scale(profile: str | Profile | None = None) -> LadderScale:
    """:data:`CI_SCALE` for the ``ci`` profile and dry runs, else :data:`FULL_SCALE` (the committed ladder's)."""
    profile = get_profile(profile)
    return CI_SCALE if profile.name == "ci" or profile.dry_run else FULL_SCALE


def centre(method: str, recipe: Recipe) -> float:
    """The middle rate of ``method``'s rate check (see the module's docstring)."""
    if method in LORA_FAMILY:
        return recipe.lr["LoRA"]
    if method == "prompt":
        return PROMPT_OVER_PREFIX * recipe.lr["prefix-tuning"]
    return recipe.rate(method)


def _rate(centre_rate: float, k: int) -> float:
    """The rate ``k`` half-decades from the centre, to 3 significant digits."""
    return float(f"{centre_rate * RATE_FACTOR ** k:.3g}")


def rate_grid(recipe: Recipe, methods: Sequence[str] = METHODS) -> dict[str, tuple[float, ...]]:
    """The rate check's first three rates per method, a half-decade apart around :func:`centre`."""
    return {m: tuple(_rate(centre(m, recipe), k) for k in (-1, 0, 1)) for m in methods}


def widened(rates: tuple[float, ...], records: list[dict], centre_rate: float, max_widen: int) -> tuple[float, ...]:
    """``rates`` and, when all of them are in ``records`` and the lowest finite loss lies at an edge (the lowest or
    the highest rate), the next rate a half-decade beyond that edge, unless ``max_widen`` rates already lie beyond
    the first three on that side. A diverged rate (loss None) is never the lowest loss, so a check does not widen
    past it."""
    loss = {r["lr"]: r["task_loss"] for r in records}
    finite = [lr for lr in rates if loss.get(lr) is not None]
    if not finite or not set(rates) <= set(loss):
        return rates
    best = min(finite, key=lambda lr: loss[lr])
    steps = [round(math.log(lr / centre_rate) / math.log(RATE_FACTOR)) for lr in rates]
    if best == max(rates) and max(steps) < 1 + max_widen:
        return (*rates, _rate(centre_rate, max(steps) + 1))
    if best == min(rates) and min(steps) > -1 - max_widen:
        return (_rate(centre_rate, min(steps) - 1), *rates)
    return rates


def checked_grid(recipe: Recipe, records: list[dict], methods: Sequence[str] = METHODS,
                 max_widen: int = FULL_SCALE.max_widen) -> dict[str, tuple[float, ...]]:
    """The rates the rate check needs, given what ``records`` (its finished runs) hold: :func:`rate_grid`'s three,
    widened (:func:`widened`) as far as the records show it must be; a rate not yet run ends the widening."""
    grid = {}
    for m, rates in rate_grid(recipe, methods).items():
        mine = [r for r in records if r["method"] == m]
        while (wider := widened(rates, mine, centre(m, recipe), max_widen)) != rates:
            rates = wider
        grid[m] = rates
    return grid


@dataclass(frozen=True)
class LadderRun:
    """One run: a method at one rate from one seed for ``steps`` steps (``phase``: ``rates`` or ``runs``)."""

    method: str
    lr: float
    seed: int
    steps: int
    phase: str = "runs"

    @property
    def name(self) -> str:
        return f"{self.method}-lr{self.lr:.3g}-seed{self.seed}-steps{self.steps}"

    def build(self, base: nn.Module, recipe: Recipe, scale: LadderScale) -> nn.Module:
        """The model to train, on a copy of ``base``; the adapter's initial draw comes from this run's seed."""
        seed_everything(self.seed)
        return build(self.method, copy.deepcopy(base), recipe, **method_size(self.method, recipe, scale))


def method_size(method: str, recipe: Recipe, scale: LadderScale) -> dict:
    """``build``'s size overrides of ``method`` in the ladder: rsLoRA's high rank, with ``alpha = alpha0 / sqrt(r0)``
    so that at the recipe's rank ``r0`` its scale is the recipe's; nothing for the other methods."""
    if method != "rslora":
        return {}
    r0, alpha0 = recipe.lora["r"], recipe.lora["alpha"]
    return {"r": scale.rslora_rank, "alpha": alpha0 / math.sqrt(r0)}  # scale alpha/sqrt(r0) at r0


def run_path(run: LadderRun, ladder_dir: str | Path = LADDER_DIR) -> Path:
    return Path(ladder_dir) / run.phase / f"{run.name}.json"


@dataclass
class LadderContext:
    """What every run shares: the base model, its tokenizer and recipe, the task data and the test MRs."""

    base: nn.Module
    tokenizer: object
    base_name: str
    recipe: Recipe
    train_pairs: list
    val_loader: object
    mrs: list[str]
    references: list[list[str]]
    code: dict
    scale: LadderScale

    @classmethod
    def create(cls, base: nn.Module, tokenizer, base_name: str, profile, scale: LadderScale,
               data: Callable[[str], list[Pair]] | None = None) -> LadderContext:
        """``data(split)`` gives a split's pairs: the offline restaurant set unless told otherwise."""
        data = data or (lambda split: load_restaurant(split, profile))
        val = data("validation")[:scale.n_val]
        refs: dict[str, list[str]] = defaultdict(list)
        for mr, ref in data("test"):
            refs[mr].append(ref)
        mrs = list(refs)[:scale.n_mrs]
        val_loader = make_loader(val, tokenizer, BATCH, scale.max_len, shuffle=False, drop_long=True)
        return cls(base, tokenizer, base_name, recipe_for(base), data("train"), val_loader, mrs,
                   [refs[mr] for mr in mrs], code_version(), scale)


def stored_parameters(model: nn.Module, method: str) -> int:
    """What a checkpoint of ``method`` holds: every weight (full fine-tuning), the folded prefix (prefix-tuning:
    ``P = MLP(P')`` computed once, the MLP dropped), else the trainable tensors (A, B, DoRA's m, the soft prompt).
    Folds a prefix model in place (its outputs do not change)."""
    if method == "full":
        return count_parameters(model)
    if method == "prefix":
        model.fold()
    return count_parameters(model, trainable_only=True)


def weight_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer of ``model``, measured from their storages (QLoRA's: NF4 codes)."""
    return storage_bytes([*model.parameters(), *model.buffers()])


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                       "fsmblks", "uordblks", "fordblks", "keepcost")]


def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        call = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):  # no glibc, or one older than 2.33
        return None
    call.restype = _MallInfo2
    return call


_MALLINFO2 = _mallinfo2()  # looked up once: heap_bytes runs in the sampler's loop


def heap_bytes() -> int:
    """Bytes the C allocator has handed out and not taken back (glibc's ``mallinfo2``: ``uordblks + hblkhd``), where
    torch keeps every CPU tensor: the CPU's ``torch.cuda.memory_allocated``. Unlike resident memory it drops the
    moment a tensor is freed, so neither memory the allocator keeps for reuse nor a build's freed temporary (QLoRA's
    float32 copy) counts. Without glibc 2.33: the resident memory."""
    if _MALLINFO2 is None:
        return psutil.Process().memory_info().rss
    found = _MALLINFO2()
    return found.uordblks + found.hblkhd


CPU_MEMORY = ("CPU: peak live heap while training (glibc mallinfo2: bytes allocated and not freed), above the heap "
              "before the model was built" if _MALLINFO2 else
              "CPU: peak resident memory while training, above the process's before the model was built (psutil)")


@dataclass(frozen=True)
class Budget:
    """What each ladder method stores (:func:`stored_parameters`), against LoRA's count, the ladder's budget."""

    stored: dict[str, int]  # per method of METHODS (short names)
    prompt_len: int  # the recipe's soft prompt: positions, each one embedding row

    @property
    def lora(self) -> int:
        """LoRA's stored parameters: the budget."""
        return self.stored["lora"]

    def ratio(self, method: str) -> float:
        return self.stored[method] / self.lora

    @property
    def on_budget(self) -> list[str]:
        """The methods that store exactly LoRA's count."""
        return [m for m, n in self.stored.items() if n == self.lora]

    @property
    def magnitudes(self) -> int:
        """DoRA's extra: its magnitude vectors m, one number per output feature of every adapted layer."""
        return self.stored["dora"] - self.lora

    @property
    def prompt_width(self) -> int:
        """Parameters per soft-prompt position (the embedding width)."""
        return self.stored["prompt"] // self.prompt_len

    @property
    def prompt_positions(self) -> float:
        """How many soft-prompt positions would store LoRA's count: positions added to every example."""
        return self.lora / self.prompt_width

    def format(self) -> str:
        """One row per method: stored parameters, the ratio to LoRA's, and whether it is on the budget."""
        return format_table([{"method": NAMES[m], "stored": n, "/ LoRA's": f"{self.ratio(m):.3g}",
                              "on LoRA's budget": "yes" if n == self.lora else "no"}
                             for m, n in self.stored.items()])


def budget(model: nn.Module, recipe: Recipe | None = None, scale: LadderScale = FULL_SCALE) -> Budget:
    """Each ladder method's stored parameters on ``model`` at the ladder's sizes (``recipe``: default
    :func:`recipe_for` ``model``; rsLoRA at ``scale``'s rank), counted on a copy built on the meta device: the real
    ``build`` and :func:`stored_parameters`, no memory, no weights, so SmolLM2-135M's counts come from its
    ``config.json`` alone. PiSSA's A and B have LoRA's shapes (its SVD sets their values, which a meta tensor lacks):
    it is counted as built with LoRA's initialisation (``tests/test_ladder.py`` checks the two agree on real weights).
    """
    recipe = recipe or recipe_for(model)
    with torch.device("meta"):
        twin = type(model)(model.config) if hasattr(model, "config") else copy.deepcopy(model).to("meta")
    stored = {}
    for method in METHODS:
        built = build("lora" if method == "pissa" else method, copy.deepcopy(twin), recipe,
                      **method_size(method, recipe, scale))
        stored[method] = stored_parameters(built, method)
    return Budget(stored, recipe.prompt_len)


@contextmanager
def sampled_peak(read: Callable[[], int] = heap_bytes, interval: float = 0.01) -> Iterator[list[int]]:
    """``with sampled_peak() as peak:`` ``peak[0]`` is the largest value of ``read()`` (bytes: :func:`heap_bytes`)
    while the block ran, sampled by a thread every ``interval`` seconds (torch releases the GIL in its kernels, so
    the samples go on), or less often when a read is slow: ``mallinfo2`` walks every free chunk of the heap under
    its lock (0.1 s on a fragmented heap), so the thread waits nine times a read's cost and takes at most a tenth of
    the time (sampling every 10 ms slowed a SmolLM2 step from 8 s to 15 s)."""
    stop = threading.Event()
    peak = [read()]

    def sample() -> None:
        wait = interval
        while not stop.wait(wait):
            start = time.perf_counter()
            peak[0] = max(peak[0], read())
            wait = max(interval, 9 * (time.perf_counter() - start))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        stop.set()
        sampler.join()
        peak[0] = max(peak[0], read())


def score_sentences(model: nn.Module, ctx: LadderContext) -> dict:
    """One greedy sentence per test MR, scored: slot error rate, BLEU against every reference, the first sentence."""
    texts = generate_texts(model, ctx.tokenizer, ctx.mrs, max_new_tokens=ctx.scale.max_new_tokens, progress=False)
    return {"ser": slot_error_rate(ctx.mrs, texts), "bleu": bleu(texts, ctx.references), "sample": texts[0],
            "n_mrs": len(ctx.mrs)}


def measure(run: LadderRun, ctx: LadderContext) -> dict:
    """Train ``run`` and measure it; returns the record that :func:`sweep` writes."""
    start = time.perf_counter()
    loader = make_loader(ctx.train_pairs, ctx.tokenizer, BATCH, ctx.scale.max_len, seed=run.seed, drop_long=True)
    gc.collect()  # garbage from earlier runs, freed later, would lower the peak above `before`
    before = heap_bytes()
    model = run.build(ctx.base, ctx.recipe, ctx.scale)
    with sampled_peak() as peak:
        history = train(model, loader, steps=run.steps, lr=run.lr, warmup_steps=run.steps // 10, seed=run.seed,
                        progress=False)
    on_gpu = next(model.parameters()).is_cuda
    task_loss = evaluate_loss(model, ctx.val_loader)
    record = {**asdict(run), "base_model": ctx.base_name, "task_loss": task_loss if math.isfinite(task_loss) else None,
              "final_train_loss": history.train_loss[-1], "trainable_params": history.trainable_params,
              "weight_bytes": weight_bytes(model), "median_step_seconds": history.median_seconds_per_step,
              "memory_bytes": history.peak_memory_bytes if on_gpu else peak[0] - before,
              "memory_measured": "torch.cuda.max_memory_allocated" if on_gpu else CPU_MEMORY}
    if lora_layers(model):
        layer = next(iter(lora_layers(model).values()))
        record |= {"r": layer.r, "alpha": layer.alpha, "scaling": layer.scaling}
    if run.phase == "runs":
        record |= score_sentences(model, ctx)
    record["stored_params"] = stored_parameters(model, run.method)
    record["provenance"] = provenance(ctx.code, time.perf_counter() - start)
    return record


def sweep(runs: list[LadderRun], ctx: LadderContext, ladder_dir: str | Path = LADDER_DIR,
          max_runs: int | None = None) -> list[Path]:
    """Measure every run of ``runs`` whose file is not in ``ladder_dir`` yet (at most ``max_runs``), one file each."""
    def summary(run: LadderRun, record: dict) -> str:
        quality = f", SER {record['ser']:.1%}, BLEU {record['bleu']:.1f}" if "ser" in record else ""
        loss = "diverged" if record["task_loss"] is None else f"{record['task_loss']:.3f}"
        return f"{run.phase}/{run.name}: task loss {loss}{quality}"
    return run_missing(runs, lambda run: run_path(run, ladder_dir), lambda run: measure(run, ctx), summary, max_runs)


def load_records(ladder_dir: str | Path = LADDER_DIR, phase: str = "runs") -> list[dict]:
    """Every finished record of ``phase`` (``rates``, ``runs`` or ``memory``), sorted by file name."""
    return [json.loads(p.read_text()) for p in sorted((Path(ladder_dir) / phase).glob("*-seed*.json"))]


def pick_rate(records: list[dict]) -> float:
    """Of one method's rate-check records, the rate of lowest validation loss, or the smaller of two within
    :data:`RATE_TIE` nats; a diverged run (loss None) never wins."""
    finite = [r for r in records if r["task_loss"] is not None]
    if not finite:
        raise ValueError(f"Every rate of {records[0]['method']!r} diverged: lower its centre rate.")
    best = min(r["task_loss"] for r in finite)
    return min(r["lr"] for r in finite if r["task_loss"] <= best + RATE_TIE)


def picked_rates(records: list[dict], grid: dict[str, tuple[float, ...]]) -> dict[str, float]:
    """The rate each method of ``grid`` keeps, for the methods whose whole rate check is in ``records``."""
    by_method: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_method[r["method"]].append(r)
    return {m: pick_rate(by_method[m]) for m, rates in grid.items()
            if {r["lr"] for r in by_method[m]} >= set(rates)}


def format_rate_check(records: list[dict], grid: dict[str, tuple[float, ...]]) -> str:
    """The rate check as a table: per method, each rate of ``grid`` with its validation loss (``diverged``, or
    ``not run`` yet), how many rates it widened by, and the rate it picked (``-`` while unfinished)."""
    loss = {(r["method"], r["lr"]): r["task_loss"] for r in records}
    picked = picked_rates(records, grid)

    def cell(m: str, lr: float) -> str:
        if (m, lr) not in loss:
            return f"{lr:.3g}: not run"
        return f"{lr:.3g}: " + ("diverged" if loss[m, lr] is None else f"{loss[m, lr]:.3f}")
    return format_table([{"method": NAMES[m], "rate: validation loss": ", ".join(cell(m, lr) for lr in rates),
                          "widened": len(rates) - 3, "picked": f"{picked[m]:.3g}" if m in picked else "-"}
                         for m, rates in grid.items()])


def ladder_runs(rates: dict[str, float], scale: LadderScale) -> list[LadderRun]:
    """Every method at its picked rate, seed by seed (an unfinished ladder still has every method's first seed)."""
    return [LadderRun(m, lr, seed, scale.steps) for seed in scale.seeds for m, lr in rates.items()]


def rate_runs(grid: dict[str, tuple[float, ...]], scale: LadderScale) -> list[LadderRun]:
    return [LadderRun(m, lr, 0, scale.rate_steps, "rates") for m, rates in grid.items() for lr in rates]


def memory_runs(records: list[dict], rates: dict[str, float], scale: LadderScale) -> list[LadderRun]:
    """Each method's first seed again, for its training memory alone (``memory/``), where none of its ladder runs in
    ``records`` holds one: the first ladder measured resident memory, which counted what a build had freed (QLoRA's
    float32 copy) and moved by a tenth from run to run; those files keep their other numbers and lost that one."""
    measured = {r["method"] for r in records if "memory_bytes" in r}
    return [LadderRun(m, lr, scale.seeds[0], scale.steps, "memory") for m, lr in rates.items() if m not in measured]


def run_ladder(profile: str | Profile = "cpu", methods: Sequence[str] = METHODS, max_runs: int | None = None,
               ladder_dir: str | Path = LADDER_DIR, base: nn.Module | None = None, tokenizer=None) -> list[Path]:
    """The rate check, then the ladder, on the profile's base model (SmolLM2-135M in ``cpu``): every missing run,
    at most ``max_runs`` in all. ``base`` and ``tokenizer`` default to :func:`minipeft.base_model.load_base_model`'s."""
    from .base_model import load_base_model

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown ladder method(s) {unknown}: choose from {', '.join(METHODS)}.")
    profile = get_profile(profile)
    scale = ladder_scale(profile)
    if base is None:
        base, tokenizer = load_base_model(profile)
    ctx = LadderContext.create(base, tokenizer, profile.base_model, profile, scale)
    written: list[Path] = []
    while True:  # the rate check, widened after each round until no rate is missing (or max_runs is spent)
        grid = checked_grid(ctx.recipe, load_records(ladder_dir, "rates"), methods, scale.max_widen)
        left = None if max_runs is None else max_runs - len(written)
        new = sweep(rate_runs(grid, scale), ctx, ladder_dir, left)
        written += new
        if not new:
            break
    left = None if max_runs is None else max_runs - len(written)
    rates = picked_rates(load_records(ladder_dir, "rates"), grid)
    if rates:
        print("ladder rates (from the rate check): " + ", ".join(f"{m} {lr:.3g}" for m, lr in rates.items()),
              flush=True)
    written += sweep(ladder_runs(rates, scale), ctx, ladder_dir, left)
    left = None if max_runs is None else max_runs - len(written)
    return written + sweep(memory_runs(load_records(ladder_dir), rates, scale), ctx, ladder_dir, left)


# ----------------------------------------------------------------------------- reading the ladder
NAMES = {"full": "full fine-tuning", "lora": "LoRA", "rslora": "rsLoRA", "dora": "DoRA", "pissa": "PiSSA",
         "qlora": "QLoRA", "prefix": "prefix-tuning", "prompt": "prompt tuning"}


@dataclass(frozen=True)
class Rung:
    """One method's runs, summarised over seeds: means with 95% t-intervals, and its costs."""

    method: str
    lr: float
    ser: Interval
    bleu: Interval
    task_loss: Interval
    trainable: int
    stored: int
    weight_mb: float
    step_seconds: float  # median over the seeds' medians
    memory_mb: float  # the largest over the seeds (nan: not measured)
    rank: int | None = None  # LoRA's r, for the LoRA family

    @property
    def name(self) -> str:
        return NAMES[self.method] + (f" r={self.rank}" if self.rank else "")


def rungs(records: list[dict], memory: list[dict] = ()) -> list[Rung]:
    """The ladder's runs grouped by method (in :data:`METHODS` order); diverged runs count with the worst SER (1).
    Intervals are cut to what a rate (0 to 1) and BLEU (0 to 100) can be: with 3 seeds a t-interval can pass 0.
    A method's memory: the largest of its runs' and its ``memory`` records' (:func:`memory_runs`)."""
    by_method: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_method[r["method"]].append(r)
    peaks: dict[str, list[int]] = defaultdict(list)
    for r in [*records, *memory]:
        if "memory_bytes" in r:
            peaks[r["method"]].append(r["memory_bytes"])
    out = []
    for m in [m for m in METHODS if m in by_method]:
        runs = by_method[m]
        losses = [r["task_loss"] for r in runs if r["task_loss"] is not None]
        steps = sorted(r["median_step_seconds"] for r in runs)
        ser, bleu = t_interval([r["ser"] for r in runs]), t_interval([r["bleu"] for r in runs])
        out.append(Rung(m, runs[0]["lr"], ser.within(0, 1), bleu.within(0, 100),
                        t_interval(losses) if losses else Interval(math.nan, math.nan, math.nan, 0),
                        runs[0]["trainable_params"], runs[0]["stored_params"], runs[0]["weight_bytes"] / 1e6,
                        steps[len(steps) // 2], max(peaks[m], default=math.nan) / 1e6, runs[0].get("r")))
    return out


def format_ladder(table: list[Rung]) -> str:
    """The ladder as a table: one row per method, means with their 95% intervals over the seeds."""
    return format_table([{"method": r.name, "lr": f"{r.lr:.3g}", "seeds": r.ser.n,
                          "SER % [95%]": r.ser.scaled(100).format(".1f"), "BLEU [95%]": r.bleu.format(".1f"),
                          "task loss": r.task_loss.format(".3f"), "trainable": r.trainable,
                          "stored": r.stored, "weights MB": r.weight_mb, "s/step": f"{r.step_seconds:.3f}",
                          "memory MB": r.memory_mb} for r in table])


def advice(table: list[Rung]) -> list[str]:
    """What a learner should pick, read off the table: the method of lowest slot error rate, those whose interval
    reaches it (as good within seed noise), and among those the one that stores least, needs least training memory
    (its measured peak) and steps fastest, naming every method within :data:`COST_TIE` of the least memory or step
    time and every method with the least stored count. A method with one seed has no interval: the best is sought
    among methods with seeds enough for one, the others are named as not compared; when every method has one seed
    the lines say that nothing can be read yet (instead of printing zero-width intervals)."""
    compared = [r for r in table if r.ser.n > 1] or table
    best = _best(table)
    level = [r for r in compared if r.ser.mean == best.ser.mean]  # an exact tie on the means names them all
    names = " and ".join(r.name for r in level)
    seeds = f"{best.ser.n} seed{'s' if best.ser.n > 1 else ''}"
    interval = (f"95% interval {best.ser.low:.1%} to {best.ser.high:.1%}" if best.ser.n > 1 else
                "no 95% interval")
    thin = [r.name for r in table if r.ser.n < 2]
    lines = [f"Fewest slot errors: {best.name}, {best.ser.mean:.1%} ({interval}, {seeds})." if len(level) == 1 else
             f"Fewest slot errors: {names}, {best.ser.mean:.1%} each ({seeds} each)."]
    tied = as_good(table)
    if best.ser.n < 2:
        lines.append(f"Which methods are as good within seed noise cannot be read: that needs an interval, hence at "
                     f"least 2 seeds, and {', '.join(thin)} {'have' if len(thin) > 1 else 'has'} one.")
    else:
        untested = f" Not compared (one seed, no interval): {', '.join(thin)}." if thin else ""
        lines.append(f"As good within seed noise (their intervals reach {best.ser.high:.1%}): "
                     f"{', '.join(r.name for r in tied)}.{untested}")
    if len(tied) == 1:
        return [*lines, f"Its costs: {best.stored:,} stored parameters, {best.weight_mb:.0f} MB of weights, "
                        f"{best.memory_mb:,.0f} MB of training memory at its peak, {best.step_seconds:.3f} s per step.",
                f"Pick {best.name}: no other method is shown as good within seed noise." if best.ser.n > 1 else
                f"No pick from one seed: {best.name} leads on the means only." if len(level) == 1 else
                f"No pick from one seed: {names} tie on the means."]
    small, light, fast = cheapest(tied)
    unmeasured = [r for r in tied if math.isnan(r.memory_mb)]
    memory = ("not measured yet" if not light else
              f"{_names(light)} ({light[0].memory_mb:,.0f} MB at its peak, {light[0].weight_mb:.0f} MB of weights)"
              if len(light) == 1 else f"{_names(light)} (peaks within {COST_TIE:.0%} of {light[0].memory_mb:,.0f} MB)")
    memory += f" (of those measured; not yet: {_names(unmeasured)})" if light and unmeasured else ""
    return [*lines,
            f"Of those, the smallest checkpoint: {_names(small)} ({small[0].stored:,} stored parameters"
            f"{' each' if len(small) > 1 else ''}); the least training memory: {memory}"
            + f"; the fastest step: {_names(fast)} "
            + (f"({fast[0].step_seconds:.3f} s)." if len(fast) == 1 else
               f"(within {COST_TIE:.0%} of {fast[0].step_seconds:.3f} s, which drifts on a shared machine)."),
            f"Pick {_names(small, ' or ')} to store many adapters, "
            + (f"{_names(light, ' or ')} when training memory is short, " if light else "")
            + f"{_names(fast, ' or ')} when training time is."]


def as_good(table: list[Rung]) -> list[Rung]:
    """The method of fewest slot errors (among those with 2 seeds or more, if any) and every method whose interval
    reaches its upper end: as good within seed noise. With one seed there is no interval: the best alone."""
    best = _best(table)
    return [best] if best.ser.n < 2 else [r for r in table if r.ser.n > 1 and r.ser.low <= best.ser.high]


def _best(table: list[Rung]) -> Rung:
    """The rung of fewest mean slot errors among those with an interval (2 seeds or more), else among all."""
    return min([r for r in table if r.ser.n > 1] or table, key=lambda r: r.ser.mean)


def cheapest(table: list[Rung]) -> tuple[list[Rung], list[Rung], list[Rung]]:
    """Of ``table``, the methods that store least (exact counts), need least training memory and step fastest
    (within :data:`COST_TIE` of the least), each list the least first; memory only among the measured ones."""
    measured = [r for r in table if not math.isnan(r.memory_mb)]  # a ladder whose memory runs are not all done
    return (_least(table, lambda r: r.stored, 0), _least(measured, lambda r: r.memory_mb) if measured else [],
            _least(table, lambda r: r.step_seconds))


COST_TIE = 0.10  # peaks and step times within 10% of the least are not told apart (step time drifts on a VM; for
#                   memory, measured to the byte, a choice: a tenth more rarely decides what fits)


def _least(table: list[Rung], cost: Callable[[Rung], float], tie: float = COST_TIE) -> list[Rung]:
    """The rungs whose ``cost`` is within ``tie`` (a fraction) of the least, the least first."""
    least = min(cost(r) for r in table)
    return sorted([r for r in table if cost(r) <= least * (1 + tie)], key=cost)


def _names(table: list[Rung], last: str = " and ") -> str:
    names = [r.name for r in table]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + last + names[-1]
