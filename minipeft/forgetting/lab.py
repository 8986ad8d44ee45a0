"""The forgetting lab: every method at several learning rates and seeds, one JSON file per run.

Each run trains one method at one rate from one seed (its own data order and its own initialisation) on the
restaurant task, then measures what the field measures:

- **learning**: validation cross-entropy on the task (``task_loss``) and the slot error rate of its sentences;
- **forgetting**: the rise of mean cross-entropy, in nats per token, on general text, adapter on (:data:`TEXTS`):
  modern English prose (the Python reference documentation that ships inside CPython, ``pydoc_data.topics``: a
  register a web-trained model knows, present offline on every machine that runs the course) and, as a second,
  older register, the held-out Shakespeare;
- **controls**: the base model back exactly with the adapter off (``off_max_abs_logit_diff``);
- **weight space** (full fine-tuning and LoRA, on every layer's query and value projections, the matrices both
  change): ``||dW||_F / ||W0||_F``, the effective rank of dW, and Shuttleworth et al.'s intruder dimensions.

LoRA's alpha follows rsLoRA (Kalajdzievski 2023): ``alpha = ALPHA_RS * sqrt(r)``, so the update is scaled by
``alpha / r = ALPHA_RS / sqrt(r)``. With Hu et al.'s fixed alpha the scale ``alpha / r`` shrinks 64-fold from r=1 to
r=64 and a rank comparison becomes a learning-rate comparison in disguise; rsLoRA shows ``1 / sqrt(r)`` keeps the
update's size stable across ranks, so one rate grid serves every rank. ``ALPHA_RS = 8 * sqrt(2)`` gives r=2 the
course recipe's scale (alpha 16 at r=2: 8).
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import torch
import transformers
from torch import nn
from transformers.pytorch_utils import Conv1D

from ..data import load_restaurant, make_loader, prompt_text
from ..decode import generate_texts
from ..lora import disable_lora, lora_layers
from ..memory import PeakEstimate, training_peak
from ..metrics import slot_error_rate
from ..params import gpt2_config, gpt2_parameter_count, lora_parameter_count, prefix_parameter_count
from ..paths import REPO_ROOT
from ..profiles import PROFILES, Profile, get_profile
from ..rank import effective_rank
from ..recipes import LORA_TARGETS, build
from ..seeding import seed_everything
from ..train import evaluate_loss, model_device, train
from .general import mean_nats, text_blocks

R = TypeVar("R")  # one run of a sweep: a LabRun here, a LadderRun in minipeft.ladder

LAB_DIR = REPO_ROOT / "results" / "forgetting-lab"
ALPHA_RS = 8 * math.sqrt(2)
BATCH = 8
PREFIX_MLP = 512  # the prefix's reparameterisation P = MLP(P'), Li & Liang's width
INTRUDER_TOP_K, INTRUDER_EPS = 10, 0.5  # Shuttleworth et al. 2024: top-k singular vectors, cosine threshold
PROMPT = "Write one sentence about the restaurant below.\n"  # the prompt control's instruction


@dataclass(frozen=True)
class LabScale:
    """How big a run is: training steps, validation examples, test MRs scored, general-text blocks per text and
    their length, and the length of generated sentences."""

    steps: int
    n_val: int
    n_mrs: int
    texts: dict[str, int]  # general text -> number of blocks of block_len tokens
    block_len: int
    max_new_tokens: int
    max_len: int = 512  # longest task example, in tokens (longer ones are dropped)


# The committed sweep's scale (SmolLM2-135M, 2 CPU cores): 20,480 tokens of English and 4,096 of Shakespeare.
FULL_SCALE = LabScale(steps=60, n_val=64, n_mrs=32, texts={"english": 80, "shakespeare": 16}, block_len=256,
                      max_new_tokens=40)
# The ci profile's smoke test on the mini GPT-2: every line runs, no number is a result.
CI_SCALE = LabScale(steps=6, n_val=16, n_mrs=4, texts={"english": 4, "shakespeare": 2}, block_len=64,
                    max_new_tokens=8, max_len=128)
STEPS, TEXTS = FULL_SCALE.steps, FULL_SCALE.texts


def lab_scale(profile: str | Profile | None = None) -> LabScale:
    """:data:`CI_SCALE` for the ``ci`` profile and dry runs, else :data:`FULL_SCALE` (the committed sweep's)."""
    profile = get_profile(profile)
    return CI_SCALE if profile.name == "ci" or profile.dry_run else FULL_SCALE
# Four rates a half-decade apart (31.6x) per method, around each method's best rate from scripts/lr_check.py.
RATES = {"full": (3.16e-5, 1e-4, 3.16e-4, 1e-3), "prefix": (3.16e-4, 1e-3, 3.16e-3, 1e-2),
         "lora": (1e-3, 3.16e-3, 1e-2, 3.16e-2)}
MAIN_SEEDS, RANK_SEEDS = range(5), range(3)
RANK_SETTINGS = ((1, "qv"), (64, "qv"), (1, "all"), (8, "all"), (64, "all"))  # r=8 q,v is the main grid's LoRA
RANK_RATES = (3.16e-3, 1e-2)


@dataclass(frozen=True)
class LabRun:
    """One run: a method (``full``, ``lora``, ``prefix``) with its size, at one rate, from one seed."""

    method: str
    lr: float
    seed: int
    r: int | None = None  # LoRA only
    targets: str | None = None  # LoRA only: "qv" or "all"
    length: int | None = None  # prefix only (P, with the MLP reparameterisation of width PREFIX_MLP)
    steps: int = STEPS

    @property
    def alpha(self) -> float | None:
        return ALPHA_RS * math.sqrt(self.r) if self.method == "lora" else None

    @property
    def name(self) -> str:
        size = {"full": "", "lora": f"-r{self.r}-{self.targets}", "prefix": f"-p{self.length}"}[self.method]
        return f"{self.method}{size}-lr{self.lr:.3g}-seed{self.seed}-steps{self.steps}"

    def build(self, base: nn.Module) -> nn.Module:
        """The model to train, on a copy of ``base``; the adapter's initial draw comes from this run's seed."""
        seed_everything(self.seed)
        return build(self.method, copy.deepcopy(base), r=self.r, alpha=self.alpha, targets=self.targets,
                     prefix_len=self.length, mlp_hidden=PREFIX_MLP)


def main_grid() -> list[LabRun]:
    """3 methods x 4 rates x 5 seeds, seed by seed (an unfinished sweep still has whole frontiers)."""
    size = {"full": {}, "lora": {"r": 8, "targets": "qv"}, "prefix": {"length": 10}}
    return [LabRun(m, lr, seed, **size[m]) for seed in MAIN_SEEDS for m in RATES for lr in RATES[m]]


def rank_grid() -> list[LabRun]:
    """LoRA at ranks 1, 8, 64 on q,v and on every projection, two rates, 3 seeds."""
    return [LabRun("lora", lr, seed, r=r, targets=t) for seed in RANK_SEEDS for r, t in RANK_SETTINGS
            for lr in RANK_RATES]


def gpt2_trainable(run: LabRun, config) -> int:
    """The parameters ``run`` trains on a GPT-2 of ``config``, by arithmetic (:mod:`minipeft.params`)."""
    if run.method == "full":
        return gpt2_parameter_count(config)
    if run.method == "prefix":
        return prefix_parameter_count(config, run.length, PREFIX_MLP)
    targets = LORA_TARGETS["gpt2"][run.targets]
    return lora_parameter_count(config, run.r, ("q", "v") if targets.get("qv_only") else tuple(targets["targets"]))


def notebook06_gpu_peaks() -> list[PeakEstimate]:
    """The estimated T4 peak of notebook 06's live runs in the ``gpu`` profile, one per setting of the main grid
    (the runs it trains there): GPT-2 small at the lab's batch of :data:`BATCH`, each batch as wide as the longest
    example the lab keeps (``max_len`` of :data:`FULL_SCALE`: batches are padded to their longest example, so this is
    an upper bound). Beside each run notebook 06 keeps two models on the GPU: the untuned one and section 3's
    untrained prefix."""
    gpu = PROFILES["gpu"]
    cfg = gpt2_config(gpu.base_model)
    n = gpt2_parameter_count(cfg)
    settings = {setting_name(asdict(run)): run for run in main_grid()}  # one run per setting: rates, seeds alike
    return [training_peak(cfg, gpt2_trainable(run, cfg), 0 if run.method == "full" else n, batch_size=BATCH,
                          seq_len=FULL_SCALE.max_len, kept_models=2,
                          label=f"notebook 06, {name} (the untuned model and the untrained prefix kept)")
            for name, run in settings.items()]


# ----------------------------------------------------------------------------- what a run measures
def general_blocks(tokenizer, scale: LabScale = FULL_SCALE) -> dict[str, torch.Tensor]:
    """The general texts of ``scale`` as token blocks: modern English prose and the held-out Shakespeare."""
    from pydoc_data.topics import topics

    from ..corpus import heldout_text

    texts = {"english": "\n\n".join(topics[k] for k in sorted(topics)), "shakespeare": heldout_text()}
    return {name: text_blocks(texts[name], tokenizer, scale.block_len, n) for name, n in scale.texts.items()}


def prompted_nats(model: nn.Module, tokenizer, blocks: torch.Tensor, mrs: list[str]) -> float:
    """The prompt control: mean cross-entropy on the same tokens as :func:`mean_nats`, each block preceded by
    :data:`PROMPT` and an MR (the first block token, unscored without a prompt, stays unscored)."""
    def batches() -> Iterator[dict[str, torch.Tensor]]:
        for i, ids in enumerate(blocks):
            prompt = torch.tensor(tokenizer(PROMPT + prompt_text(mrs[i % len(mrs)]))["input_ids"])
            labels = torch.cat([torch.full((len(prompt) + 1,), -100), ids[1:]])
            yield {"input_ids": torch.cat([prompt, ids])[None], "attention_mask": torch.ones(1, len(prompt) + len(ids),
                   dtype=torch.long), "labels": labels[None]}
    return evaluate_loss(model, batches())


def qv_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every layer's query and value weight as the model uses it now (a LoRA update included), as (out, in):
    Llama's ``q_proj`` and ``v_proj``, or the q and v thirds of GPT-2's fused ``c_attn``."""
    adapted = lora_layers(model)
    out = {}
    for name, module in model.named_modules():
        if not name.endswith(("q_proj", "v_proj", "c_attn")):
            continue
        layer = adapted[name].base if name in adapted else module
        if not isinstance(layer, nn.Linear | Conv1D):
            continue
        w = layer.weight + adapted[name].delta_weight() if name in adapted else layer.weight
        w = (w.T if isinstance(layer, Conv1D) else w).detach().float()  # Conv1D stores (in, out)
        if name.endswith("c_attn"):
            q, _, v = w.chunk(3)
            out[f"{name}.q"], out[f"{name}.v"] = q, v
        else:
            out[name] = w
    return out


def intruders(w0: torch.Tensor, w: torch.Tensor, k: int = INTRUDER_TOP_K, eps: float = INTRUDER_EPS) -> int:
    """Shuttleworth et al.'s intruder dimensions: of ``w``'s top ``k`` left singular vectors, how many have cosine
    similarity below ``eps`` with every left singular vector of ``w0``."""
    u0 = torch.linalg.svd(w0.double(), full_matrices=False).U
    u = torch.linalg.svd(w.double(), full_matrices=False).U[:, :k]
    return int(((u0.T @ u).abs().max(dim=0).values < eps).sum())


def weight_view(base: nn.Module, model: nn.Module) -> dict[str, float]:
    """``dw_rel_norm``, mean ``dw_effective_rank`` and summed ``intruders`` over the query and value weights."""
    before, after = qv_weights(base), qv_weights(model)
    if after.keys() != before.keys():
        raise RuntimeError(f"query/value weights differ in name: {sorted(after.keys() ^ before.keys())[:3]}")
    deltas = {n: after[n] - before[n] for n in before}
    norm = math.sqrt(sum(d.square().sum().item() for d in deltas.values()))
    return {"dw_rel_norm": norm / math.sqrt(sum(w.square().sum().item() for w in before.values())),
            "dw_effective_rank": sum(effective_rank(d) for d in deltas.values()) / len(deltas),
            "intruders": sum(intruders(before[n], after[n]) for n in before)}


def adapter_off_diff(base: nn.Module, model: nn.Module, ids: torch.Tensor, method: str) -> float | None:
    """Max |logit difference| from the base model with the adapter switched off (None for full fine-tuning)."""
    if method == "full":
        return None
    ids = ids.to(model_device(base))
    with torch.no_grad():
        reference = base(ids).logits
        if method == "lora":
            with disable_lora(model):
                return (model(ids).logits - reference).abs().max().item()
        return (model.base(ids).logits - reference).abs().max().item()


def code_version() -> dict:
    """The commit this process runs, and whether ``minipeft/`` differed from it: read once, when a sweep starts, so
    a file written later still names the code that made it, whatever was committed meanwhile."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", "minipeft"))}


