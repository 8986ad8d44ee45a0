"""One table of training recipes: per base model, each method's learning rate and size settings.

The notebooks, the forgetting lab and the scripts read it, so a learning rate lives in one place, and
:func:`build` is the one place that turns a method's name into the model to train. Each recipe's ``note`` says
where its rates come from; ``scripts/lr_check.py`` tries rates around them on the base model:

    recipe = recipe_for(model)                  # by the model's name, else by its family
    recipe.lr["LoRA"], recipe.lora              # 9e-3, {"targets": ["q_proj", "v_proj"], "r": 2, "alpha": 16}
    recipe.rate("LoRA", notebook="03")          # a build notebook's own rate for its short runs, else lr["LoRA"]
    lora_targets(model, "qv")                   # the paper's q-and-v setting in this model's layer names
    model = build("LoRA", base, recipe, r=16)   # the model to train: apply_lora with the recipe's settings, r=16
    model = build("qlora", base)                # LoRA's descendants too: rslora, dora, pissa, qlora, prompt
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from .families import model_family
from .lora import apply_lora
from .memory import PeakEstimate, training_peak
from .params import gpt2_config, gpt2_parameter_count, lora_parameter_count, prefix_parameter_count
from .prefix import PrefixTuningModel, PromptTuningModel
from .profiles import PROFILES
from .quant import quantize_model

METHODS = ("full fine-tuning", "prefix-tuning", "LoRA")  # notebook 05's three, each with a rate in every recipe
# Notebook 08's: LoRA's descendants (the recipe's LoRA settings plus one switch; QLoRA: LoRA on an NF4 base) and
# prompt tuning (a soft prompt of prompt_len positions). A recipe's lr may name their rates; none does yet.
FAMILY = ("rsLoRA", "DoRA", "PiSSA", "QLoRA", "prompt-tuning")
SHORT_NAMES = {"full": "full fine-tuning", "prefix": "prefix-tuning", "lora": "LoRA",  # as scripts and the lab say
               "rslora": "rsLoRA", "dora": "DoRA", "pissa": "PiSSA", "qlora": "QLoRA", "prompt": "prompt-tuning"}
LORA_SWITCHES = {"LoRA": {}, "rsLoRA": {"use_rslora": True}, "DoRA": {"use_dora": True},
                 "PiSSA": {"init_lora_weights": "pissa"}, "QLoRA": {}}  # apply_lora's keywords per LoRA method

# The attention query and value projections, and every projection of a block, in each family's names.
# GPT-2 fuses q|k|v into one Conv1D (`c_attn`), so its q-and-v setting is `c_attn` with `qv_only=True`.
LORA_TARGETS = {
    "gpt2": {"qv": {"targets": ["c_attn"], "qv_only": True}, "all": {"targets": ["c_attn", "c_proj", "c_fc"]}},
    "llama": {"qv": {"targets": ["q_proj", "v_proj"]},
              "all": {"targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}},
}


@dataclass(frozen=True)
class Recipe:
    """How notebook 05 trains each method on one base model."""

    lr: dict[str, float]  # per method in METHODS
    lora: dict = field(default_factory=dict)  # keyword arguments of apply_lora
    prefix_len: int = 10  # Li & Liang's length for E2E
    prompt_len: int = 10  # prompt tuning's soft-prompt positions (as notebook 02's P)
    mlp_hidden: int = 512  # their reparameterisation P = MLP(P')
    note: str = ""  # where the numbers come from
    lessons: dict[str, dict[str, float]] = field(default_factory=dict)  # {notebook: {method: rate}} of 01-04

    def rate(self, method: str, notebook: str | None = None) -> float:
        """The learning rate of ``method``: a build notebook's own (``lessons``), else notebook 05's (``lr``)."""
        lesson = self.lessons.get(notebook, {})
        if method in lesson:
            return lesson[method]
        name = method_name(method)
        if name not in self.lr:
            raise ValueError(f"No learning rate for {name!r} in this recipe (it has {', '.join(self.lr)}); no "
                             f"lesson names one either. Measure one with a rate check (scripts/lr_check.py, or the "
                             f"ladder's, minipeft.ladder) and pass it to train(..., lr=...).")
        return self.lr[name]


@dataclass(frozen=True)
class Schedule:
    """A paper's training schedule for one method (``scripts/replicate_paper.py``); the rate is the recipe's."""

    batch_size: int
    epochs: int
    num_beams: int
    warmup_steps: int = 0
    weight_decay: float = 0.0
    label_smoothing: float = 0.0


RECIPES: dict[str, Recipe] = {
    "mini-gpt2": Recipe(
        lr={"full fine-tuning": 5e-4, "prefix-tuning": 1e-2, "LoRA": 1e-2},
        lora={"targets": ["c_attn", "c_proj", "c_fc"], "r": 16, "alpha": 32},
        note="swept on the mini GPT-2 (600 steps, batch 16); LoRA on every layer, since attention alone cannot "
             "learn the task on a model that does not copy (notebook 05, section 7)",
        lessons={"01": {"full fine-tuning": 1e-3}, "02": {"prompt-tuning": 1e-1, "prefix-tuning": 1e-2},
                 "03": {"LoRA": 5e-3}, "04": {"full fine-tuning": 5e-4, "LoRA": 5e-3}}),
    "smollm2-135m": Recipe(
        lr={"full fine-tuning": 1.5e-4, "prefix-tuning": 3e-3, "LoRA": 9e-3},
        lora={"targets": ["q_proj", "v_proj"], "r": 2, "alpha": 16},
        note="scripts/lr_check.py, 30 steps of batch 8, validation loss (untuned 2.239): full 1.7e-5 0.796, "
             "5e-5 0.515, 1.5e-4 0.431, 4.5e-4 0.411; prefix 1e-3 0.594, 3e-3 0.553, 9e-3 5.07 (diverged); "
             "LoRA 1e-3 0.891, 3e-3 0.586, 9e-3 0.503, 2.7e-2 0.992. Each method takes its best rate, or the "
             "smaller of two within 0.03 nats (full: 1.5e-4, as the longer runs move further from the base). Prompt "
             "tuning (notebook 02 only), 30 steps of batch 8, one CPU thread, 6 December: 3e-2 1.294, 1e-1 1.261",
        lessons={"02": {"prompt-tuning": 1e-1}}),
    "gpt2": Recipe(
        lr={"full fine-tuning": 1e-4, "prefix-tuning": 5e-4, "LoRA": 5e-4},
        lora={"targets": ["c_attn"], "r": 4, "alpha": 32, "qv_only": True},
        note="the LoRA paper's E2E setting (q and v, r=4, alpha=32); not measured here (no GPU)",
        lessons={"02": {"prompt-tuning": 1e-1, "prefix-tuning": 1e-2}, "03": {"LoRA": 2e-4},
                 "04": {"full fine-tuning": 5e-4, "LoRA": 5e-3}}),
    "papers-gpt2-medium": Recipe(
        lr={"full fine-tuning": 5e-5, "prefix-tuning": 5e-5, "LoRA": 2e-4},
        lora={"targets": ["c_attn"], "r": 4, "alpha": 32, "qv_only": True, "dropout": 0.1},
        note="the papers' E2E recipes for GPT-2 Medium (scripts/replicate_paper.py): LoRA (Hu et al., 2021) q and v, "
             "r=4, alpha=32, dropout 0.1, lr 2e-4; prefix (Li & Liang, 2021) P=10, MLP 512, lr 5e-5; full fine-tuning "
             "lr 5e-5 (our choice: the papers' FT rows report 68.2 and 68.8 BLEU)"),
}
# The papers' schedules (scripts/replicate_paper.py), beside the papers-gpt2-medium recipe's rates; see
# ../shared/reference/anchors.md. The course's short runs do not use them.
PAPER_SCHEDULES = {
    "LoRA": Schedule(batch_size=8, epochs=5, num_beams=10, warmup_steps=500, weight_decay=0.01, label_smoothing=0.1),
    "prefix-tuning": Schedule(batch_size=5, epochs=10, num_beams=5),
    "full fine-tuning": Schedule(batch_size=8, epochs=5, num_beams=10),
}
FAMILY_DEFAULT = {"gpt2": "gpt2", "llama": "smollm2-135m"}  # recipes for a model the table does not name


def recipe_for(model: nn.Module) -> Recipe:
    """The recipe for ``model``: by its short name (``mini-gpt2``, ``smollm2-135m``, ``gpt2``), else its family's."""
    name = getattr(model, "name_or_path", "")
    return RECIPES[name] if name in RECIPES else RECIPES[FAMILY_DEFAULT[model_family(model)]]


