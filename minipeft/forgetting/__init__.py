"""Catastrophic forgetting, measured: what fine-tuning on the restaurant task costs the model elsewhere.

Each method trains at several learning rates from several seeds; each run measures

- **learning**: the task's validation loss (and slot error rate), and
- **forgetting**: the rise of the model's mean cross-entropy (nats per token) on general text it never trained on,

with the adapter *switched on*, because that is the model one deploys. Methods are compared at the same amount
learned (matched task loss), as Biderman et al. (2024, "LoRA Learns Less and Forgets Less") compare them on one
learning-forgetting curve. The package's modules, floor by floor:

- :mod:`.general`: the general text and the perplexity on it (the measurement);
- :mod:`.lab`: one run per method, learning rate and seed, measured and written as one JSON file (``make
  forgetting-lab``);
- :mod:`.frontier`: the statistics (intervals over seeds, Pareto fronts, matched task loss) and the verdict rule;
- :mod:`.findings`: what the lab's runs say, read by notebooks 06 and 07 (the article's claim among them);
- :mod:`.literature`: the published results notebook 06 sets beside them;
- :mod:`.report`: the table per rate and the frontier plot.

Results travel between notebooks through :mod:`minipeft.results`.
"""

from .general import PROBES, general_perplexity, general_text, probe_texts, text_blocks
from .report import METHOD_COLORS

__all__ = ["METHOD_COLORS", "PROBES", "general_perplexity", "general_text", "probe_texts", "text_blocks"]
