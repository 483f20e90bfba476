#!/usr/bin/env bash
# Several nodes from one command, with the DeepSpeed launcher and a hostfile (passwordless ssh and pdsh from this
# node to every host; the repository and the environment at the same path everywhere; a shared filesystem for
# train.output_dir, which every rank writes its checkpoint shards into).
#
#   HOSTFILE=hosts.txt launch/multi_node.sh CONFIG [key.sub=value ...]
#
# hostfile: one line per node, "hostname slots=<GPUs>", e.g.
#   node-01 slots=8
#   node-02 slots=8
#
# Environment:
#   HOSTFILE          the hostfile (required)
#   MASTER_ADDR       address of rank 0 that every node can reach (default: the first host of the hostfile)
#   MASTER_PORT       rendezvous port (default 29500)
#   NUM_NODES         use the first N hosts of the hostfile (default: all)
#   DS_LAUNCHER       pdsh (default), openmpi, mvapich, slurm, ... (deepspeed --launcher)
#   OMP_NUM_THREADS   intra-op threads per process (default 1)
#   PYTHON            the interpreter of the environment with vla-drive and deepspeed (default: python)
#   LAUNCH_DRY_RUN=1  print the command instead of running it
# Variables to forward to the remote processes (NCCL_*, HF_HOME, OPENSCENE_DATA_ROOT, ...) go into a .deepspeed_env
# file (one NAME=value per line) in the repository root or your home directory; NCCL_* and PYTHON* are forwarded
# anyway.
set -euo pipefail
source "$(dirname "$0")/common.sh"
require_config "$@"
: "${HOSTFILE:?set HOSTFILE to a DeepSpeed hostfile (lines: hostname slots=N)}"
[[ -f "$HOSTFILE" ]] || { echo "HOSTFILE=$HOSTFILE: no such file" >&2; exit 2; }
master_addr="${MASTER_ADDR:-$(awk 'NF && $1 !~ /^#/ {print $1; exit}' "$HOSTFILE")}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
nodes=()
[[ -n "${NUM_NODES:-}" ]] && nodes=(--num_nodes "$NUM_NODES")
run "${PYTHON:-python}" -m deepspeed.launcher.runner --hostfile "$HOSTFILE" "${nodes[@]}" \
  --master_addr "$master_addr" --master_port "${MASTER_PORT:-29500}" --launcher "${DS_LAUNCHER:-pdsh}" \
  --no_local_rank --module vla_drive.cli train "$@"
