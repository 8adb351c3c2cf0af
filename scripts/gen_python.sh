#!/usr/bin/env bash
# Regenerates the Python messages and stubs from protos/ into clients/python/trackline/v1.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
out=clients/python
rm -f $out/trackline/v1/*_pb2*.py $out/trackline/v1/*_pb2*.pyi
"$PY" -m grpc_tools.protoc -Iprotos --python_out=$out --pyi_out=$out --grpc_python_out=$out protos/trackline/v1/*.proto
touch $out/trackline/v1/__init__.py