def cpu_model() -> str:
    """The processor's model name (Linux: /proc/cpuinfo) and the vector instructions torch's CPU kernels use: two
    machines that differ here can round floating-point sums differently, so the same run repeats only to rounding."""
    info = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (info.read_text().splitlines() if info.is_file() else [])
             if line.startswith("model name")]
    return f"{names[0] if names else platform.processor() or 'unknown'}, {torch.backends.cpu.get_cpu_capability()}"


def provenance(code: dict, wall_seconds: float) -> dict:
    """Where and when a result was made: the code (:func:`code_version`), machine and its processor, versions, date,
    wall seconds."""
    return {**code, "machine": f"{platform.machine()} {platform.processor() or platform.node()}, {os.cpu_count()} "
                               f"cores, {torch.get_num_threads()} torch threads", "cpu": cpu_model(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "wall_seconds": round(wall_seconds, 1)}


@dataclass
class LabContext:
    """What every run shares: the base model, its tokenizer, the task data and the general texts."""

    base: nn.Module
    tokenizer: object
    base_name: str
    train_pairs: list
    val_loader: object
    mrs: list[str]
    blocks: dict[str, torch.Tensor]
    before: dict[str, float]
    code: dict
    scale: LabScale = FULL_SCALE

    @classmethod
    def create(cls, base: nn.Module, tokenizer, base_name: str, profile, scale: LabScale = FULL_SCALE
               ) -> LabContext:
        val = load_restaurant("validation", profile)[:scale.n_val]
        mrs = list(dict.fromkeys(mr for mr, _ in load_restaurant("test", profile)))[:scale.n_mrs]
        blocks = general_blocks(tokenizer, scale)
        before = {name: mean_nats(base, b) for name, b in blocks.items()}
        val_loader = make_loader(val, tokenizer, BATCH, scale.max_len, shuffle=False, drop_long=True)
        return cls(base, tokenizer, base_name, load_restaurant("train", profile), val_loader, mrs, blocks, before,
                   code_version(), scale)


def run_path(run: LabRun, lab_dir: str | Path = LAB_DIR) -> Path:
    return Path(lab_dir) / f"{run.name}.json"


def measure(run: LabRun, ctx: LabContext) -> dict:
    """Train ``run`` and measure it; returns the record that :func:`sweep` writes."""
    start = time.perf_counter()
    loader = make_loader(ctx.train_pairs, ctx.tokenizer, BATCH, ctx.scale.max_len, seed=run.seed, drop_long=True)
    model = run.build(ctx.base)
    history = train(model, loader, steps=run.steps, lr=run.lr, warmup_steps=run.steps // 10, seed=run.seed,
                    progress=False)
    after = {name: mean_nats(model, b) for name, b in ctx.blocks.items()}
    texts = generate_texts(model, ctx.tokenizer, ctx.mrs, max_new_tokens=ctx.scale.max_new_tokens, progress=False)
    record = {**asdict(run), "alpha": run.alpha, "base_model": ctx.base_name,
              "task_loss": evaluate_loss(model, ctx.val_loader), "final_train_loss": history.train_loss[-1],
              "seconds_per_step": history.median_seconds_per_step,
              "ser": slot_error_rate(ctx.mrs, texts), "sample": texts[0],
              "general_nats_before": ctx.before, "general_nats_after": after,
              "off_max_abs_logit_diff": adapter_off_diff(ctx.base, model, ctx.blocks["english"][:2], run.method)}
    if run.method != "prefix":
        record.update(weight_view(ctx.base, model))
    record["provenance"] = provenance(ctx.code, time.perf_counter() - start)
    return record


def write_json(path: Path, record: dict) -> None:
    """Write ``record`` whole or not at all (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)


def load_runs(lab_dir: Path = LAB_DIR) -> list[dict]:
    """Every finished run's record, sorted by file name."""
    return [json.loads(p.read_text()) for p in sorted(Path(lab_dir).glob("*-seed*.json"))]


def run_missing(runs: Sequence[R], path_of: Callable[[R], Path], measure_one: Callable[[R], dict],
                summary: Callable[[R, dict], str], max_runs: int | None = None) -> list[Path]:
    """Measure every run whose file (``path_of(run)``) does not exist yet, at most ``max_runs``, one JSON file each,
    printing ``summary(run, record)``. Each file is looked for just before its run, so a run another sweep finished
    meanwhile is not done twice. The loop of every resumable sweep (this lab, the ladder, real E2E)."""
    written: list[Path] = []
    for run in runs:
        path = path_of(run)
        if path.is_file() or (max_runs is not None and len(written) >= max_runs):
            continue
        record = measure_one(run)
        write_json(path, record)
        written.append(path)
        print(f"[{len(written)}] {summary(run, record)}, {record['provenance']['wall_seconds']:.0f} s", flush=True)
    return written


def sweep(runs: list[LabRun], ctx: LabContext, lab_dir: str | Path = LAB_DIR, max_runs: int | None = None
          ) -> list[Path]:
    """Measure every run of ``runs`` whose file is not in ``lab_dir`` yet (at most ``max_runs``), one file each."""
    def summary(run: LabRun, record: dict) -> str:
        return (f"{run.name}: task loss {record['task_loss']:.3f}, SER {record['ser']:.1%}, "
                f"forgetting {forgetting_nats(record):+.3f} nats (English)")
    return run_missing(runs, lambda run: run_path(run, lab_dir), lambda run: measure(run, ctx), summary, max_runs)


def prompt_control(ctx: LabContext, lab_dir: Path = LAB_DIR) -> dict:
    """The prompt control, measured once: the base model's cross-entropy on the general texts with :data:`PROMPT`
    and an MR in front of each block, against the same tokens without them."""
    start = time.perf_counter()
    record = {"prompt": PROMPT, "base_model": ctx.base_name, "general_nats_before": ctx.before,
              "general_nats_prompted": {name: prompted_nats(ctx.base, ctx.tokenizer, b, ctx.mrs)
                                        for name, b in ctx.blocks.items()}}
    record["provenance"] = provenance(ctx.code, time.perf_counter() - start)
    write_json(Path(lab_dir) / "control-prompt.json", record)
    return record


GRIDS = {"main": main_grid, "rank": rank_grid}


def run_sweep(grids: tuple[str, ...] = ("main", "rank"), max_runs: int | None = None, lab_dir: Path = LAB_DIR,
              control: bool = True) -> list[Path]:
    """The lab on SmolLM2-135M (the ``cpu`` profile's model): the prompt control once, then every missing run."""
    from ..base_model import load_base_model

    unknown = [g for g in grids if g not in GRIDS]
    if unknown:
        raise ValueError(f"Unknown grid(s) {unknown}: choose from {sorted(GRIDS)}.")
    runs = [run for g in grids for run in GRIDS[g]()]
    missing = [run for run in runs if not run_path(run, lab_dir).is_file()]
    print(f"forgetting lab: {len(runs) - len(missing)} of {len(runs)} runs in {lab_dir}; "
          f"{min(len(missing), max_runs or len(missing))} to do now", flush=True)
    if not missing and not (control and not (Path(lab_dir) / "control-prompt.json").is_file()):
        return []
    base, tokenizer = load_base_model("cpu")
    ctx = LabContext.create(base, tokenizer, "smollm2-135m", "cpu")
    if control and not (Path(lab_dir) / "control-prompt.json").is_file():
        prompt_control(ctx, lab_dir)
    return sweep(runs, ctx, lab_dir, max_runs)


def forgetting_nats(record: dict, text: str = "english") -> float:
    """How far a run raised the base model's mean cross-entropy on ``text`` (nats per token; up = forgot more)."""
    return record["general_nats_after"][text] - record["general_nats_before"][text]


def setting_name(record: dict) -> str:
    """A run's method and size, whatever its rate and seed: ``full``, ``lora r=8 qv``, ``prefix P=10``."""
    method = record["method"]
    if method == "lora":
        return f"lora r={record['r']} {record['targets']}"
    return f"prefix P={record['length']}" if method == "prefix" else method


def format_runs(records: list[dict]) -> str:
    """One line per run: setting, rate, seed, task loss, slot errors and forgetting on each general text."""
    lines = [f"{'setting':<16} {'lr':>8} {'seed':>4} {'task loss':>9} {'SER %':>6} "
             + " ".join(f"{'forgot ' + t:>17}" for t in TEXTS)]
    for r in sorted(records, key=lambda r: (setting_name(r), r["lr"], r["seed"])):
        lines.append(f"{setting_name(r):<16} {r['lr']:>8.3g} {r['seed']:>4} {r['task_loss']:>9.3f} "
                     f"{100 * r['ser']:>6.1f} " + " ".join(f"{forgetting_nats(r, t):>+17.3f}" for t in TEXTS))
    return "\n".join(lines)
