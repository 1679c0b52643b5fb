"""`akson` of an older build, served the way this build serves (`bench/cost.py`'s *without*).

Run with `PYTHONPATH=<old build>/src`. `serve` starts the old build's app in this build's
`akson.serving.Workers` (one SO_REUSEPORT socket per worker, so connections spread evenly over
the workers); the old builds used uvicorn's shared socket, which loaded one worker and idled the
other, so the two builds would differ by how they accept connections rather than by what they
do per request. Every other command (`db upgrade`) is the old build's own CLI.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

SERVING = Path(__file__).resolve().parent.parent / "src" / "akson" / "serving.py"


def serve(argv: list[str], app: str = "akson.app:create_app") -> int:
    """`akson serve --host --port --workers` for the ASGI app factory `app` (an import path)."""
    import uvicorn

    ap = argparse.ArgumentParser(prog="serve")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    spec = importlib.util.spec_from_file_location("akson_current_serving", SERVING)
    assert spec is not None and spec.loader is not None
    serving = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serving)
    config = uvicorn.Config(app, factory=True, host=args.host, port=args.port,
                            access_log=False, log_level="warning", lifespan="on",
                            server_header=False)
    return 0 if serving.Workers(config, args.workers).run() else 1


def main() -> int:
    if sys.argv[1:2] == ["serve"]:
        return serve(sys.argv[2:])
    from akson.cli import main as akson_main  # the old build's, from PYTHONPATH

    akson_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
