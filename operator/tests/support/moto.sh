#!/usr/bin/env bash
# Ensures a Python venv with moto's EC2 server exists and prints the path of its
# `moto_server` executable. Idempotent: a ready venv is reused as is.
set -euo pipefail

venv="${ENI_MOTO_VENV:-${HOME}/.cache/eni-operator/moto-venv}"
server="${venv}/bin/moto_server"

if [[ ! -x "${server}" ]]; then
    mkdir -p "$(dirname "${venv}")"
    # A half-made venv from an interrupted run would fail in odd ways: start clean.
    rm -rf "${venv}"
    python3 -m venv "${venv}" >&2
    "${venv}/bin/pip" install --quiet --disable-pip-version-check 'moto[server]' >&2
fi

echo "${server}"
