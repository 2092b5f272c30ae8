#!/usr/bin/env bash
# Readiness check: succeeds only when MODEL (default fashion_mnist) has a version in state
# AVAILABLE, as reported by TF Serving's REST status API on 127.0.0.1:PORT (default 8501).
# Pure bash (/dev/tcp): the tensorflow/serving image has no curl.
set -euo pipefail
model="${1:-fashion_mnist}"
port="${2:-8501}"
exec 3<>"/dev/tcp/127.0.0.1/${port}"
printf 'GET /v1/models/%s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "${model}" >&3
response=$(timeout 5 cat <&3)
exec 3<&-
grep -q '"state": *"AVAILABLE"' <<<"${response}"
