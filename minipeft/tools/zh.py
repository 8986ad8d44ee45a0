"""The Chinese edition: translation files in ``i18n/zh/``, one per notebook, keyed by the English cell's id, and the
notebooks built from them into ``notebooks/zh/``.

Each file lists the English notebook's markdown cells in order::

    notebook: 01_why_finetune.ipynb
    cells:
    - id: 3f2a9c1e                 # the English cell's id
      en_sha: 1a2b3c4d5e6f         # sha256 of the English source the translation was made from (12 hex digits)
      en: |-                       # that English source (so a stale entry can name the first changed line)
        ...
      zh: |-                       # the translation ("" = not translated yet)
        ...

Two lines of the English are written by tools, not by hand, and stand in ``en`` and ``zh`` as placeholders that the
build fills: the Colab badge (``{{colab_badge}}``, ``scripts/sync_notebooks.py``) and the stamp of the stored run
(``{{stored_outputs}}``, ``scripts/store_outputs.py``). So re-storing a notebook does not make its translation stale.

A zh notebook is the English one with each markdown cell's source replaced by its translation: code cells, outputs,
metadata, attachments and cell ids copied unchanged (so no zh notebook is executed separately: ``tests/test_zh.py``
proves code and outputs identical). The badge opens the zh notebook in Colab, the stamp is rendered in Chinese, and
relative links are re-aimed one folder deeper (``../docs/x.md`` -> ``../../docs/x.md``; a sibling notebook goes to
its zh version where one is built). A notebook is built when it has both an English notebook and a translation file.

The build refuses a stale or missing translation (an English cell edited since, or not translated yet), naming the
notebook, the cell id and the first changed line; ``--allow-stale`` builds anyway, keeping such cells in English
with a warning (a preview, never to commit: the tests compare the committed notebooks with a strict build).

    python scripts/zh.py update   # add entries for new English cells, refresh en/en_sha where zh is still empty
    python scripts/zh.py accept 03_lora.ipynb f8cb7e02   # after fixing a stale cell's zh: en/en_sha to the English
    python scripts/zh.py build    # notebooks/zh/*.ipynb and README.zh.md's course table (make zh)
    python scripts/zh.py check    # tests/test_zh.py's checks: staleness, built = committed, glossary, faithfulness
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Callable
from itertools import zip_longest
from pathlib import Path

import yaml

from minipeft.paths import REPO_ROOT
from minipeft.tools.sync_notebooks import README_ZH, ZH_DIR, badge, sync_readme

NOTEBOOKS = REPO_ROOT / "notebooks"
ZH_NOTEBOOKS = NOTEBOOKS / ZH_DIR
I18N = REPO_ROOT / "i18n" / "zh"
BADGE = re.compile(r"^\[!\[Open In Colab.*$", re.MULTILINE)
STAMP = re.compile(r"^\*\*Stored outputs:\*\*.*$", re.MULTILINE)  # store_outputs.STAMP
PLACEHOLDERS = {"colab_badge": BADGE, "stored_outputs": STAMP}
ZH_STAMP_LABEL = "**存储的输出**："  # the Chinese stamp's start (build_slides keeps it off the slides)
# store_outputs.stamp(): "**Stored outputs:** the `cpu` profile on `smollm2-135m`, <machine>, 6 December 2026,
# 17 min to run. ..."
_STAMP_FIELDS = re.compile(r"^\*\*Stored outputs:\*\* the `(?P<profile>[^`]+)` profile on `(?P<model>[^`]+)`, "
                           r"(?P<machine>.+), (?P<day>\d{1,2}) (?P<month>[A-Z][a-z]+) (?P<year>\d{4}), "
                           r"(?P<minutes>\d+) min to run\.")
_CPU_MACHINE = re.compile(r"^(?P<cores>\d+) CPU cores \((?P<arch>[^)]+)\), no GPU$")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
# A link's or image's target: markdown ](target) and HTML src="target" / href="target".
LINK_TARGET = re.compile(r"(?P<head>\]\(|\b(?:src|href)=[\"'])(?P<target>[^)\s\"']+)")
_CODE = re.compile(r"(^```.*?^```|`[^`]+`)", re.MULTILINE | re.DOTALL)  # fenced blocks and inline spans
_NOT_RELATIVE = re.compile(r"^(?:[a-zA-Z][\w+.-]*:|#|/|\{\{)")  # a scheme (https:, attachment:), an anchor, absolute


class StaleTranslationError(ValueError):
    """A translation is missing, empty or made from an older English cell; the message names each cell."""


def source_of(cell: dict) -> str:
    """A markdown cell's English source with the tool-written lines as ``{{placeholders}}``."""
    src = cell["source"]
    text = src if isinstance(src, str) else "".join(src)
    for name, pattern in PLACEHOLDERS.items():
        text = pattern.sub("{{" + name + "}}", text)
    return text


