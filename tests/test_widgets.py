"""The memory calculator widget, driven as a learner would: change values, watch bars and text follow."""

import matplotlib
import pytest

matplotlib.use("Agg")

from minipeft.memory import GB, method_memory  # noqa: E402
from minipeft.params import model_sizes  # noqa: E402
from minipeft.widgets import MemoryCalculator  # noqa: E402

PNG = b"\x89PNG"


def _column_heights(calc: MemoryCalculator) -> list[float]:
    """Total height of each stacked bar drawn on the calculator's axes, left to right."""
    totals: dict[float, float] = {}
    for patch in calc.ax.patches:
        x = round(patch.get_x() + patch.get_width() / 2, 6)
        totals[x] = totals.get(x, 0.0) + patch.get_height()
    return [totals[x] for x in sorted(totals)]


@pytest.fixture(scope="module")
def calc():
    return MemoryCalculator()


def test_initial_state_draws_full_and_lora(calc):
    size = model_sizes()["GPT-2 medium"]
    full = method_memory(size, "full", "fp32")[1].total / GB
    lora = method_memory(size, "lora", "fp32", r=4)[1].total / GB
    assert _column_heights(calc) == pytest.approx([full, lora])
    assert [t.get_text() for t in calc.ax.get_xticklabels()] == ["full fine-tuning", "LoRA r=4"]
    assert bytes(calc.image.value).startswith(PNG)
    assert f"{size.lora_params(4):,} trainable" in calc.summary.value
    assert calc.prefix_length.disabled and not calc.rank.disabled


def test_changing_each_control_updates_bars_and_text(calc):
    before = calc.image.value
    calc.model.value = "GPT-2 small"
    assert "GPT-2 small" in calc.summary.value and calc.image.value != before
    assert calc.totals["full fine-tuning"] == pytest.approx(1.991036928)  # 124,439,808 x 16 bytes (w, grad, Adam)

    calc.precision.value = "bf16"
    # 124,439,808 x 2 bytes (bf16 base) + 147,456 x 16: LoRA r=4 on q, v is 12 layers x 2 x 4 x (768 + 768)
    assert calc.totals["LoRA r=4"] == pytest.approx(0.251238912)
    assert "bf16" in calc.summary.value

    calc.rank.value = 64
    assert "LoRA r=64" in calc.totals and "2,359,296 trainable" in calc.summary.value  # 12 x 2 x 64 x (768 + 768)
    assert _column_heights(calc) == pytest.approx(list(calc.totals.values()))

    calc.method.value = "prefix"
    assert calc.rank.disabled and not calc.prefix_length.disabled
    calc.prefix_length.value = 37
    assert "681,984 trainable" in calc.summary.value  # 37 vectors x 12 layers x (key + value) x 768
    assert [t.get_text() for t in calc.ax.get_xticklabels()] == ["full fine-tuning", "prefix P=37"]

    calc.method.value = "full"
    assert list(calc.totals) == ["full fine-tuning"] and len(_column_heights(calc)) == 1
    assert "124,439,808 trainable" in calc.summary.value  # GPT-2 small, every weight


def test_the_11b_model_does_not_fit_anywhere_with_full_fine_tuning(calc):
    calc.method.value = "full"
    calc.precision.value = "fp32"
    calc.model.value = "flan-t5-xxl (11B)"
    assert calc.totals["full fine-tuning"] > 100
    assert "T4 (16 GB) no, 24 GB card no, H100 (80 GB) no" in calc.summary.value
    assert calc.ax.get_ylim()[1] > calc.totals["full fine-tuning"]  # the bar is not cut off
    calc.method.value = "lora"
    calc.precision.value = "bf16"
    assert "H100 (80 GB) yes" in calc.summary.value
