"""The Chinese edition (issue 31): every English markdown cell translated and current, the zh notebooks exactly what
`make zh` builds (code and outputs the English ones), the glossary's key terms, and each translation faithful to its
English (placeholders, code, math, links, numbers, headings, tables). Fast: nothing is executed."""

import io
import json
import re
import shutil
from contextlib import redirect_stdout
from pathlib import Path

import nbformat
import pytest

from minipeft.tools import build_slides, zh, zh_checks
from minipeft.tools import sync_notebooks as sync

ROOT = Path(__file__).resolve().parents[1]
TRANSLATED = zh.translated_notebooks()
BY_NAME = {"ids": lambda path: path.name[:2]}


def _nb(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_every_english_notebook_has_a_translation_file():
    missing = [path.name for path in zh.english_notebooks() if path not in TRANSLATED]
    assert not missing, f"no i18n/zh/NN.yml for {missing}: python scripts/zh.py update, then translate"
    assert len(TRANSLATED) >= 8


@pytest.mark.parametrize("notebook", TRANSLATED, **BY_NAME)
def test_every_english_markdown_cell_has_a_current_translation(notebook):
    problems = zh.cell_problems(_nb(notebook), notebook.name, zh.load_translation(notebook))
    assert not problems, "\n".join(problems.values())


@pytest.mark.parametrize("notebook", TRANSLATED, **BY_NAME)
def test_the_zh_notebook_is_what_make_zh_builds_with_the_english_code_and_outputs(notebook):
    problems = zh.committed_problems(notebook)
    assert not problems, "\n".join(problems)


def test_notebooks_zh_holds_only_built_notebooks():
    names = {path.name for path in TRANSLATED}
    assert [p.name for p in zh.english_notebooks(zh.ZH_NOTEBOOKS) if p.name not in names] == []


@pytest.mark.parametrize("notebook", TRANSLATED, **BY_NAME)
def test_each_translation_keeps_placeholders_code_math_links_numbers_headings_and_tables(notebook):
    problems = zh_checks.translation_file_problems(notebook.name, zh.load_translation(notebook))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("notebook", TRANSLATED, **BY_NAME)
def test_each_translation_uses_the_glossarys_key_terms(notebook):
    problems = zh_checks.glossary_problems(notebook.name, zh.load_translation(notebook), zh_checks.read_glossary())
    assert not problems, "\n".join(problems)


def _translated_copy(tmp_path: Path, name: str = "03_lora.ipynb") -> tuple[Path, Path]:
    """A copy of an English notebook and a complete translation of it (each zh the English, marked) in tmp_path."""
    folder, i18n = tmp_path / "notebooks", tmp_path / "i18n"
    folder.mkdir()
    i18n.mkdir()
    notebook = folder / name
    shutil.copy(ROOT / "notebooks" / name, notebook)
    cells = [{"id": cell["id"], "en_sha": zh.sha(zh.source_of(cell)), "en": zh.source_of(cell),
              "zh": f"{zh.source_of(cell)}\n\n（译文）"} for cell in zh.markdown_cells(notebook)]
    zh.translation_path(notebook, i18n).write_text(zh.dump_translation({"notebook": name, "cells": cells}))
    return notebook, i18n


def test_an_edited_english_cell_fails_the_check_naming_notebook_cell_and_first_changed_line(tmp_path):
    notebook, i18n = _translated_copy(tmp_path)
    assert zh.cell_problems(_nb(notebook), notebook.name, zh.load_translation(notebook, i18n)) == {}
    nb = _nb(notebook)
    cell = next(c for c in nb["cells"] if c["cell_type"] == "markdown" and len(c["source"]) > 3 and c is not
                nb["cells"][0])
    was = cell["source"][2].rstrip("\n")
    cell["source"][2] = "An English sentence an author edited.\n"
    notebook.write_text(zh.dumps(nb))

    problems = zh.cell_problems(_nb(notebook), notebook.name, zh.load_translation(notebook, i18n))
    assert problems == {cell["id"]: (
        f"03_lora.ipynb: cell {cell['id']}: stale, the English changed since it was translated, first at line 3: "
        f"was {was!r}, now 'An English sentence an author edited.'; fix zh, then `python scripts/zh.py accept "
        f"03_lora.ipynb {cell['id']}`")}
    with pytest.raises(zh.StaleTranslationError) as err:
        zh.build_notebook(notebook, i18n=i18n)
    assert problems[cell["id"]] in str(err.value) and "--allow-stale" in str(err.value)

    warnings = []
    built = zh.build_notebook(notebook, allow_stale=True, warn=warnings.append, i18n=i18n)
    assert warnings == [f"warning: {problems[cell['id']]} (kept in English)"]
    kept = next(c for c in built["cells"] if c["id"] == cell["id"])
    assert kept["source"] == cell["source"], "--allow-stale keeps the English cell"


def test_accept_marks_a_fixed_translation_current_and_refuses_an_unknown_cell(tmp_path):
    notebook, i18n = _translated_copy(tmp_path)
    nb = _nb(notebook)
    cell = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
    cell["source"].append("\nOne more English line.")
    notebook.write_text(zh.dumps(nb))
    assert list(zh.cell_problems(nb, notebook.name, zh.load_translation(notebook, i18n))) == [cell["id"]]
    before = zh.translation_path(notebook, i18n).read_text()
    with pytest.raises(ValueError, match="cell nope1234 is not a translated markdown cell"):
        zh.accept(notebook, [cell["id"], "nope1234"], i18n)
    assert zh.translation_path(notebook, i18n).read_text() == before, "a refused accept changed the file"
    zh.accept(notebook, [cell["id"]], i18n)
    assert zh.cell_problems(nb, notebook.name, zh.load_translation(notebook, i18n)) == {}


def test_missing_untranslated_and_orphan_entries_are_named(tmp_path):
    notebook, i18n = _translated_copy(tmp_path)
    translation = zh.load_translation(notebook, i18n)
    first, second, *_ = translation["cells"]
    second["zh"] = ""
    nb = _nb(notebook)
    markdown = [c for c in nb["cells"] if c["cell_type"] == "markdown"]
    translation["cells"].remove(next(e for e in translation["cells"] if e["id"] == markdown[-1]["id"]))
    translation["cells"].append({"id": "gone1234", "en_sha": "0" * 12, "en": "Old.", "zh": "旧的。"})
    problems = zh.cell_problems(nb, notebook.name, translation)
    assert problems == {
        second["id"]: f"03_lora.ipynb: cell {second['id']}: not translated (zh is empty)",
        markdown[-1]["id"]: (f"03_lora.ipynb: cell {markdown[-1]['id']}: no translation entry; run "
                             f"`python scripts/zh.py update`, then translate it"),
        "gone1234": ("03_lora.ipynb: cell gone1234: orphan, translated but the English notebook has no such markdown "
                     "cell any more; `python scripts/zh.py update` drops it"),
    }


def test_the_build_replaces_only_markdown_fills_placeholders_relinks_and_is_deterministic(tmp_path):
    notebook, i18n = _translated_copy(tmp_path)
    translation = zh.load_translation(notebook, i18n)
    links = "\n见 [设置](../docs/setup.md)、[笔记本 01](01_why_finetune.ipynb#x) 和 [本篇](03_lora.ipynb)。"
    snippets = "\n\n`layers[0](hidden)` 与\n\n```python\nout = blocks[1](x)\n```\n"
    translation["cells"][1]["zh"] += snippets + links
    zh.translation_path(notebook, i18n).write_text(zh.dump_translation(translation))
    english, built = _nb(notebook), zh.build_notebook(notebook, i18n=i18n)
    assert zh.same_code_problems(english, built, notebook.name) == []
    assert zh.dumps(built) == zh.dumps(zh.build_notebook(notebook, i18n=i18n)), "two builds differ"
    intro = "".join(built["cells"][0]["source"])
    url = "https://colab.research.google.com/github/minipeft/minipeft/blob/main/notebooks/zh/03_lora.ipynb"
    assert intro.startswith("[![在 Colab 中打开") and f"]({url})\n" in intro
    assert zh.ZH_STAMP_LABEL in intro and "Stored outputs" not in intro and "{{" not in intro
    second = "".join(next(c for c in built["cells"] if c["id"] == translation["cells"][1]["id"])["source"])
    assert second.endswith(snippets + links.replace("../docs", "../../docs").replace("(01_", "(../01_")), second

    code = next(c for c in built["cells"] if c["cell_type"] == "code" and c["outputs"])
    code["outputs"] = []
    assert zh.same_code_problems(english, built, notebook.name) == [
        f"zh/03_lora.ipynb: cell {code['id']} (code): outputs not identical to the English; run make zh"]


def test_every_stored_outputs_stamp_is_rendered_in_chinese_and_an_unreadable_one_kept():
    stamps = [zh.STAMP.search("".join(_nb(path)["cells"][0]["source"])) for path in zh.english_notebooks()]
    assert all(stamps), "a notebook lacks its stored-outputs stamp"
    for stamp in stamps:
        line = zh.zh_stamp(stamp.group(0))
        assert line.startswith(f"{zh.ZH_STAMP_LABEL}`cpu` 配置档，`") and "个 CPU 核心" in line, line
        assert re.search(r"，2026 年 12 月 \d{1,2} 日，运行 \d+ 分钟。", line), line
    gpu = zh.zh_stamp("**Stored outputs:** the `gpu` profile on `gpt2`, Tesla T4, 7 January 2027, 22 min to run. "
                      "`make outputs` ...")
    assert gpu.startswith(f"{zh.ZH_STAMP_LABEL}`gpu` 配置档，`gpt2`，Tesla T4，2027 年 1 月 7 日，运行 22 分钟。")
    odd = "**Stored outputs:** by hand, some day."
    assert zh.zh_stamp(odd) == odd


def test_the_faithfulness_check_names_notebook_cell_and_what_is_missing():
    en = ("## 2. Train\n\nWe train for 60 steps at $\\eta = 0.4251$ with `lora_r=4` ([setup](../docs/setup.md)).\n\n"
          "| a | b |\n|---|---|\n| 1 | 2 |\n\n{{stored_outputs}}")
    zh_text = "### 训练\n\n我们训练 6 步，`lora_r=4`（[设置](../docs/x.md)）。\n\n| a | b |\n|---|---|\n"
    assert zh_checks.faithfulness_problems("x.ipynb", "abc", en, zh_text) == [
        "x.ipynb: cell abc: missing in zh: placeholder {{stored_outputs}}, math $\\eta = 0.4251$, link target "
        "../docs/setup.md, number 2, number 60, number 0.4251, number 1",
        "x.ipynb: cell abc: headings differ: en has levels [2], zh [3]",
        "x.ipynb: cell abc: table rows differ: en has 3, zh 2",
    ]
    wrapped = "the optimiser is `AdamW([p for p in model.parameters() if\n  p.requires_grad])`."
    one_line = "优化器是 `AdamW([p for p in model.parameters() if p.requires_grad])`。"
    assert zh_checks.faithfulness_problems("x.ipynb", "abc", wrapped, one_line) == []
    assert zh_checks.faithfulness_problems("x.ipynb", "abc", en, "") == [], "untranslated: the staleness check's"


def test_the_articles_words_survive_translation_character_for_character():
    claim = "前缀微调由于不改变模型本身的参数,可以有效避免灾难性遗忘。"
    en = (f"The article: 「其中 A 的维度为 (r, d)」 (*where A is r x d*).\n\n> {claim}\n"
          ">\n> *Prefix-tuning ... avoids catastrophic forgetting.*")
    verbatim = f"原文写道：「其中 A 的维度为 (r, d)」。\n\n> {claim}"
    assert zh_checks.faithfulness_problems("x.ipynb", "abc", en, verbatim) == []
    tidied = verbatim.replace("为 (r, d)", "为（r, d）").replace("参数,可以", "参数，可以")  # "tidied" punctuation
    assert zh_checks.faithfulness_problems("x.ipynb", "abc", en, tidied) == [
        "x.ipynb: cell abc: missing in zh: article quote 其中 A 的维度为 (r, d), article quote "
        "前缀微调由于不改变模型本身的参数,可以有效避免灾难性遗忘。"]


def test_the_glossary_check_rejects_variants_and_wants_the_key_term():
    terms = zh_checks.read_glossary()
    assert zh_checks.Term(("slot error rate", "SER"), ("槽位错误率", "SER"), ("插槽错误率", "槽错误率")) in terms
    translation = {"cells": [
        {"id": "c1", "en": "Full fine-tuning moves every weight; a low-rank update does not.",
         "zh": "全量微调更新所有权重。"},
        {"id": "c2", "en": "LoRA of rank 4 on the base model.", "zh": "在基座模型上训练秩为 4 的 LoRA。"},
        {"id": "c3", "en": "the table ranks LoRA first", "zh": "表格把 LoRA 排在前面"},
    ]}
    assert zh_checks.glossary_problems("x.ipynb", translation, terms, exceptions={("x.ipynb", "c3", "rank")}) == [
        "x.ipynb: cell c1: uses '全量微调', rejected for 'full fine-tuning'; write '全参数微调'",
        "x.ipynb: cell c1: the English says 'full fine-tuning', the zh has none of 全参数微调",
    ]
    assert ("07_comparison.ipynb", "ec9c548f", "rank") in zh_checks.read_exceptions()


def test_pytest_does_not_collect_the_zh_notebooks_a_second_time():
    assert "--ignore=notebooks/zh" in (ROOT / "pyproject.toml").read_text()
    assert all(path.parent.name == "notebooks" for path in zh.english_notebooks())


def test_make_zh_builds_and_is_listed():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^zh: setup\n\t\.venv/bin/python scripts/zh\.py build \$\(ARGS\)$", makefile, flags=re.M)
    assert re.search(r"^slides-zh: setup\n\t\.venv/bin/python scripts/build_slides\.py --lang zh$", makefile,
                     flags=re.M)


def test_a_zh_deck_has_the_zh_notebooks_slides_without_badge_or_stamp(tmp_path):
    notebook = ROOT / "notebooks" / "00_start_here.ipynb"
    folder = tmp_path / "zh"
    folder.mkdir()
    built = zh.build_notebook(notebook, allow_stale=True, warn=lambda _: None)
    (folder / notebook.name).write_text(zh.dumps(built), encoding="utf-8")
    deck, slides = build_slides.build(folder / notebook.name, tmp_path / "decks")
    html = deck.read_text(encoding="utf-8")
    tagged = [c for c in built["cells"] if "slides" in c["metadata"].get("tags", [])]
    assert slides == len(tagged) > 1
    assert '<html lang="zh">' in html and zh.ZH_STAMP_LABEL not in html and "colab-badge.svg" not in html
    assert (tmp_path / "decks" / "reveal.js" / "dist" / "reveal.js").is_file(), "reveal.js not copied beside the deck"


def test_readme_zh_table_links_the_zh_notebooks_once_built(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[project.urls]\nRepository = '
                                             '"https://github.com/someone/course"\n')
    (tmp_path / "notebooks" / "zh").mkdir(parents=True)
    for folder, title, time in [("notebooks", "00 · Intro", "**Time:** about 7 minutes."),
                                ("notebooks/zh", "00 · 入门", "**时间：** 约 7 分钟，另加运行时间。")]:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {title}\n\n{time}")])
        (tmp_path / folder / "00_intro.ipynb").write_text(nbformat.writes(nb))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 01 · Later\n\n**Time:** 9 minutes.")])
    (tmp_path / "notebooks" / "01_later.ipynb").write_text(nbformat.writes(nb))
    for name, learn in [("README.md", "basics"), (sync.README_ZH, "基础")]:
        (tmp_path / name).write_text(f"# x\n\n{sync.TABLE_START}\n| 00 | x | {learn} |\n{sync.TABLE_END}\n")
    with redirect_stdout(io.StringIO()):
        assert sync.main([], tmp_path) == 0
        assert sync.main(["--check"], tmp_path) == 0
    table = (tmp_path / sync.README_ZH).read_text()
    assert "| # | 笔记本 | 你将学到 | 时间 | 打开（请先发布） |" in table
    assert ("| 00 | [入门](notebooks/zh/00_intro.ipynb) | 基础 | 约 7 分钟 | "
            "[![在 Colab 中打开：请先发布 (docs/publishing.md)](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/"
            "someone/course/blob/main/notebooks/zh/00_intro.ipynb) |") in table
    assert "| 01 | [Later](notebooks/01_later.ipynb) (尚未翻译) | — | 9 minutes | [![Open In Colab: publish" in table
    (tmp_path / sync.README_ZH).write_text(table.replace("约 7 分钟", "约 8 分钟"))
    with redirect_stdout(out := io.StringIO()):
        assert sync.main(["--check"], tmp_path) == 1
    assert "README.zh.md: the course table disagrees" in out.getvalue()


def test_the_two_readmes_link_each_other_and_readme_zh_links_resolve():
    readme, readme_zh = (ROOT / "README.md").read_text(), (ROOT / sync.README_ZH).read_text()
    assert "(README.zh.md)" in readme.split("\n\n")[1] and "(README.md)" in readme_zh.split("\n\n")[1]
    for target in re.findall(r"\]\(([^)\s]+)\)", readme_zh):
        if not re.match(r"^[a-z]+:", target):
            assert (ROOT / target.split("#")[0]).exists(), f"README.zh.md links {target}, which does not exist"


def _schedules(path: Path) -> list[list[list[str]]]:
    """Each schedule table of an instructors' guide (the tables whose header starts `| time |` or `| 时间 |`)."""
    text = path.read_text(encoding="utf-8")
    tables = re.findall(r"^\| (?:time|时间) \|.*\n\|[-| ]+\|\n((?:\|.*\n?)+)", text, flags=re.M)
    return [[[c.strip() for c in line.strip().strip("|").split("|")] for line in t.splitlines()] for t in tables]


def test_the_chinese_schedules_are_the_english_ones_row_for_row():
    english, chinese = _schedules(ROOT / "docs" / "instructors.md"), _schedules(ROOT / "docs" / "instructors.zh.md")
    assert len(english) == len(chinese) == 2
    for en_table, zh_table in zip(english, chinese, strict=True):
        assert [row[0] for row in zh_table] == [row[0] for row in en_table], "times differ"
        assert zh_table[-1][1] == "结束" and en_table[-1][1] == "end"
        for en_row, zh_row in zip(en_table, zh_table, strict=True):
            assert re.findall(r"\b0\d\b", zh_row[2]) == re.findall(r"\b0\d\b", en_row[2]), f"{en_row[0]}: notebooks"
            assert ("pre-run" in en_row[2]) == ("提前运行" in zh_row[2]), f"{en_row[0]}: the pre-run mark"
            missing = set(re.findall(r"\d+", " ".join(en_row[1:]))) - set(re.findall(r"\d+", " ".join(zh_row[1:])))
            assert not missing, f"{en_row[0]}: numbers {sorted(missing)} of the English row are not in the Chinese"


def test_colab_check_also_fetches_the_zh_notebooks_badges(tmp_path):
    from minipeft.tools import colab_check

    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[project.urls]\nRepository = '
                                             '"https://github.com/someone/course"\n')
    (tmp_path / "notebooks" / "zh").mkdir(parents=True)
    for path in ("notebooks/00_intro.ipynb", "notebooks/zh/00_intro.ipynb"):
        (tmp_path / path).write_text(nbformat.writes(nbformat.v4.new_notebook()))
    fetched = []
    with redirect_stdout(out := io.StringIO()):
        assert colab_check.main([], tmp_path, reachable=lambda: True, exists=lambda url: fetched.append(url) or True,
                                has_ref=lambda url, ref: True) == 0
    raw = "https://raw.githubusercontent.com/someone/course/main/notebooks/"
    assert fetched == [f"{raw}00_intro.ipynb", f"{raw}zh/00_intro.ipynb"]
    assert "all 2 badges answer" in out.getvalue()
