# Two commands do all set-up on a fresh machine:
#   make demo   -- creates .venv, installs, tokenizes a few digits (progressive strip) and samples
#                  new digits from the bundled wavegpt checkpoint
#   make test   -- creates .venv, installs, runs the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data

.PHONY: install demo test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first, pinned: a bare `torch` requirement would pull a multi-GB CUDA build
install: $(BIN)/python
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,gpt]'

demo: install
	$(BIN)/wavecode demo -o demo
	$(BIN)/wavegpt sample --checkpoint checkpoints/mnist-tiny --class-grid --n 4 --temperature 0.7 \
		--cfg 2 --quiet -o demo/wavegpt_samples.png --strip demo/wavegpt_progressive.png --frames 8

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python benchmarks/tokenizer_speed.py --data-dir $(DATA) --repeats 7
	$(BIN)/python benchmarks/token_stats.py --data-dir $(DATA)
	$(BIN)/python benchmarks/codec_rd.py --data-dir $(DATA)
	$(BIN)/python benchmarks/codec_visual.py --data-dir $(DATA)
	$(BIN)/python benchmarks/codec_gap.py --data-dir $(DATA)
	$(BIN)/python benchmarks/codec_encode_speed.py --data-dir $(DATA)
	$(BIN)/python benchmarks/codec_decode_speed.py --data-dir $(DATA)
	$(BIN)/python benchmarks/codec_batch_speed.py --data-dir $(DATA)
	$(BIN)/python benchmarks/language_ceiling.py --data-dir $(DATA)
	$(BIN)/python benchmarks/sampling_speed.py --checkpoint checkpoints/mnist-tiny --repeats 7
	$(BIN)/python benchmarks/sampling_speed.py --checkpoint checkpoints/mnist-tiny --max-tokens 0 \
		--batch-sizes 64 --repeats 3 --out benchmarks/results/sampling_speed_uncapped
	$(BIN)/python benchmarks/attention_kernel.py
	$(BIN)/python benchmarks/train_speed.py --data-dir $(DATA) --budget 300
	$(BIN)/python benchmarks/compare_tokenizers.py --data-dir $(DATA) --budget 600

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
