#!/usr/bin/env bash
# Issue 13's GPU check, one prepared script of at most 8 minutes on one lent H100/H200:
#   1. LoRA DPO, rlaif vs TRL DPOTrainer, on a Llama 3.2 1B-shaped model (1.24B parameters, vocab 128256,
#      random weights, bf16), ~430-token pair sequences, batch 8 and 32 pairs: tokens/s and peak memory
#      (targets: >= 1.5x TRL tokens/s at <= 0.7x its peak memory);
#   2. rlaif --compile: MFU as the median over >= 50 timed steps (target >= 35%), compiled-graph count per
#      step (it must stop growing after the first steps: no recompiles);
#   3. the largest batch that fits, rlaif vs TRL, at that fixed sequence length;
#   4. GRPO generation tokens/s, vLLM vs transformers generate (bench/grpo_generation.py, rlaif's own samplers),
#      when vLLM is installed on the device (its wheel is too large to carry: else skipped, said). Not covered:
#      a GRPO step's wall time vs TRL's GRPOTrainer with vLLM colocate.
# Each part has its own timeout inside the 8-minute budget; results go to $OUT (json + logs).
# NOT RUN YET: written and checked by reading only (no GPU was lent to the session that wrote it).
#
# The machine has no network: TRL, datasets, pydantic (and the transformers version tested here) travel as
# wheels in .whl/, the SmolLM2 tokenizer in .devbench/tok/ (optional: liger-kernel and vllm wheels in .whl/).
#   device run: carry [".whl", ".devbench"], command: bash bench/gpu_train_bench.sh, timeout_s 540
# Make them here first (both ignored through .git/info/exclude):
#   printf '/.whl/\n/.devbench/\n' >> .git/info/exclude
#   python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 pydantic==2.13.4 pydantic_core==2.46.4 \
#     annotated-types typing-inspection typing_extensions==4.16.0 "regex>=2025.10.22" transformers==5.24.0
#   mkdir -p .devbench/tok && cp ~/.cache/rlaif/models/SmolLM2-135M-Instruct/{tokenizer*,chat_template*} .devbench/tok/
set -o pipefail
OUT=${OUT:-/tmp/bench-out}; mkdir -p "$OUT"
T0=$(date +%s); BUDGET=${BUDGET:-470}          # seconds for the whole script (the device call gets 540)
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/machine.txt"
python3 - <<'EOF' 2>&1 | tee -a "$OUT/machine.txt" || exit 1
import importlib, torch, transformers, trl, peft, accelerate, datasets
print("torch", torch.__version__, "transformers", transformers.__version__, "trl", trl.__version__, "peft",
      peft.__version__, "accelerate", accelerate.__version__, "datasets", datasets.__version__)
for m in ("liger_kernel", "vllm", "flash_attn"):
    try:
        print(m, getattr(importlib.import_module(m), "__version__", "installed"))
    except Exception as e:
        print(m, "absent", type(e).__name__)
from rlaif.train.logps import liger_usable
print("liger fused log-probs usable (self-check on this GPU):", liger_usable("cuda"))
EOF
MODEL=(--size llama1b --vocab 128256 --prompt-words 200 --completion-words 200 --tokenizer .devbench/tok)
run() {  # name, timeout cap, args...
  local name=$1 cap=$2; shift 2
  local t=$(left); (( t > cap )) && t=$cap
  if (( t < 30 )); then echo "== $name: skipped, $(left)s left of the budget"; return; fi
  echo "== $name (timeout ${t}s): $*"
  timeout "$t" python3 bench/train_throughput.py "${MODEL[@]}" --json "$OUT/$name.json" "$@" 2>&1 \
    | tee "$OUT/$name.log" | grep -v '^  *[0-9.]*,\?$' | tail -45
  # (a timed-out run ends its worker itself: train_throughput.py kills its child on SIGTERM)
}
# estimated (H200, by arithmetic, not measured): ~70 s, ~90 s, ~150 s (compile ~80 s + 56 steps), ~150 s (5 tries)
run dpo_b8 90 --batch-size 8 --steps 12 --warmup 4 --gc off
run dpo_b32 110 --batch-size 32 --steps 10 --warmup 4 --gc off
run compile_b32 160 --batch-size 32 --steps 56 --warmup 6 --gc off --workers rlaif --compile
run max_batch 150 --max-batch --batch-size 32 --gc off
if [ -f bench/grpo_generation.py ] && python3 -c "import vllm" 2>/dev/null && (( $(left) > 60 )); then
  echo "== grpo_generation (timeout $(left)s)"
  timeout "$(left)" python3 bench/grpo_generation.py --tokenizer .devbench/tok --json "$OUT/grpo_generation.json" \
    2>&1 | tee "$OUT/grpo_generation.log" | tail -20
else
  echo "== grpo_generation: skipped (vLLM not installed, or under 60 s left)"
fi
echo "total $(( $(date +%s) - T0 ))s"
ls -la "$OUT"
