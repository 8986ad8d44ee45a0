# The two commands of the README. Each sets itself up first (scripts/setup.sh: once, then skipped while .venv matches
# pyproject.toml). `make` alone prints the help below: every target, one line, its typical time (where each time comes
# from: docs/setup.md; tests/test_newcomer.py checks that every target is listed).
.PHONY: help course test setup lint solutions answer-key timings outputs cache cache-check colab colab-check slides \
	slides-zh zh figures browser gpu-dry gpu-check bench forgetting-lab ladder real-e2e
.DEFAULT_GOAL := help

define HELP
make TARGET: each target but help and browser first sets up .venv (scripts/setup.sh): about 2 minutes the first
time, then skipped in well under a second while .venv matches pyproject.toml. Times: 2 CPU cores (docs/setup.md).

  course          open the course: JupyterLab, notebook 00 in front       seconds, after set-up
  test            unit tests, every notebook (ci profile, offline), lint  about 4.5 min (pytest: 4 min 18 s)
  help            this list (what `make` alone prints)                    instant
  setup           only the set-up                                         about 2 min once, then under 1 s
  lint            ruff over the code, tests and notebooks                 about 1 s
  solutions       every notebook with every exercise's solution filled    about 3 min (3 min 6 s)
  answer-key      each exercise and its solution, in artifacts/           seconds
  timings         time every notebook (ci; MINIPEFT_PROFILE=cpu too)      about 3 min in ci, 2 hours in cpu
  outputs         re-run and store every notebook's outputs (cpu)         about 2 hours
  slides          one reveal.js deck per notebook, artifacts/slides/      about 5 s
  slides-zh       the same for the Chinese edition, artifacts/slides/zh/  about 5 s
  zh              the Chinese edition: notebooks/zh/, README.zh.md table  seconds
  figures         redraw the diagrams, docs/figures/*.svg                 seconds
  colab           rewrite badges, install cells, README course table      seconds
  colab-check     do the badges' notebooks exist online? (internet)       seconds; "not checked" offline
  cache           with internet: cache GPT-2, E2E and the corpus          minutes (GPT-2 alone is 0.55 GB)
  cache-check     offline: is everything cached?                          seconds
  browser         Debian's chromium for the browser test (apt-get)        about a minute (about 100 MB)
  bench           minipeft against peft: step time, memory, counts        minutes (not timed here)
  forgetting-lab  notebook 06's sweep, resumable (ARGS="--max-runs 4")    about 5 min a run, hours in all
  ladder          notebook 08's ladder, resumable (ARGS="--max-runs 4")   about 7-16 min a run, hours in all
  real-e2e        notebook 05's recipes on real E2E, resumable            72 min: 10 runs of 1-10 min
  gpu-dry         the gpu profile's code on this CPU (stand-in GPT-2)     about 10 min
  gpu-check       on a CUDA machine: notebook 05 and one 06 lab run       not timed yet (no GPU)
endef
export HELP

help:
	@echo "$$HELP"

setup:
	@bash scripts/setup.sh

# Open the course in JupyterLab: the repository root in its file browser, notebook 00 in front (--allow-root as root).
course: setup
	@bash scripts/course.sh

# Every test: unit tests and nbval over every notebook, in the small `ci` profile, offline.
test: setup
	MINIPEFT_PROFILE=$${MINIPEFT_PROFILE:-ci} HF_HUB_OFFLINE=1 .venv/bin/python -m pytest
	.venv/bin/ruff check minipeft tests notebooks scripts benchmarks

lint: setup
	.venv/bin/ruff check minipeft tests notebooks scripts benchmarks

# Every notebook with every unwritten exercise filled in by its reference solution: each check must pass.
solutions: setup
	MINIPEFT_PROFILE=$${MINIPEFT_PROFILE:-ci} .venv/bin/python -m minipeft.tools.run_notebooks --solutions

# Every exercise with its reference solution, one Markdown page for instructors: artifacts/answer-key.md.
answer-key: setup
	.venv/bin/python scripts/answer_key.py

# Time every notebook in the active profile (ci unless MINIPEFT_PROFILE says otherwise), exercises as written.
timings: setup
	MINIPEFT_PROFILE=$${MINIPEFT_PROFILE:-ci} .venv/bin/python -m minipeft.tools.run_notebooks

# Regenerate the outputs stored in the notebooks: each run top to bottom in the cpu profile (MINIPEFT_PROFILE
# picks another), offline, and stamped with the profile, base model, machine and date. Slow: see docs/instructors.md.
# Then the Chinese edition (make zh) copies the new outputs.
outputs: setup
	MINIPEFT_PROFILE=$${MINIPEFT_PROFILE:-cpu} .venv/bin/python scripts/store_outputs.py $(NOTEBOOKS)
	.venv/bin/python scripts/zh.py build

# minipeft's LoRA and prefix-tuning against peft's: step time, memory, parameter counts (benchmarks/; minutes on a
# CPU, the numbers depend on the machine). tests/test_benchmarks.py runs both at tiny sizes in `make test`.
# Notebook 06's forgetting lab on SmolLM2-135M: every run not yet in results/forgetting-lab/ (one JSON each, with
# provenance; about 5 minutes a run on 2 cores, so hours in all: stop it any time, it resumes). ARGS="--max-runs 4".
forgetting-lab: setup
	.venv/bin/python scripts/forgetting_lab.py $(ARGS)

# Notebook 08's ladder on SmolLM2-135M: a rate check, then 8 methods x 3 seeds (and a memory run where a method's
# runs hold no memory measure), every run not yet in results/ladder/
# (one JSON each, with provenance; stop it any time, it resumes). ARGS="--max-runs 4" or "--method qlora".
ladder: setup
	.venv/bin/python scripts/ladder.py $(ARGS)

# Notebook 05's three recipes trained and scored on real E2E (its dev set split by MR; MINIPEFT_E2E_DEVSET, default
# ../shared/data/e2e/devset.csv) on SmolLM2-135M, 3 seeds: every run not yet in results/real-e2e/ (resumable).
real-e2e: setup
	.venv/bin/python scripts/real_e2e.py $(ARGS)

bench: setup
	.venv/bin/python benchmarks/bench_lora.py
	.venv/bin/python benchmarks/bench_prefix.py

# The gpu profile end to end on this CPU, not part of `make test` (slow on 2 cores): stand-ins for GPT-2 and GPT-2
# Medium (their shapes and tokenizer, random weights) in data/cache/standin/, every notebook in a dry run
# (MINIPEFT_DRY_RUN=1: 2 steps, 1 batch, a few MRs, 1 seed) into artifacts/gpu-dry/, notebook 05 on real E2E rows
# (MINIPEFT_E2E_DEVSET, default ../shared/data/e2e/devset.csv), and replicate_paper.py for one step of each method.
gpu-dry: setup
	.venv/bin/python scripts/gpu_dry.py

# On a CUDA machine: notebook 05 and one notebook-06 lab run in the gpu profile on the stand-in, real step counts.
gpu-check: setup
	bash scripts/gpu_check.sh

# reveal.js slides, one deck per notebook, from the cells tagged `slides` (artifacts/slides/; nothing is executed). They
# work offline: reveal.js is copied beside them from data/cache/reveal.js (fetched by set-up from PyPI).
slides: setup
	.venv/bin/python scripts/build_slides.py

# The Chinese edition's decks, from notebooks/zh/ (make zh) into artifacts/slides/zh/, reveal.js beside them the same.
slides-zh: setup
	.venv/bin/python scripts/build_slides.py --lang zh

# The Chinese edition (中文版): notebooks/zh/*.ipynb built from the English notebooks and the translations in
# i18n/zh/*.yml (code and outputs copied), and README.zh.md's course table. Refuses a stale or missing translation,
# naming notebook, cell and the first changed line (ARGS="--allow-stale" keeps those cells in English, a preview).
# python scripts/zh.py check runs the checks of tests/test_zh.py.
zh: setup
	.venv/bin/python scripts/zh.py build $(ARGS)

# The course's diagrams, drawn by matplotlib into docs/figures/*.svg (committed; tests/test_figures.py compares them).
# Then `make colab` embeds the new drawings in the notebooks.
figures: setup
	.venv/bin/python scripts/make_figures.py

# Before a workshop, with internet: cache GPT-2 and E2E (Hugging Face caches) and the corpus (data/cache).
cache: setup
	.venv/bin/python -m minipeft.tools.cache_offline

# On any machine the cache was copied to: is everything there, with the network off? (make cache runs it too)
cache-check: setup
	HF_HUB_OFFLINE=1 .venv/bin/python -m minipeft.tools.cache_offline --check

# Regenerate the Colab badges, install cells and README course table from pyproject.toml's Repository, and embed
# each diagram (docs/figures/*.svg) in the markdown cell that shows it, so Colab shows it too. Then the Chinese
# edition (make zh), whose notebooks copy those cells and carry their own badges.
colab: setup
	.venv/bin/python scripts/sync_notebooks.py
	.venv/bin/python scripts/zh.py build

# By hand, with internet: every badge's notebook and the install cell's clone address exist. Offline it prints "not
# checked" and fails; CI never calls it.
colab-check: setup
	.venv/bin/python scripts/colab_check.py

# On request only: Debian's chromium (a system package, via apt-get) for the real-browser test, tests/test_browser.py.
browser:
	@bash scripts/install_browser.sh
