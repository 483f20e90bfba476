#!/usr/bin/env bash
# One node, NUM_GPUS processes, started by accelerate.
#
#   launch/single_node.sh CONFIG [key.sub=value ...]
#
# Environment:
#   NUM_GPUS           processes to start (default: the GPUs nvidia-smi lists, else 1)
#   ACCELERATE_CONFIG  accelerate YAML (default configs/accelerate/single.yaml: DDP, or DeepSpeed when the experiment
#                      config says distributed.backend=deepspeed). configs/accelerate/zero2.yaml / zero3.yaml pin a
#                      DeepSpeed JSON; the experiment config must then agree (distributed.backend / zero_stage).
#   MASTER_PORT        rendezvous port on this node (default 29500; give concurrent runs distinct ports)
#   PYTHON             the interpreter of the environment with vla-drive installed (default: python)
#   LAUNCH_DRY_RUN=1   print the command instead of running it
set -euo pipefail
source "$(dirname "$0")/common.sh"
require_config "$@"
if [[ -z "${NUM_GPUS:-}" ]]; then
  NUM_GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  [[ "${NUM_GPUS:-0}" -ge 1 ]] || NUM_GPUS=1
fi
run "${PYTHON:-python}" -m accelerate.commands.launch \
  --config_file "${ACCELERATE_CONFIG:-configs/accelerate/single.yaml}" \
  --num_machines 1 --num_processes "$NUM_GPUS" --main_process_port "${MASTER_PORT:-29500}" \
  -m vla_drive.cli train "$@"
