#!/usr/bin/env bash
# Container entry point. `serve --model /models/PKG [flags]` starts the model service on 0.0.0.0
# (port $PORT, default 8000); anything else runs as given (bash by default, as before).
set -euo pipefail
if [[ "${1:-}" == serve ]]; then
  shift
  exec python src/serve.py --host 0.0.0.0 --port "${PORT:-8000}" "$@"
fi
exec "$@"
