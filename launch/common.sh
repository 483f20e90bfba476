# Sourced by the launch scripts: run from the repository root, check the arguments, run (or print) a command.
# LAUNCH_DRY_RUN=1 prints the command instead of running it.

cd "$(dirname "${BASH_SOURCE[0]}")/.."

require_config() {
  if [[ $# -lt 1 || "$1" == -* ]]; then
    echo "usage: $(basename "$0") CONFIG [key.sub=value ...]   (CONFIG: a YAML under configs/ or a preset name)" >&2
    exit 2
  fi
}

run() {
  if [[ "${LAUNCH_DRY_RUN:-0}" == 1 ]]; then
    printf '%q ' "$@"
    printf '\n'
  else
    exec "$@"
  fi
}
