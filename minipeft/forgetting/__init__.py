"""Catastrophic forgetting, measured: what fine-tuning on the restaurant task costs the model elsewhere.

"Forgetting" is read the way Biderman et al. (2024, "LoRA Learns Less and Forgets Less") read it: train
each method with the same task budget, then measure

- **learning**: the task's validation loss (and slot error rate) after training, and
- **forgetting**: the increase of the model's perplexity on general text it never trained on,

with the adapter *switched on*, because that is the model one deploys. A few fixed generation probes
show the same thing in words. The package's modules, floor by floor:

- :mod:`.general`: the general text and the perplexity on it (the measurement);
- :mod:`.experiment`: the settings notebook 06 trains, their learning rates, one run per setting;
- :mod:`.verdict`: the summary over seeds and the rule that judges the article's claim;
- :mod:`.report`: the table and the learn-vs-forget plot.

Results travel between notebooks through :mod:`minipeft.results`.
"""

from .experiment import (
    Setting,
    learning_rate,
    notebook06_gpu_peaks,
    rate_checks,
    run_setting,
    settings_for,
)
from .general import PROBES, general_perplexity, general_text, probe_texts, text_blocks
from .report import METHOD_COLORS, format_summary, plot_learn_forget
from .verdict import claim_verdict, forgetting_by_rate, prefix_forgets_less, summarize

__all__ = ["METHOD_COLORS", "PROBES", "Setting", "claim_verdict", "forgetting_by_rate",
           "format_summary", "general_perplexity", "general_text", "learning_rate", "notebook06_gpu_peaks",
           "plot_learn_forget", "prefix_forgets_less", "probe_texts", "rate_checks", "run_setting", "settings_for",
           "summarize", "text_blocks"]
