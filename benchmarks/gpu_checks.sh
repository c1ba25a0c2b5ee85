#!/usr/bin/env bash
# Every GPU check of the performance issue in one command (about 8 minutes on an H100 / H200), for a
# session that is lent a GPU machine. That machine has no network but its python3 holds torch, transformers,
# accelerate and safetensors; the repository runs from the working tree (PYTHONPATH), nothing is installed.
#   device tool:  run(command="bash benchmarks/gpu_checks.sh", timeout_s=540)
#   here (plumbing only, tiny shapes on the CPU):  SMOKE=1 bash benchmarks/gpu_checks.sh
# Writes one JSON file per check to $OUT (else runs/gpu-checks/) and a log; a failed check does not stop the rest.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/gpu-checks}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

if [ "${SMOKE:-0}" = 1 ]; then
  device=(--device cpu); shape=(--size t5-tiny --batch-size 2 --input-length 32 --target-length 4)
  steps=(--steps 1 --warmup 1); repeats=(--repeats 1 --generate-repeats 1); bf16=()
else
  device=(--device cuda); shape=(--size t5-base --batch-size 32 --input-length 512 --target-length 32)
  steps=(); repeats=(--repeats 5 --generate-repeats 2); bf16=(--bf16)
fi

check() {  # check NAME SECONDS COMMAND...: run with a time limit, JSON to $out/NAME.json
  local name=$1 seconds=$2
  shift 2
  echo "== $name: $*" | tee -a "$out/log.txt"
  timeout "$seconds" "$@" > "$out/$name.json" 2>> "$out/log.txt"
  echo "== $name: exit $?" | tee -a "$out/log.txt"
}

{ command -v nvidia-smi > /dev/null && nvidia-smi; $python -c "import torch, transformers, accelerate; \
print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__)"; } \
  >> "$out/log.txt" 2>&1
if [ "${SMOKE:-0}" = 1 ]; then correctness=(--size t5-tiny); else correctness=(); fi
check correctness 120 $python benchmarks/gpu_correctness.py "${device[@]}" "${correctness[@]}"
check gpu 150 $python benchmarks/gpu.py "${device[@]}" "${shape[@]}" "${steps[@]}"
check overhead 150 $python benchmarks/overhead.py "${device[@]}" "${shape[@]}" "${bf16[@]}" "${repeats[@]}" \
  --methods hyperprompt-global
check profile 90 $python benchmarks/profile_step.py "${device[@]}" "${shape[@]}" "${bf16[@]}" --steps 2
if [ "${SMOKE:-0}" = 1 ]; then  # decoder-only: Qwen2.5-0.5B-shaped (full size on the GPU)
  causal=(--layers 1 --vocab-size 500 --batch-size 2 --input-length 8 --target-length 3 --prompt-length 2)
else
  causal=(--batch-size 16 --input-length 256 --target-length 32 --repeats 5 --generate-repeats 2)
fi
check overhead_causal 150 $python benchmarks/overhead_causal.py "${device[@]}" "${causal[@]}" "${bf16[@]}"
tail -n 4 "$out"/*.json >> "$out/log.txt" 2>/dev/null
echo "wrote $out"
