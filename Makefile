# Recursion Cellular (RxRx1) pipeline. `make help` lists the targets.
SHELL := /bin/bash
PYTHON_SYS ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DEMO_DIR ?= demo_out
PYTEST_ARGS ?=
MODEL ?=
HOST ?= 127.0.0.1
PORT ?= 8000
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Docker (as in the seed): the Kaggle data and the output folder are mounted.
IMAGE ?= kaggle-cell:latest
CONTAINER ?= kaggle-cell
DATA_DIR ?= /data
OUT_DIR ?= $(CURDIR)/logs

.PHONY: help install system serve docker-serve demo demo-profile bench-accuracy bench-accuracy-kinds bench-resume bench-profile demo-manifest demo-folder demo-phenix demo-rxrx1_2020 demo-hpa demo-moths test test-fast lint bench clean run exec stop docker-build

help:  ## list targets
	@grep -E '^[a-zA-Z0-9_ -]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PIP) install -q "pip<24.1"            # catalyst 22.4's metadata needs an older pip
	$(PIP) install -q torch==2.13.0          # first, so nothing pulls a CUDA torch
	$(PIP) install -q -r requirements.txt
	touch $@

install: $(VENV)/.installed  ## create .venv and install the pinned requirements

# Debian packages the tests drive: chromium + its driver (the service's web page), tesseract
# (reads the page's screenshot back), and a single-node Slurm (the grid and sweeps on a real
# cluster: tests/slurm_cluster.py starts it); installed once, when one is missing
SYSTEM_TOOLS := chromium chromedriver tesseract munged slurmctld slurmd sbatch
system:  ## install the system packages the tests need (apt: chromium, tesseract, Slurm + munge)
	@(for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null || exit 1; done) || \
	{ $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q \
	chromium chromium-driver tesseract-ocr munge slurmctld slurmd slurm-client; }

serve: install  ## serve a model package over HTTP: make serve MODEL=/models/pkg [HOST=0.0.0.0 PORT=8000]
	@test -n "$(MODEL)" || { echo "make serve needs MODEL=<package, run or run tree>"; exit 2; }
	$(PY) src/serve.py --model "$(MODEL)" --host $(HOST) --port $(PORT)

demo: install  ## run the pipeline on generated demo data (DEMO_DIR=demo_out)
	PYTHON=$(PY) DEMO_DIR=$(DEMO_DIR) bash bin/demo.sh

demo-profile: install  ## profiles on generated screening plates: illumination, train, embed, correct, mAP table (~3 min)
	PYTHON=$(PY) DEMO_DIR=$(DEMO_DIR) bash bin/demo_profile.sh

demo-manifest demo-folder demo-phenix demo-rxrx1_2020 demo-hpa demo-moths: install  ## one adapter's demo: generate, train, predict (demo_out/<kind>)
	PYTHON=$(PY) DEMO_DIR=$(DEMO_DIR) KIND=$(@:demo-%=%) bash bin/demo_classify.sh

test: lint system  ## static checks, then the test suite (unit + end-to-end on tiny data); prints the 15 slowest
	$(PY) -m pytest -q --durations=15 $(PYTEST_ARGS)

test-fast: install system  ## the tests that train nothing (not marked slow), in about a minute and a half
	$(PY) -m pytest -q -m "not slow" --durations=15 $(PYTEST_ARGS)

lint: install  ## static checks: ruff (pyflakes, bugbear, import order), shellcheck, hadolint
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/shellcheck -x bin/*.sh .ci/run docker/entrypoint.sh
	$(VENV)/bin/hadolint docker/Dockerfile

bench: install  ## speed figures as ratios to their targets: loader, cache, Catalyst loop, predict-all, ensemble (~6 min)
	$(PY) bench/bench_speed.py

bench-profile: install  ## peak memory of a profile export against the number of plates (streams plates)
	$(PY) bench/bench_profile.py

bench-resume: install  ## time lost to a kill mid-stage: resume from the last epoch vs restart the stage
	$(PY) bench/bench_resume.py

bench-accuracy: install  ## the tricks' ablation on the hard benchmark (configs/bench/accuracy.yml; ~45 min on 2 cores)
	$(PY) bench/bench_accuracy.py

bench-accuracy-kinds: install  ## per target kind: the default recipe vs a plain PyTorch CNN (configs/bench/kinds.yml)
	$(PY) bench/bench_kinds.py

clean:  ## remove demo outputs and caches (keeps .venv)
	rm -rf $(DEMO_DIR) .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +

docker-build:  ## build the GPU image from docker/Dockerfile
	docker build -f docker/Dockerfile -t $(IMAGE) .

docker-serve: docker-build  ## serve MODEL (a package folder) from the image: make docker-serve MODEL=/models/pkg [PORT=8000]
	@test -n "$(MODEL)" || { echo "make docker-serve needs MODEL=<package folder>"; exit 2; }
	docker run --rm --gpus all -p $(PORT):8000 -v "$(abspath $(MODEL))":/models/package:ro $(IMAGE) \
		serve --model /models/package --device auto

run: docker-build  ## start the container with DATA_DIR at /data and OUT_DIR at /logs
	docker run -d --gpus all --ipc=host --name $(CONTAINER) \
		-v $(DATA_DIR):/data:ro -v $(OUT_DIR):/logs -v $(CURDIR):/kaggle-cell \
		-w /kaggle-cell $(IMAGE) sleep infinity

exec:  ## open a shell in the running container
	docker exec -it $(CONTAINER) bash

stop:  ## stop and remove the container
	docker rm -f $(CONTAINER)
