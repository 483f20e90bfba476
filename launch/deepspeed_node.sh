#!/usr/bin/env bash
# One node, NUM_GPUS processes, started by the DeepSpeed launcher. The ZeRO stage comes from the experiment config
# (distributed.backend=deepspeed, distributed.zero_stage, optionally distributed.deepspeed_config).
#
#   launch/deepspeed_node.sh CONFIG [key.sub=value ...]
#
# Environment:
#   NUM_GPUS          processes to start (default: every GPU of the node; on a machine without GPUs, give it)
#   MASTER_PORT       rendezvous port (default 29500; give concurrent runs distinct ports)
#   OMP_NUM_THREADS   intra-op threads per process (default 1: the DeepSpeed launcher does not set it)
#   PYTHON            the interpreter of the environment with vla-drive and deepspeed (default: python)
#   LAUNCH_DRY_RUN=1  print the command instead of running it
set -euo pipefail
source "$(dirname "$0")/common.sh"
require_config "$@"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
gpus=()
[[ -n "${NUM_GPUS:-}" ]] && gpus=(--num_gpus "$NUM_GPUS")
run "${PYTHON:-python}" -m deepspeed.launcher.runner "${gpus[@]}" --master_port "${MASTER_PORT:-29500}" \
  --no_local_rank --module vla_drive.cli train "$@"
