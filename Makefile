# The two commands of the README. Each sets itself up first (scripts/setup.sh, idempotent).
.PHONY: course test setup lint

setup:
	@bash scripts/setup.sh

# Open the course in JupyterLab at the first notebook.
course: setup
	.venv/bin/jupyter lab notebooks/00_start_here.ipynb

# Every test: unit tests and nbval over every notebook, in the small `ci` profile, offline.
test: setup
	MINIPEFT_PROFILE=$${MINIPEFT_PROFILE:-ci} HF_HUB_OFFLINE=1 .venv/bin/python -m pytest
	.venv/bin/ruff check minipeft tests notebooks scripts

lint: setup
	.venv/bin/ruff check minipeft tests notebooks scripts
