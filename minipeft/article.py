"""The source article's words that the course tests, in Chinese as published, each with an English translation.

The article (a Chinese blog post on 链载Ai, lianzai.com; its text is ``../shared/reference/source-article.md`` beside
the repository) ends with a five-row table rating prefix-tuning against LoRA and two sentences of selection advice
(选择建议). They live here, once: notebook 07 prints them as the article column and tests each row against what the
course measured (:mod:`minipeft.comparison`). ``tests/test_article.py`` checks every Chinese string against the
article's file, word for word, wherever that file is present.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from .paths import REPO_ROOT

ARTICLE_FILE = REPO_ROOT.parent / "shared" / "reference" / "source-article.md"
CITATION = "the source article (链载Ai, lianzai.com)"
TABLE_HEADER = "| 特征 | 前缀微调 | LoRA |"  # feature | prefix-tuning | LoRA


@dataclass(frozen=True)
class Rating:
    """One row of the article's table: a feature and its rating of each method, in Chinese and in English.

    ``favours`` is the method the row rates better (``prefix`` or ``lora``), ``claim`` says in words that can be
    measured what the row claims of the two methods, and ``quotes`` holds the article's own sentences behind the
    rating, as ``(Chinese, English)`` pairs."""

    feature_zh: str
    feature_en: str
    prefix_zh: str
    prefix_en: str
    lora_zh: str
    lora_en: str
    favours: str
    claim: str
    quotes: tuple[tuple[str, str], ...] = ()

    @property
    def table_line(self) -> str:
        """The row as the article's Markdown table writes it."""
        return f"| {self.feature_zh} | {self.prefix_zh} | {self.lora_zh} |"


# The article's table, row by row, in its order (特征 = feature; 前缀微调 = prefix-tuning).
TABLE = (
    Rating("参数效率", "parameter efficiency", "中等", "medium", "高", "high", "lora",
           "LoRA trains fewer parameters than prefix-tuning (and keeps no more)",
           (("参数效率:LoRA 只需要训练少量低秩矩阵的参数,相比于全参数微调和前缀微调,参数效率更高。",
             "Parameter efficiency: LoRA only needs to train the parameters of a few low-rank matrices; compared with "
             "full fine-tuning and prefix-tuning, its parameter efficiency is higher."),
            ("其仍然需要为每个任务存储一个独立的前缀矩阵,当任务数量较多时,存储成本仍然很高。",
             "[prefix-tuning] still needs a separate prefix matrix stored for every task; with many tasks the storage "
             "cost is still high."))),
    Rating("训练速度", "training speed", "中等", "medium", "快", "fast", "lora",
           "a LoRA training step is faster than a prefix-tuning step",
           (("训练速度:LoRA 的训练速度比全参数微调快得多,通常只需要几分钟到几十分钟就可以完成微调。",
             "Training speed: LoRA trains much faster than full fine-tuning; fine-tuning usually takes only a few "
             "minutes to a few tens of minutes."),)),
    Rating("内存占用", "memory use", "中等", "medium", "低", "low", "lora",
           "LoRA needs less memory to train than prefix-tuning",
           (("内存占用:LoRA 的内存占用比全参数微调小得多,可以轻松地在单个 GPU 上微调大型语言模型。",
             "Memory use: LoRA uses much less memory than full fine-tuning, so a large language model can easily be "
             "fine-tuned on a single GPU."),)),
    Rating("可解释性", "interpretability", "高", "high", "低", "low", "prefix",
           "a prefix is easier to read than a LoRA update",
           (("前缀层可以看作是模型对特定任务或领域的理解,通过分析前缀层的参数,可以更好地理解模型的决策过程。",
             "The prefix layer can be seen as the model's understanding of a particular task or domain; analysing "
             "its parameters gives a better understanding of how the model decides."),)),
    Rating("避免灾难性遗忘", "avoiding catastrophic forgetting", "高", "high", "低", "low", "prefix",
           "prefix-tuning forgets less than LoRA",
           (("而前缀微调由于不改变模型本身的参数,可以有效避免灾难性遗忘。",
             "Because prefix-tuning does not change the model's own parameters, it can effectively avoid "
             "catastrophic forgetting."),)),
)
RATINGS = {row.feature_zh: row for row in TABLE}


@dataclass(frozen=True)
class Advice:
    """One sentence of the article's 选择建议 (selection advice): which method to choose, for which rows' sake."""

    zh: str
    en: str
    method: str  # "prefix" or "lora"
    rows: tuple[str, ...]  # the table rows (feature_zh) the sentence rests on


ADVICE_HEADING = "选择建议:"  # "selection advice:"
ADVICE = (
    Advice("如果对模型的可解释性要求较高,或者需要避免灾难性遗忘,可以选择前缀微调。",
           "If the model's interpretability matters a lot, or catastrophic forgetting must be avoided, "
           "prefix-tuning can be chosen.", "prefix", ("可解释性", "避免灾难性遗忘")),
    Advice("如果对训练速度和内存占用要求较高,可以选择LoRA。",
           "If training speed and memory use matter a lot, LoRA can be chosen.", "lora", ("训练速度", "内存占用")),
)


# The article's outlook (未来 ... 例如:), the line notebook 07's section 4 answers with one model serving two tasks.
MULTITASK = ("多任务微调:研究如何将多个相关任务的知识迁移到单个模型中,实现多任务学习。",
             "Multi-task fine-tuning: research on how to carry the knowledge of several related tasks into a single "
             "model, to achieve multi-task learning.")


def quoted_strings() -> list[str]:
    """Every Chinese string this module quotes, as it must appear in the article's text."""
    return [TABLE_HEADER, *(row.table_line for row in TABLE), *(zh for row in TABLE for zh, _ in row.quotes),
            ADVICE_HEADING, *(a.zh for a in ADVICE), MULTITASK[0]]


def pad(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` columns, a Chinese character counting as two (as terminals and
    notebooks draw it)."""
    columns = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(0, width - columns)


def format_claims() -> str:
    """Row by row: the article's own sentences behind the rating (Chinese, then English) and the claim tested."""
    lines = []
    for row in TABLE:
        lines.append(f"{row.feature_zh} ({row.feature_en}): prefix {row.prefix_zh}, LoRA {row.lora_zh}")
        for zh, en in row.quotes:
            lines += [f"  「{zh}」", f"    ({en})"]
        lines.append(f"  claim tested: {row.claim}")
    return "\n".join(lines)


def format_table() -> str:
    """The article's table and advice as the notebook prints them: the Chinese, with the English beside it."""
    lines = [f"{pad('特征 (feature)', 50)} {pad('前缀微调 (prefix-tuning)', 28)} LoRA"]
    for row in TABLE:
        lines.append(f"{pad(f'{row.feature_zh} ({row.feature_en})', 50)} "
                     f"{pad(f'{row.prefix_zh} ({row.prefix_en})', 28)} {row.lora_zh} ({row.lora_en})")
    lines.append(f"{ADVICE_HEADING} (selection advice)")
    for advice in ADVICE:
        lines += [f"  {advice.zh}", f"  ({advice.en})"]
    return "\n".join(lines)