def sha(text: str) -> str:
    """The 12-hex-digit sha256 of an English cell's source."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as ``|-`` blocks, so a translation file reads like the notebook."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_BlockDumper.add_representer(str, _str)


def translation_path(notebook: Path, folder: Path = I18N) -> Path:
    return folder / f"{notebook.name[:2]}.yml"


def load_translation(notebook: Path, folder: Path = I18N) -> dict:
    """The translation file of ``notebook`` (none yet, or an empty file: no cells). Raises ValueError, naming the
    file, when it is not a mapping with a list of cells."""
    path = translation_path(notebook, folder)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    if data is None:
        return {"notebook": notebook.name, "cells": []}
    if not isinstance(data, dict) or not isinstance(data.get("cells") or [], list):
        raise ValueError(f"{path}: not a translation file (a mapping with notebook: and a list of cells:); "
                         f"`python scripts/zh.py update` writes one")
    return data


def dump_translation(data: dict) -> str:
    return yaml.dump(data, Dumper=_BlockDumper, allow_unicode=True, sort_keys=False, width=10_000)


def markdown_cells(notebook: Path) -> list[dict]:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    return [c for c in nb["cells"] if c["cell_type"] == "markdown"]


def update(notebook: Path) -> Path:
    """Rewrite the notebook's translation file in the English order: translations kept by cell id (a stale one keeps
    its old ``en``/``en_sha`` so the check can show what changed), new cells added with an empty ``zh``."""
    old = {c["id"]: c for c in load_translation(notebook)["cells"]}
    cells = []
    for cell in markdown_cells(notebook):
        text = source_of(cell)
        entry = old.get(cell["id"])
        if entry is None or not entry.get("zh"):
            entry = {"id": cell["id"], "en_sha": sha(text), "en": text, "zh": ""}
        cells.append(entry)
    path = translation_path(notebook)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_translation({"notebook": notebook.name, "cells": cells}), encoding="utf-8")
    return path


def accept(notebook: Path, cell_ids: list[str], i18n: Path = I18N) -> Path:
    """Mark the translations of ``cell_ids`` as made from the current English (``en``, ``en_sha``): run it after
    fixing their ``zh`` for an English edit. An unknown id or an empty ``zh`` is refused, the file left as it was."""
    translation = load_translation(notebook, i18n)
    entries = {entry["id"]: entry for entry in translation["cells"]}
    english = {cell["id"]: source_of(cell) for cell in markdown_cells(notebook)}
    for cell_id in cell_ids:
        if cell_id not in english or cell_id not in entries or not (entries[cell_id].get("zh") or "").strip():
            raise ValueError(f"{notebook.name}: cell {cell_id} is not a translated markdown cell of the English "
                             f"notebook; nothing accepted (python scripts/zh.py check lists the cells)")
    for cell_id in cell_ids:
        entries[cell_id].update(en_sha=sha(english[cell_id]), en=english[cell_id])
    path = translation_path(notebook, i18n)
    path.write_text(dump_translation(translation), encoding="utf-8")
    return path


def english_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    """The English notebooks, ``notebooks/NN_*.ipynb`` (not the ones in notebooks/zh/)."""
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def translated_notebooks(folder: Path = NOTEBOOKS, i18n: Path = I18N) -> list[Path]:
    """The English notebooks that have a translation file: the ones the build makes a zh notebook of (a translation
    file whose English notebook is not there yet is skipped)."""
    return [path for path in english_notebooks(folder) if translation_path(path, i18n).is_file()]


def first_change(old: str, new: str) -> str:
    """The first line where ``new`` differs from ``old``, in words: ``line 3: was '...', now '...'``."""
    for number, (was, now) in enumerate(zip_longest(old.splitlines(), new.splitlines()), start=1):
        if was != now:
            return f"line {number}: was {was!r}, now {now!r}"
    return "only the line endings"


def cell_problems(nb: dict, name: str, translation: dict) -> dict[str, str]:
    """``{cell id: problem}`` for each English markdown cell whose translation is missing, empty ("not translated") or
    stale (its ``en_sha`` is not the current English's: the message names the first changed line), and for each
    translated cell the English no longer has (an orphan)."""
    entries = {entry["id"]: entry for entry in translation.get("cells") or []}
    english = [cell for cell in nb["cells"] if cell["cell_type"] == "markdown"]
    problems = {}
    for cell in english:
        text, entry, where = source_of(cell), entries.get(cell["id"]), f"{name}: cell {cell['id']}"
        if entry is None:
            problems[cell["id"]] = (f"{where}: no translation entry; run `python scripts/zh.py update`, then "
                                    f"translate it")
        elif entry.get("en_sha") != sha(text):
            problems[cell["id"]] = (f"{where}: stale, the English changed since it was translated, first at "
                                    f"{first_change(entry.get('en') or '', text)}; fix zh, then `python scripts/zh.py "
                                    f"accept {name} {cell['id']}`")
        elif not (entry.get("zh") or "").strip():
            problems[cell["id"]] = f"{where}: not translated (zh is empty)"
    ids = {cell["id"] for cell in english}
    for cell_id in entries.keys() - ids:
        problems[cell_id] = (f"{name}: cell {cell_id}: orphan, translated but the English notebook has no such "
                             f"markdown cell any more; `python scripts/zh.py update` drops it")
    return problems


def zh_stamp(line: str) -> str:
    """store_outputs' stamp line in Chinese; a line it cannot read is returned as it is (in English)."""
    found = _STAMP_FIELDS.match(line)
    if not found or found["month"] not in MONTHS:
        return line
    cpu = _CPU_MACHINE.match(found["machine"])
    machine = f"{cpu['cores']} 个 CPU 核心（{cpu['arch']}），无 GPU" if cpu else found["machine"]
    month = MONTHS.index(found["month"]) + 1
    return (f"{ZH_STAMP_LABEL}`{found['profile']}` 配置档，`{found['model']}`，{machine}，"
            f"{found['year']} 年 {month} 月 {found['day']} 日，运行 {found['minutes']} 分钟。"
            f"`make outputs` 可重新生成它们（`python scripts/store_outputs.py`）。")


def relink(target: str, built: set[str]) -> str:
    """A link target as seen from notebooks/zh/: relative ones one folder up, except a sibling notebook that has a
    zh version (``built``: file names); addresses, anchors and attachments unchanged."""
    if _NOT_RELATIVE.match(target):
        return target
    path = target.split("#", 1)[0]
    return target if path in built else f"../{target}"


def render(zh: str, english: str, name: str, built: set[str]) -> str:
    """A zh cell's markdown for notebooks/zh/<name>: placeholders filled (the zh Colab badge; the stamp of the
    English cell ``english`` in Chinese), relative links re-aimed."""
    stamp = STAMP.search(english)
    text = zh.replace("{{colab_badge}}", badge(f"{ZH_DIR}/{name}", REPO_ROOT, "zh"))
    text = text.replace("{{stored_outputs}}", zh_stamp(stamp.group(0)) if stamp else "")
    pieces = _CODE.split(text)  # odd pieces are code, left as they are
    return "".join(piece if i % 2 else LINK_TARGET.sub(lambda found: found["head"] + relink(found["target"], built),
                                                       piece) for i, piece in enumerate(pieces))


def build_notebook(notebook: Path, allow_stale: bool = False, warn: Callable[[str], object] = print,
                   i18n: Path = I18N) -> dict:
    """The zh notebook of ``notebook``: each markdown cell's source replaced by its rendered translation, everything
    else copied. Raises StaleTranslationError naming every missing, empty, stale or orphan translation unless
    ``allow_stale``, which keeps those cells in English (badge, stamp and links as in the zh cells) and warns."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    translation = load_translation(notebook, i18n)
    problems = cell_problems(nb, notebook.name, translation)
    if problems and not allow_stale:
        raise StaleTranslationError("\n".join([*problems.values(), f"{notebook.name}: not built; fix the "
                                               f"translation (i18n/zh/{notebook.name[:2]}.yml) or build with "
                                               f"--allow-stale to keep these cells in English"]))
    for problem in problems.values():
        warn(f"warning: {problem} (kept in English)")
    entries = {entry["id"]: entry for entry in translation.get("cells") or []}
    built = {path.name for path in translated_notebooks(notebook.parent, i18n)}
    cells = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            english = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            zh = source_of(cell) if cell["id"] in problems else entries[cell["id"]]["zh"]
            cell = {**cell, "source": render(zh, english, notebook.name, built).splitlines(keepends=True)}
        cells.append(cell)
    return {**nb, "cells": cells}


def dumps(nb: dict) -> str:
    """A notebook in the course's JSON layout."""
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def build(allow_stale: bool = False, warn: Callable[[str], object] = print, i18n: Path = I18N) -> list[Path]:
    """Every zh notebook into notebooks/zh/ (only those that changed are written; a zh notebook without an English
    one and a translation is removed), then README.zh.md's course table; returns the files written or removed."""
    sources, built, refused = translated_notebooks(NOTEBOOKS, i18n), [], []
    for path in sources:
        try:
            built.append((ZH_NOTEBOOKS / path.name, dumps(build_notebook(path, allow_stale, warn, i18n))))
        except StaleTranslationError as err:
            refused.append(str(err))
    if refused:  # every notebook's problems at once, and no file touched
        raise StaleTranslationError("\n".join(refused))
    ZH_NOTEBOOKS.mkdir(exist_ok=True)
    changed = []
    for path, text in built:  # written only once every notebook has built: a refusal leaves all files as they were
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    for path in english_notebooks(ZH_NOTEBOOKS):
        if path.name not in {source.name for source in sources}:
            path.unlink()
            changed.append(path)
    readme = REPO_ROOT / README_ZH
    if readme.exists():
        text = readme.read_text(encoding="utf-8")
        new = sync_readme(text, english_notebooks(), REPO_ROOT, "zh")
        if new != text:
            readme.write_text(new, encoding="utf-8")
            changed.append(readme)
    return changed


def same_code_problems(english: dict, zh: dict, name: str) -> list[str]:
    """Where a zh notebook is not the English one with only markdown sources replaced: cell ids and order, code
    cells (source, outputs, execution counts, metadata), markdown metadata and attachments, notebook metadata."""
    problems = []
    if [c["id"] for c in english["cells"]] != [c["id"] for c in zh["cells"]]:
        return [f"zh/{name}: its cells (ids, order) are not the English notebook's; run make zh"]
    if {k: v for k, v in english.items() if k != "cells"} != {k: v for k, v in zh.items() if k != "cells"}:
        problems.append(f"zh/{name}: notebook metadata differs from the English; run make zh")
    for en_cell, zh_cell in zip(english["cells"], zh["cells"], strict=True):
        keys = set(en_cell) | set(zh_cell)
        if en_cell["cell_type"] == "markdown":
            keys.discard("source")
        differ = sorted(key for key in keys if en_cell.get(key) != zh_cell.get(key))
        if differ:
            problems.append(f"zh/{name}: cell {en_cell['id']} ({en_cell['cell_type']}): {', '.join(differ)} not "
                            f"identical to the English; run make zh")
    return problems


def committed_problems(notebook: Path, zh_folder: Path = ZH_NOTEBOOKS, i18n: Path = I18N) -> list[str]:
    """Whether notebooks/zh/<notebook> is what the build makes now, and has the English code and outputs."""
    path = zh_folder / notebook.name
    if not path.is_file():
        return [f"zh/{notebook.name}: missing; run make zh"]
    committed = path.read_text(encoding="utf-8")
    problems = same_code_problems(json.loads(notebook.read_text(encoding="utf-8")), json.loads(committed),
                                  notebook.name)
    try:
        if dumps(build_notebook(notebook, warn=lambda _: None, i18n=i18n)) != committed:
            problems.append(f"zh/{notebook.name}: differs from what make zh builds; run make zh")
    except StaleTranslationError:
        problems.append(f"zh/{notebook.name}: cannot be built until its translation is complete and current")
    return problems


def check(i18n: Path = I18N) -> list[str]:
    """Every problem of the Chinese edition: the translations (staleness, glossary, faithfulness), the built
    notebooks (built = committed, code and outputs identical), README.zh.md's course table."""
    from minipeft.tools.zh_checks import glossary_problems, read_glossary, translation_file_problems

    terms, problems = read_glossary(), []
    for notebook in translated_notebooks(NOTEBOOKS, i18n):
        nb = json.loads(notebook.read_text(encoding="utf-8"))
        try:
            translation = load_translation(notebook, i18n)
        except ValueError as err:
            problems.append(str(err))
            continue
        problems += cell_problems(nb, notebook.name, translation).values()
        problems += translation_file_problems(notebook.name, translation)
        problems += glossary_problems(notebook.name, translation, terms)
        problems += committed_problems(notebook, i18n=i18n)
    names = {path.name for path in translated_notebooks(NOTEBOOKS, i18n)}
    problems += [f"zh/{path.name}: has no English notebook or no translation; run make zh (removes it)"
                 for path in english_notebooks(ZH_NOTEBOOKS) if path.name not in names]
    readme = REPO_ROOT / README_ZH
    if readme.exists() and sync_readme(readme.read_text(), english_notebooks(), REPO_ROOT, "zh") != readme.read_text():
        problems.append(f"{README_ZH}: the course table disagrees with the notebooks; run make zh")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["update", "accept", "build", "check"])
    parser.add_argument("notebooks", nargs="*", help="update: notebook files (default: every notebooks/NN_*.ipynb); "
                                                     "accept: one notebook's file name, then cell ids")
    parser.add_argument("--allow-stale", action="store_true",
                        help="build: keep untranslated or stale cells in English (a warning each) instead of refusing")
    parser.add_argument("--i18n", type=Path, default=I18N,
                        help="build, check: read the translation files from this folder (default: i18n/zh)")
    args = parser.parse_args(argv)
    if args.command == "update":
        notebooks = [Path(n) for n in args.notebooks] or english_notebooks()
        for nb in notebooks:
            print(update(nb).relative_to(REPO_ROOT))
        return 0
    if args.command == "accept":
        if len(args.notebooks) < 2:
            parser.error("accept needs a notebook and at least one cell id: accept 03_lora.ipynb f8cb7e02")
        try:
            print(accept(NOTEBOOKS / Path(args.notebooks[0]).name, args.notebooks[1:]).relative_to(REPO_ROOT))
        except ValueError as err:
            print(err, file=sys.stderr)
            return 1
        return 0
    if args.command == "build":
        try:
            changed = build(args.allow_stale, lambda line: print(line, file=sys.stderr), args.i18n)
        except ValueError as err:  # a stale translation (StaleTranslationError) or a malformed file
            print(err, file=sys.stderr)
            return 1
        for path in changed:
            print(f"{'updated' if path.exists() else 'removed'} {path.relative_to(REPO_ROOT)}")
        print(f"zh: {len(translated_notebooks(NOTEBOOKS, args.i18n))} notebooks in notebooks/zh/, "
              f"{len(changed)} files changed")
        return 0
    problems = check(args.i18n)
    for problem in problems:
        print(problem)
    print(f"zh: {len(problems)} problems" if problems else "zh: every check passes")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
