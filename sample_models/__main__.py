"""Run one scripted model server standalone: `python -m sample_models anthropic --port N`."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from sample_models import anthropic, openai
from sample_models.base import Reply, ScriptedServer


def load_script(path: Path, kind: str) -> list[Reply]:
    """Replies from a JSON file holding a list of entries such as `{"kind": "text", ...}`."""
    try:
        entries = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"--script {path}: {exc}") from exc
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SystemExit(f"--script {path}: expected a JSON list of objects")
    build = anthropic.reply_from_spec if kind == "anthropic" else openai.reply_from_spec
    try:
        return [build(entry) for entry in entries]
    except (KeyError, TypeError, ValueError) as exc:
        raise SystemExit(f"--script {path}: {exc}") from exc


def build_server(args: argparse.Namespace) -> ScriptedServer:
    """The server the command line asks for."""
    server: ScriptedServer
    if args.kind == "anthropic":
        server = anthropic.AnthropicServer(port=args.port, api_key=args.api_key,
                                           prompt_cache=args.prompt_cache)
    else:
        server = openai.OpenAIServer(port=args.port, api_key=args.api_key, flavor=args.flavor,
                                     models=args.model or None)
    if args.script:
        server.enqueue(*load_script(args.script, args.kind))
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sample_models",
                                     description=__doc__)
    parser.add_argument("kind", choices=["anthropic", "openai"])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--script", type=Path, help="JSON list of replies to serve first")
    parser.add_argument("--api-key", help="require this key (x-api-key / bearer)")
    parser.add_argument("--prompt-cache", action="store_true",
                        help="anthropic: simulate prompt caching")
    parser.add_argument("--flavor", choices=openai.FLAVORS, default="vllm",
                        help="openai: whose error shapes to imitate")
    parser.add_argument("--model", action="append",
                        help="openai: a served model name (repeatable; default: any name)")
    args = parser.parse_args(argv)
    server = build_server(args)
    stop = threading.Event()

    def request_stop(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with server:
        print(f"{args.kind} model server listening on {server.url}", flush=True)
        stop.wait()
    print(f"{args.kind} model server stopped; {len(server.requests)} requests served",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