def lora_targets(model: nn.Module, which: str = "qv") -> dict:
    """``apply_lora`` keywords for ``which`` = ``qv`` (query and value) or ``all`` (every projection) on ``model``."""
    options = LORA_TARGETS[model_family(model)]
    if which not in options:
        raise ValueError(f"Unknown LoRA targets {which!r}: use one of {sorted(options)}.")
    return dict(options[which])


def method_name(method: str) -> str:
    """``method`` as :data:`METHODS` and :data:`FAMILY` spell it: ``"lora"`` -> ``"LoRA"``, ``"qlora"`` ->
    ``"QLoRA"``; a name of either is returned as it is."""
    if method in METHODS or method in FAMILY:
        return method
    if method in SHORT_NAMES:
        return SHORT_NAMES[method]
    raise ValueError(f"Unknown method {method!r}: use one of {', '.join(METHODS + FAMILY)} (or "
                     f"{', '.join(SHORT_NAMES)}).")


def build(method: str, model: nn.Module, recipe: Recipe | None = None, *, r: int | None = None,
          alpha: float | None = None, targets: str | list[str] | None = None, prefix_len: int | None = None,
          mlp_hidden: int | None = None, prompt_len: int | None = None) -> nn.Module:
    """The model to train for ``method`` on ``model`` (changed in place, as ``apply_lora`` changes it), set up by
    ``recipe`` (default: :func:`recipe_for` ``model``), with keyword overrides for what an experiment varies.

    ``full fine-tuning``: every parameter trainable. ``LoRA``: ``apply_lora`` with the recipe's keywords; ``targets``
    is ``"qv"``/``"all"`` (:func:`lora_targets`) or a list of layer names. ``rsLoRA``, ``DoRA``, ``PiSSA``: the same
    with ``use_rslora=True``, ``use_dora=True``, ``init_lora_weights="pissa"``; ``QLoRA``: every linear layer but
    ``lm_head`` quantised to NF4 (:func:`minipeft.quant.quantize_model`), then LoRA. ``prefix-tuning``: a
    ``PrefixTuningModel`` of ``prefix_len`` positions with an MLP of ``mlp_hidden``; ``prompt-tuning``: a
    ``PromptTuningModel`` of ``prompt_len`` positions. The short names (:data:`SHORT_NAMES`) work too. Bad input
    raises before ``model`` changes.
    """
    from .lora import _check_hyperparameters, _find_targets  # QLoRA checks LoRA's settings before quantising

    method = method_name(method)
    if method == "full fine-tuning":
        return model.requires_grad_(True)
    recipe = recipe or recipe_for(model)
    if method == "prefix-tuning":
        return PrefixTuningModel(model, prefix_len=recipe.prefix_len if prefix_len is None else prefix_len,
                                 mlp_hidden=recipe.mlp_hidden if mlp_hidden is None else mlp_hidden)
    if method == "prompt-tuning":
        return PromptTuningModel(model, prompt_len=recipe.prompt_len if prompt_len is None else prompt_len)
    settings = dict(recipe.lora)
    if targets is not None:
        settings = {k: v for k, v in settings.items() if k not in ("targets", "qv_only")}
        settings |= lora_targets(model, targets) if isinstance(targets, str) else {"targets": list(targets)}
    settings |= {k: v for k, v in (("r", r), ("alpha", alpha)) if v is not None} | LORA_SWITCHES[method]
    if method == "QLoRA":
        _check_hyperparameters(settings.get("r", 8), settings.get("alpha", 16.0), settings.get("dropout", 0.0))
        targets = settings.get("targets", ("c_attn",))
        _find_targets(model, [targets] if isinstance(targets, str) else targets, settings.get("qv_only", False))
        quantize_model(model)
    return apply_lora(model, **settings)


def notebook05_gpu_peaks() -> list[PeakEstimate]:
    """The estimated T4 peak of notebook 05's three training runs in the ``gpu`` profile: GPT-2 small at the
    profile's batch size and sequence length, each method sized by its recipe, the untuned model kept beside it."""
    gpu = PROFILES["gpu"]
    cfg, recipe = gpt2_config(gpu.base_model), RECIPES[gpu.base_model]
    n, sizes = gpt2_parameter_count(cfg), dict(batch_size=gpu.batch_size, seq_len=gpu.seq_len, kept_models=1)
    r, targets = recipe.lora["r"], ("q", "v") if recipe.lora.get("qv_only") else tuple(recipe.lora["targets"])
    return [
        training_peak(cfg, n, 0, label="notebook 05, full fine-tuning", **sizes),
        training_peak(cfg, prefix_parameter_count(cfg, recipe.prefix_len, recipe.mlp_hidden), n,
                      label=f"notebook 05, prefix-tuning (P={recipe.prefix_len}, MLP {recipe.mlp_hidden})", **sizes),
        training_peak(cfg, lora_parameter_count(cfg, r, targets), n,
                      label=f"notebook 05, LoRA ({', '.join(targets)}, r={r})", **sizes),
    ]
