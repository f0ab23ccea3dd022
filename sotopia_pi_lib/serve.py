"""Serve any model spec as an OpenAI-compatible API: `python -m sotopia_pi_lib.serve --model SPEC`.

SPEC is `embedded` (the embedded SmolLM2 on the hf backend), `BACKEND:MODEL` (e.g. `hf:models/x`),
a YAML/JSON mapping (`{backend: hf, model: embedded, adapter: results/run/adapter}`) or a YAML file.
Binds to 127.0.0.1 unless told otherwise; with --api-key-env the key is read from that variable.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import ConfigError, SotopiaPiError
from .llm.types import BACKENDS, ModelSpec


def parse_model_spec(text: str) -> ModelSpec:
    """A ModelSpec from the --model argument; errors name the argument and the field at fault."""
    text = text.strip()
    if text == "embedded":
        return ModelSpec(backend="hf", model="embedded")
    if text.endswith((".yaml", ".yml", ".json")) and Path(text).is_file():
        text = Path(text).read_text(encoding="utf-8")
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--model: not YAML or JSON: {exc}") from None
    if isinstance(data, str) and data.partition(":")[0] in BACKENDS and data.partition(":")[2]:
        backend, _, model = data.partition(":")
        data = {"backend": backend, "model": model}
    if not isinstance(data, dict):
        raise ConfigError(
            f"--model: expected `embedded`, BACKEND:MODEL or a mapping with backend and model, "
            f"got {text!r:.80}"
        )
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"--model: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sotopia_pi_lib.serve",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="SPEC",
        help="`embedded`, BACKEND:MODEL, a YAML/JSON model spec, or a YAML file holding one",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind; 0.0.0.0 exposes it to the network")
    p.add_argument("--port", type=int, default=8000, help="port to bind")
    p.add_argument(
        "--api-key-env",
        metavar="VAR",
        default=None,
        help="require `Authorization: Bearer $VAR` (the key is read from this environment variable)",
    )
    p.add_argument(
        "--served-model-name", default=None, help="model name clients use (default: the spec's model)"
    )
    p.add_argument("--max-batch", type=int, default=32, help="most requests gathered into one generate call")
    p.add_argument("--max-wait-ms", type=float, default=10.0, help="how long to gather requests for a batch")
    p.add_argument("--cache", action="store_true", help="answer repeated requests from the response cache")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def read_api_key(env: str | None) -> str | None:
    if env is None:
        return None
    key = os.environ.get(env, "")
    if not key:
        raise ConfigError(f"--api-key-env {env}: environment variable {env} is not set or empty")
    return key


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = parse_model_spec(args.model)
        api_key = read_api_key(args.api_key_env)
        import uvicorn

        from .llm.registry import build_llm
        from .llm.server import create_app, exposure_warning

        llm = build_llm(spec, cache="default" if args.cache else None)
    except SotopiaPiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name = args.served_model_name or spec.model
    app = create_app(
        llm, model_name=name, api_key=api_key, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms
    )
    warning = exposure_warning(args.host, api_key)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    auth = f"Bearer key from ${args.api_key_env}" if api_key else "no API key"
    print(f"Serving {spec.label} as model {name!r} on http://{args.host}:{args.port}/v1 ({auth})", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    finally:
        llm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
