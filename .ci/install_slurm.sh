#!/usr/bin/env bash
# Install a single-node SLURM (Debian's slurm-wlm 22.05 + munge) for tests/test_slurm.py.
# Needs root; does nothing when slurmctld is already installed. The daemons are not started
# here: the tests start them (tests/slurm/cluster.py) and stop exactly what they started.
set -euo pipefail

if command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1; then
    echo "install_slurm: $(slurmctld -V) and munge already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install_slurm: needs root (apt-get install slurm-wlm munge)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q slurm-wlm munge
echo "install_slurm: installed $(slurmctld -V)"
