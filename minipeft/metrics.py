"""How E2E outputs are scored: BLEU and ROUGE-L against several human references, and the slot error rate.

E2E scores one generated sentence per MR against *all* references written for that MR:

- **BLEU** (n-gram precision, 1-4, with a brevity penalty) through ``sacrebleu``, multi-reference;
- **ROUGE-L**: the longest common subsequence with the references, as E2E's scorer computes it
  (best precision and best recall over the references, F-measure with beta = 1.2);
- **slot error rate** (SER): the fraction of MR slot values that the sentence leaves out or gets wrong.
  BLEU rewards wording; SER checks the facts. A fluent sentence can score BLEU 60 and still say "Italian"
  for ``food[French]``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import sacrebleu

from .data import parse_mr

# --------------------------------------------------------------------------- BLEU and ROUGE-L


def bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU (0-100) of one hypothesis per MR against that MR's list of references."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists: give one each")
    if not hypotheses:
        raise ValueError("No hypotheses to score.")
    width = max(len(refs) for refs in references)
    streams = [[refs[i] if i < len(refs) else None for refs in references] for i in range(width)]  # None: no ref
    return sacrebleu.corpus_bleu(list(hypotheses), streams).score


def _words(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text.lower())


def _lcs(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, one row at a time)."""
    row = [0] * (len(b) + 1)
    for x in a:
        prev_diag, row[0] = 0, 0
        for j, y in enumerate(b, start=1):
            prev_diag, row[j] = row[j], prev_diag + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(hypotheses: Sequence[str], references: Sequence[Sequence[str]], beta: float = 1.2) -> float:
    """Mean ROUGE-L F-score (0-100): best LCS precision and recall over each MR's references."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists: give one each")
    scores = []
    for hyp, refs in zip(hypotheses, references):
        h = _words(hyp)
        lcs = [(_lcs(h, _words(r)), len(_words(r))) for r in refs]
        p = max((n / len(h) if h else 0.0) for n, _ in lcs)
        r = max((n / m if m else 0.0) for n, m in lcs)
        scores.append((1 + beta**2) * p * r / (r + beta**2 * p) if p and r else 0.0)
    return 100 * sum(scores) / len(scores)


def perplexity(loss: float) -> float:
    """exp(mean cross-entropy per token): how many equally likely tokens the model hesitates between."""
    return math.exp(loss)


# --------------------------------------------------------------------------- slot error rate
_I = re.IGNORECASE
# How each categorical value can be said. A value counts as realised when its pattern matches.
VALUE_PATTERNS: dict[str, dict[str, str]] = {
    "eatType": {
        "pub": r"\bpubs?\b",
        "coffee shop": r"\bcoffee[- ]?shops?\b|\bcaf[eé]s?\b",
        "restaurant": r"\brestaurants?\b",
    },
    "food": {
        "Chinese": r"\bchinese\b", "English": r"\benglish\b|\bbritish\b", "Fast food": r"\bfast[- ]?food",
        "French": r"\bfrench\b", "Indian": r"\bindian\b", "Italian": r"\bitalian\b", "Japanese": r"\bjapanese\b",
    },
    "priceRange": {
        "cheap": r"\bcheap|\binexpensive|\blow[- ]pric|\blow[- ]cost",
        "less than £20": r"\b(less than|under|below|lower than) £ ?20\b(?! ?[-–])",
        "£20-25": r"£ ?20 ?(-|–|to) ?£? ?25",
        "moderate": r"\bmoderate|\bmid[- ]?pric|\bmid[- ]range|\baverage[- ]?pric",
        "high": r"\bexpensive|\bhigh(ly)?[- ]?pric|\bpric\w* (is |are )?high|\bhigh[- ]end|\bpricey|\bcostly",
        "more than £30": r"\b(more than|over|above|exceeding) £ ?30|£ ?30 (and|or) (over|more|above)|£ ?30\+",
    },
    "customer rating": {
        "low": r"\blow(ly)?[- ](customer[- ])?(rat|scor|review)|\brat\w* (is |of |as )?(very )?(low|poor)"
               r"|\bpoor(ly)?[- ](customer[- ])?rat",
        "average": r"\baverage\b(?![- ]?pric)",
        "high": r"\bhigh(ly)?[- ](customer[- ])?(rat|scor|review)|\brat\w* (is |of |as )?(very )?high"
                r"|\b(well|top)[- ]rated|\bexcellent (customer )?rat",
        "1 out of 5": r"\b(1|one)( star)? out of (5|five)|\b(1|one)[- ]stars?\b",
        "3 out of 5": r"\b(3|three)( stars?)? out of (5|five)|\b(3|three)[- ]stars?\b",
        "5 out of 5": r"\b(5|five)( stars?)? out of (5|five)|\b(5|five)[- ]stars?\b",
    },
    "area": {
        "city centre": r"\bcity[- ]cent(re|er)|\bcent(re|er) of (the )?(city|town)|\bcent(re|er)\b|\bdowntown",
        "riverside": r"\briverside|\briver\b|\bwaterfront",
    },
    "familyFriendly": {
        "no": r"\b(not|isn't|aren't|non|never)[- ](a |an |very |really |so |particularly )?(family|kid|child)"
              r"|n't (a |an |very |really )?(family|kid|child)|(family|kid|child)\w*[- ]?unfriendly"
              r"|\bnot (welcome|allow|suitable for|cater (to|for)|good for|friendly (to|for|towards)|for)( \w+)? "
              r"(families|kids|children)|\badults?[- ]only|\bno (kids|children|families)",
        "yes": r"(famil(y|ies)|kids?|child(ren)?)[- ]?friendly|\bwelcom\w* (to )?(families|kids|children)"
               r"|\b(good|great|suitable|ideal) for (families|kids|children)|\bbring (the |your )?(kids|children)",
    },
}
GENERIC = {("eatType", "restaurant")}  # "the restaurant" is said of pubs and coffee shops too: not a conflict
# E2E pairs each number with a word (the crowd workers saw both): saying the partner value is right too.
PARTNERS = {
    "priceRange": {"less than £20": "cheap", "£20-25": "moderate", "more than £30": "high"},
    "customer rating": {"1 out of 5": "low", "3 out of 5": "average", "5 out of 5": "high"},
}


def _partner(slot: str, value: str) -> str | None:
    pairs = PARTNERS.get(slot, {})
    return pairs.get(value) or next((k for k, v in pairs.items() if v == value), None)


# A rating said in words ("rated moderate by customers", "a moderate customer rating") does not state a price;
# a word about price ("highly-rated mid-priced") stays.
_WORD = r"(?![\w-]*pric)[\w-]+"
RATING_PHRASE = re.compile(rf"\brat(ed|ing|ings)( is| of| as)?( very)? {_WORD}"
                           rf"|\b{_WORD} (customer )?(ratings?|reviews?)\b", _I)


def _found(slot: str, value: str, text: str) -> bool:
    if slot == "priceRange":
        text = RATING_PHRASE.sub(" _ ", text)
    if slot == "familyFriendly" and value == "yes":  # "not family-friendly" contains "family-friendly"
        return bool(re.search(VALUE_PATTERNS[slot]["yes"], text, _I)) and not _found(slot, "no", text)
    return bool(re.search(VALUE_PATTERNS[slot][value], text, _I))


def slot_errors(mr: str | dict[str, str], text: str) -> dict[str, str]:
    """The MR's slots that ``text`` gets wrong: ``{slot: "missing" | "wrong"}`` (empty when all are right).

    ``missing``: the value is not said. ``wrong``: another value of the same slot is said (e.g. "Italian"
    for food[French]); a number's partner word (``less than £20`` ~ "cheap", ``5 out of 5`` ~ "high")
    counts as right. Names (``name``, ``near``) are matched literally and then blanked out, so a name
    such as "Café Brazil" does not count as a coffee shop.
    """
    slots = parse_mr(mr) if isinstance(mr, str) else dict(mr)
    errors: dict[str, str] = {}
    rest = text
    for slot in ("name", "near"):
        if slot in slots:
            name = rf"(?<!\w){re.escape(slots[slot])}(?!\w)"
            if not re.search(name, text, _I):
                errors[slot] = "missing"
            rest = re.sub(name, " _ ", rest, flags=_I)
    for slot, value in slots.items():
        if slot in ("name", "near"):
            continue
        if value not in VALUE_PATTERNS[slot]:
            raise ValueError(f"Slot {slot!r} has the value {value!r}, which the slot error rate does not know; "
                             f"known values: {', '.join(VALUE_PATTERNS[slot])}")
        right = {value, _partner(slot, value)} - {None}
        others = [v for v in VALUE_PATTERNS[slot] if v not in right and (slot, v) not in GENERIC]
        if any(_found(slot, other, rest) for other in others):
            errors[slot] = "wrong"
        elif not any(_found(slot, v, rest) for v in right):
            errors[slot] = "missing"
    return errors


def slot_error_rate(mrs: Sequence[str], texts: Sequence[str]) -> float:
    """Fraction of all MR slot values (over every MR) that the matching texts leave out or get wrong."""
    if len(mrs) != len(texts):
        raise ValueError(f"{len(mrs)} MRs but {len(texts)} texts: give one text per MR")
    total = wrong = 0
    for i, (mr, text) in enumerate(zip(mrs, texts)):
        slots = parse_mr(mr, line=i + 1)
        total += len(slots)
        wrong += len(slot_errors(slots, text))
    if total == 0:
        raise ValueError("No MRs to score.")
    return wrong / total


def name_rate(mrs: Sequence[str], texts: Sequence[str]) -> float:
    """Fraction of the texts that name their MR's restaurant right (the one slot every sentence must copy)."""
    if len(mrs) != len(texts) or not mrs:
        raise ValueError(f"{len(mrs)} MRs but {len(texts)} texts: give one text per MR, at least one")
    return sum("name" not in slot_errors(mr, text) for mr, text in zip(mrs, texts)) / len(mrs)


def e2e_scores(outputs: dict[str, str], references: dict[str, list[str]]) -> dict[str, float]:
    """BLEU, ROUGE-L and slot error rate of one output per MR against that MR's references."""
    missing = [mr for mr in references if mr not in outputs]
    if missing:
        raise ValueError(f"No output for {len(missing)} MRs, e.g. {missing[0]!r}")
    mrs = list(references)
    hyps = [outputs[mr] for mr in mrs]
    refs = [references[mr] for mr in mrs]
    return {"BLEU": bleu(hyps, refs), "ROUGE-L": rouge_l(hyps, refs), "SER": slot_error_rate(mrs, hyps)}

