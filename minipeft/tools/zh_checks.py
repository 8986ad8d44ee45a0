"""Checks of the Chinese edition's translations, cell by cell (``scripts/zh.py check``, ``tests/test_zh.py``).

- Faithfulness: every placeholder, inline code span, ``$math$``, link or image target and number (digit run) of a
  cell's ``en`` appears in its ``zh``; headings (count and levels) and table rows (count) are the same.
- Glossary (``i18n/zh/glossary.md``, its header states the rule): a zh cell uses no rejected variant of a key term,
  and uses the Chinese term where its English cell uses the English one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from minipeft.tools.zh import I18N

GLOSSARY = I18N / "glossary.md"
_FENCE = re.compile(r"^```.*?^```[^\n]*$", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`([^`]+)`")  # a span may wrap onto the next line: compared with its spaces collapsed
_DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.DOTALL)
_MATH = re.compile(r"\$([^$\n]+?)\$")
_TARGET = re.compile(r"(?:\]\(|\b(?:src|href)=[\"'])([^)\s\"']+)")
_PLACEHOLDER = re.compile(r"\{\{\w+\}\}")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_HEADING = re.compile(r"^(#{1,6})\s", re.MULTILINE)
_TABLE_ROW = re.compile(r"^\s*\|", re.MULTILINE)
_HTML_TAG = re.compile(r"<[^>\n]+>")


def _without_fences(text: str) -> str:
    return _FENCE.sub("", text)


def _maths(text: str) -> list[str]:
    text = _CODE.sub("", _without_fences(text))
    display = [f"$${m}$$" for m in _DISPLAY_MATH.findall(text)]
    return display + [f"${m}$" for m in _MATH.findall(_DISPLAY_MATH.sub("", text))]


def prose(text: str) -> str:
    """A cell's words only: without code blocks and spans, math, link targets, HTML tags and placeholders."""
    text = _CODE.sub(" ", _without_fences(text))
    text = _MATH.sub(" ", _DISPLAY_MATH.sub(" ", text))
    return _PLACEHOLDER.sub(" ", _HTML_TAG.sub(" ", _TARGET.sub("](", text)))


def _article_quotes(text: str) -> list[str]:
    """The source article's words in a cell: each 「quote」 and each Chinese line of a blockquote, without the marks.
    The zh edition quotes them character for character (the English tests check them against the article)."""
    text = _without_fences(text)
    inline = re.findall(r"「([^」\n]+)」", text)
    block = [line.lstrip(">").strip() for line in text.splitlines()
             if line.startswith(">") and re.search(r"[\u4e00-\u9fff]", line)]
    return [q for q in inline + block if q]


def faithfulness_problems(name: str, cell_id: str, en: str, zh: str) -> list[str]:
    """What the zh of one cell lost from its en: placeholders, code spans, math, link targets, numbers; headings and
    table rows that differ. Empty for an untranslated cell (the staleness check reports those)."""
    if not zh.strip():
        return []
    kinds = {
        "placeholder": _PLACEHOLDER.findall,
        "code span": lambda text: [f"`{' '.join(span.split())}`" for span in _CODE.findall(_without_fences(text))],
        "math": _maths,
        "link target": _TARGET.findall,
        "number": _NUMBER.findall,
    }
    missing = []
    for kind, extract in kinds.items():
        found = set(extract(zh))
        missing += [f"{kind} {item}" for item in dict.fromkeys(extract(en)) if item not in found]
    missing += [f"article quote {q}" for q in _article_quotes(en) if q not in zh]
    problems = [f"{name}: cell {cell_id}: missing in zh: {', '.join(missing)}"] if missing else []
    en_levels = [len(h) for h in _HEADING.findall(_without_fences(en))]
    zh_levels = [len(h) for h in _HEADING.findall(_without_fences(zh))]
    if en_levels != zh_levels:
        problems.append(f"{name}: cell {cell_id}: headings differ: en has levels {en_levels}, zh {zh_levels}")
    en_rows, zh_rows = (len(_TABLE_ROW.findall(_without_fences(text))) for text in (en, zh))
    if en_rows != zh_rows:
        problems.append(f"{name}: cell {cell_id}: table rows differ: en has {en_rows}, zh {zh_rows}")
    return problems


