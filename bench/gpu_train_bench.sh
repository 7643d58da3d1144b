#!/usr/bin/env bash
# The GPU run of bench/train_throughput.py, as one prepared script for a lent H100 (issue 5):
# rlaif vs TRL DPOTrainer on 1B and 1.5B Llama-style models built from a config, bf16, batch 8
# pairs, ~420-token sequences, with and without gradient checkpointing. The machine has no
# network: TRL, datasets, pydantic (and the transformers version tested here) travel as wheels
# in .whl/, the SmolLM2 tokenizer in .devbench/tok/ (see bench/README or the closing note).
#   device run: carry [".whl", ".devbench"], command: bash bench/gpu_train_bench.sh
# Make them here first (both ignored through .git/info/exclude):
#   printf '/.whl/\n/.devbench/\n' >> .git/info/exclude
#   python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 pydantic==2.13.4 pydantic_core==2.46.4 \
#     annotated-types typing-inspection typing_extensions==4.16.0 "regex>=2025.10.22" transformers==5.24.0
#   mkdir -p .devbench/tok && cp ~/.cache/rlaif/models/SmolLM2-135M-Instruct/{tokenizer*,chat_template*} .devbench/tok/
# For the compiled run: bench/train_throughput.py --size 1.5b --batch-size 32 --gc off --workers rlaif --compile
set -o pipefail
OUT=${OUT:-/tmp/bench-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, trl, peft, accelerate, datasets, pyarrow; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__, 'accelerate', accelerate.__version__, 'datasets', datasets.__version__, 'pyarrow', pyarrow.__version__)" || exit 1
run() {  # name, timeout, args...
  local name=$1 t=$2; shift 2
  echo "== $name: $*"
  timeout "$t" python3 bench/train_throughput.py --tokenizer .devbench/tok --json "$OUT/$name.json" "$@" 2>&1 | tee "$OUT/$name.log" | tail -40
  pkill -f "train_throughput.py --worker" || true   # a timed-out run must not keep the GPU busy
}
run 1b_gc_off 150 --size 1b --steps 20 --batch-size 8 --gc off
run 1b_gc_on 150 --size 1b --steps 20 --batch-size 8 --gc on
run 1.5b_gc_off 170 --size 1.5b --steps 20 --batch-size 8 --gc off
ls -la "$OUT"
