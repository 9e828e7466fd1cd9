# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
KERNEL := sslcourse

.PHONY: setup demo test lab lectures bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (sslcourse)" >/dev/null
	@touch $(STAMP)

demo: setup
	$(PY) -m sslcourse pretrain --method simclr

# One pytest-xdist worker per core, one thread each (kernels and graders inherit OMP_NUM_THREADS);
# --dist loadscope keeps a notebook's cells, and a module's shared fixtures, on one worker.
TEST_WORKERS ?= auto
test: setup
	SSLCOURSE_QUICK=1 OMP_NUM_THREADS=1 $(PY) -m pytest tests lectures --nbval-lax --nbval-current-env \
	  -p no:cacheprovider --durations=30 -n $(TEST_WORKERS) --dist loadscope

lab: setup
	$(VENV)/bin/jupyter lab

# Re-run every lecture at full budget and commit the outputs (instructors).
lectures: setup
	for nb in lectures/*.ipynb; do \
	  $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=3600 "$$nb" || exit 1; \
	done

bench: setup
	$(PY) benchmarks/bench_augment.py
	$(PY) benchmarks/bench_moco_vs_simclr.py

clean:
	rm -rf $(VENV) runs build *.egg-info

# ---- Labs, for instructors (README, "For instructors"). tools/ never reaches students. ----
.PHONY: labs grade release
LAB_SOURCES := $(wildcard labs/*/*.ipynb labs/*/lab.toml) tools/labs.py tools/labcheck.py
LABS_STAMP  := build/labs/.built

# Student notebooks, solution notebooks and autograder bundles under build/labs/.
labs: setup $(LABS_STAMP)

$(LABS_STAMP): $(LAB_SOURCES) $(STAMP)
	$(PY) tools/labs.py build
	@touch $@

# make grade SUBMISSIONS=folder [LAB=05] [JOBS=2]: writes folder/grades.csv and folder/feedback/.
grade: labs
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=folder-of-notebooks [LAB=05] [JOBS=2]"; exit 2; }
	$(PY) tools/labs.py grade "$(SUBMISSIONS)" $(if $(LAB),--lab $(LAB)) --jobs $(or $(JOBS),1)

# build/release/ and build/release.zip: what students receive; fails on any leaked solution.
release: labs
	$(PY) tools/labs.py release
