# The two commands of the README. Each sets itself up first (scripts/setup.sh, idempotent).
.PHONY: course test setup lint solutions timings outputs cache cache-check colab colab-check slides figures browser \
	gpu-dry gpu-check bench forgetting-lab ladder

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

# Time every notebook in the active profile (ci unless MINIPEFT_PROFILE says otherwise), exercises as written.
timings: setup
	MINIPEFT_PROFILE=$${MINIPEFT_PROFILE:-ci} .venv/bin/python -m minipeft.tools.run_notebooks

# Regenerate the outputs stored in the notebooks: each run top to bottom in the cpu profile (MINIPEFT_PROFILE
# picks another), offline, and stamped with the profile, base model, machine and date. Slow: see docs/instructors.md.
outputs: setup
	MINIPEFT_PROFILE=$${MINIPEFT_PROFILE:-cpu} .venv/bin/python scripts/store_outputs.py $(NOTEBOOKS)

# minipeft's LoRA and prefix-tuning against peft's: step time, memory, parameter counts (benchmarks/; minutes on a
# CPU, the numbers depend on the machine). tests/test_benchmarks.py runs both at tiny sizes in `make test`.
# Notebook 06's forgetting lab on SmolLM2-135M: every run not yet in results/forgetting-lab/ (one JSON each, with
# provenance; about 5 minutes a run on 2 cores, so hours in all: stop it any time, it resumes). ARGS="--max-runs 4".
forgetting-lab: setup
	.venv/bin/python scripts/forgetting_lab.py $(ARGS)

# Notebook 08's ladder on SmolLM2-135M: a rate check, then 8 methods x 3 seeds, every run not yet in results/ladder/
# (one JSON each, with provenance; stop it any time, it resumes). ARGS="--max-runs 4" or "--method qlora".
ladder: setup
	.venv/bin/python scripts/ladder.py $(ARGS)

bench: setup
	.venv/bin/python benchmarks/bench_lora.py
	.venv/bin/python benchmarks/bench_prefix.py

# The gpu profile end to end on this CPU, not part of `make test` (slow on 2 cores): stand-ins for GPT-2 and GPT-2
# Medium (their shapes and tokenizer, random weights) in data/cache/standin/, every notebook in a dry run
# (MINIPEFT_DRY_RUN=1: 2 steps, 1 batch, a few MRs, 1 seed) into artifacts/gpu-dry/, notebook 05 on real E2E rows
# (MINIPEFT_E2E_DEVSET, default ../shared/data/e2e/devset.csv), and replicate_paper.py for one step of each method.
gpu-dry: setup
	.venv/bin/python scripts/gpu_dry.py

# On a CUDA machine: notebook 05 and one notebook-06 setting in the gpu profile on the stand-in, real step counts.
gpu-check: setup
	bash scripts/gpu_check.sh

# reveal.js slides, one deck per notebook, from the cells tagged `slides` (artifacts/slides/; nothing is executed).
slides: setup
	.venv/bin/python scripts/build_slides.py

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
# each diagram (docs/figures/*.svg) in the markdown cell that shows it, so Colab shows it too.
colab: setup
	.venv/bin/python scripts/sync_notebooks.py

# By hand, with internet (skipped without): every badge's notebook and the install cell's clone address exist.
colab-check: setup
	.venv/bin/python scripts/colab_check.py

# On request only: Debian's chromium (a system package, via apt-get) for the real-browser test, tests/test_browser.py.
browser:
	@bash scripts/install_browser.sh