def translation_file_problems(name: str, translation: dict) -> list[str]:
    """Faithfulness problems of every translated cell of one translation file."""
    return [problem for entry in translation.get("cells") or []
            for problem in faithfulness_problems(name, entry["id"], entry.get("en") or "", entry.get("zh") or "")]


def read_exceptions(path: Path = GLOSSARY) -> set[tuple[str, str, str]]:
    """The glossary's exceptions, ``{(notebook, cell id, English term)}``: cells whose English uses a term's word in
    another sense (``| notebook | cell | term | why |`` under the heading "Exceptions")."""
    text = path.read_text(encoding="utf-8")
    if "## Exceptions" not in text:
        return set()
    rows = [[c.strip().strip("`") for c in line.strip().strip("|").split("|")]
            for line in text.split("## Exceptions", 1)[1].splitlines() if line.startswith("|")]
    return {(row[0], row[1], row[2]) for row in rows[2:] if len(row) >= 3}


@dataclass(frozen=True)
class Term:
    """One glossary row: the English words that trigger it, the Chinese accepted for it, the variants rejected."""

    english: tuple[str, ...]
    chinese: tuple[str, ...]
    rejected: tuple[str, ...]


def _split_note(cell: str) -> tuple[list[str], str]:
    """``"低秩适应 (LoRA)"`` -> (["低秩适应"], "LoRA"); ``"键 / 值"`` -> (["键", "值"], "")."""
    found = re.match(r"^(.*?)\s*(?:\((.*)\))?$", cell.strip())
    return [part.strip() for part in found.group(1).split(" / ") if part.strip()], (found.group(2) or "").strip()


def read_glossary(path: Path = GLOSSARY) -> list[Term]:
    """The rows of the glossary's table (``| English | 中文 | rejected | source |``)."""
    terms, in_table = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("## Exceptions"):
            break
        if line.startswith("| English |"):
            in_table = True
        elif in_table and line.startswith("|") and not set(line) <= set("|- "):
            english, english_note = _split_note(cells[0])
            chinese, chinese_note = _split_note(cells[1])
            abbreviation = [english_note] if english_note and " " not in english_note else []
            chinese_note = [chinese_note] if chinese_note and " " not in chinese_note else []
            rejected = tuple(word.strip() for word in cells[2].split(",") if word.strip())
            terms.append(Term(tuple(english + abbreviation), tuple(chinese + chinese_note + abbreviation), rejected))
        elif in_table and not line.startswith("|"):
            in_table = False
    return terms


def uses(english_prose: str, word: str) -> bool:
    """Whether ``word`` is in the English prose as a whole word (a plural s allowed; case ignored). A hyphenated
    compound is another term: "rank" is not found in "low-rank"."""
    return re.search(rf"(?<![\w-]){re.escape(word)}s?(?![\w-])", english_prose, re.IGNORECASE) is not None


def glossary_problems(name: str, translation: dict, terms: list[Term],
                      exceptions: set[tuple[str, str, str]] | None = None) -> list[str]:
    """For every key term (a row with rejected variants) and translated cell: no rejected variant in the zh, and
    where the English cell uses the English term, the zh has the Chinese term (or an accepted alternative), unless
    the glossary lists the cell and term as an exception."""
    exceptions = read_exceptions() if exceptions is None else exceptions
    problems = []
    for entry in translation.get("cells") or []:
        zh = entry.get("zh") or ""
        if not zh.strip():
            continue
        zh_prose, en_prose = prose(zh), prose(entry.get("en") or "")
        for term in (t for t in terms if t.rejected):
            for variant in (v for v in term.rejected if v in zh_prose):
                problems.append(f"{name}: cell {entry['id']}: uses {variant!r}, rejected for {term.english[0]!r}; "
                                f"write {term.chinese[0]!r}")
            said = next((word for word in term.english if uses(en_prose, word)), None)
            exempt = (name, entry["id"], term.english[0]) in exceptions
            if said and not exempt and not any(accepted.lower() in zh.lower() for accepted in term.chinese):
                problems.append(f"{name}: cell {entry['id']}: the English says {said!r}, the zh has none of "
                                f"{' / '.join(term.chinese)}")
    return problems
