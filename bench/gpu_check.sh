#!/usr/bin/env bash
# GPU checks in one command, meant to finish in under 5 minutes on one GPU:
#   1. the CUDA tests (tests/test_cuda.py): the hf backend's engine, grammar masks, sampling and
#      log-probabilities on the device, LoRA training in bf16;
#   2. if vLLM is installed or installs, the vllm backend (bench/gpu_vllm_lora.py): the embedded model's
#      config with dummy weights and two random LoRA adapters, one engine for three variants, both
#      adapters and the base in one batch, schema-constrained output that parses.
# The CUDA tests run on the folder SOTOPIA_PI_CUDA_MODEL names, else on the embedded model (any weights
# will do: they check code paths); when models/smollm2-135m-instruct has its config and tokenizer but
# not its weights (they are 540 MB), this script saves random weights beside a copy of them.
# Logs go to $OUT (default /tmp/gpu_check).
#
#   bash bench/gpu_check.sh            # PYTHON=... to choose the interpreter (default .venv/bin/python)
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export OMP_WAIT_POLICY=PASSIVE PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0

nvidia-smi -L | tee "$OUT/gpu.txt" || { echo "no NVIDIA GPU here"; exit 1; }
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA GPU'; print('torch', torch.__version__, torch.version.cuda)" \
    | tee -a "$OUT/gpu.txt" || exit 1

EMBEDDED=models/smollm2-135m-instruct
if [ -z "${SOTOPIA_PI_CUDA_MODEL:-}" ] && [ ! -f "$EMBEDDED/model.safetensors" ] && [ -f "$EMBEDDED/config.json" ]; then
    export SOTOPIA_PI_CUDA_MODEL="$OUT/random-weights"
    "$PYTHON" - "$EMBEDDED" "$SOTOPIA_PI_CUDA_MODEL" <<'PY'
import shutil, sys
from pathlib import Path
from transformers import AutoConfig, AutoModelForCausalLM
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.safetensors"))
AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src)).save_pretrained(dst)
PY
fi

echo "== 1. CUDA tests"
timeout 180 "$PYTHON" -m pytest -q -m cuda tests/test_cuda.py 2>&1 | tee "$OUT/cuda_tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== 2. vllm backend: one engine, two LoRA adapters"
if ! "$PYTHON" -c "import vllm" 2>/dev/null; then
    timeout 120 "$PYTHON" -m pip install -q vllm > "$OUT/vllm_install.log" 2>&1 \
        || echo "vLLM could not be installed here (see $OUT/vllm_install.log): vllm check skipped"
fi
timeout 150 "$PYTHON" bench/gpu_vllm_lora.py 2>&1 | tee "$OUT/vllm_lora.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "gpu_check: $( [ $status -eq 0 ] && echo PASSED || echo FAILED ) (logs in $OUT)"
exit $status
