# Two set-up-and-go commands: `make demo` (main job) and `make test` (whole suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test setup bench-throughput clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

setup: $(BIN)/.installed

# A short RLx2 run (TD3, Pendulum-v1, 90% sparse actor and critic): a few minutes on 2 cores.
demo: setup
	$(BIN)/sparserl train --algo td3 --method rlx2 --env Pendulum-v1 --steps 12000 --seed 0 \
	    --learning-starts 1000 --eval-every 2000 --eval-episodes 10 --topology-delta 1000 \
	    --buffer-min 8000 --buffer-check-every 2000 --out runs/demo

test: setup
	@command -v cc >/dev/null || (apt-get update -qq && apt-get install -y -qq gcc) || echo "no C compiler: the generated-C export tests will skip"
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf runs .pytest_cache
