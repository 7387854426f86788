#!/usr/bin/env bash
# The GPU run plan: on a CUDA machine, run the benchmark on the GPU and write its JSON.
#
#   bash scripts/gpu_check.sh            # -> outputs/benchmark_gpu.json (under 8 minutes)
#
# Installs nothing: it uses .venv if `make setup` made one, else the machine's python3, and
# stops with a list of what is missing. ../shared/data is used when it is there; without it
# the benchmark uses a synthetic style image and skips the JPEG pipeline section.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
missing=$("$PY" - <<'PYEOF'
import importlib.util
need = ["torch", "torchvision", "PIL", "pytorch_lightning", "hydra", "tqdm"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))
PYEOF
)
if [ -n "$missing" ]; then
  echo "gpu_check: missing Python packages: $missing (make setup installs them)" >&2
  exit 1
fi
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
mkdir -p outputs
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout 470 "$PY" scripts/benchmark.py \
  --device cuda --repeats 5 --out outputs/benchmark_gpu.json
