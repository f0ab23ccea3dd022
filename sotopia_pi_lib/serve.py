"""Serve any model spec as an OpenAI-compatible API: `python -m sotopia_pi_lib.serve --model SPEC`.

SPEC is `embedded` (the embedded SmolLM2 on the hf backend), `BACKEND:MODEL` (e.g. `hf:models/x`),
a YAML/JSON mapping (`{backend: hf, model: embedded, adapter: results/run/adapter}`) or a YAML file.
`--models` serves several under their own names from one server, a mapping served name -> SPEC
(`{expert: embedded, judge: embedded}`); models of one base share one engine (llm/pool.py).
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


def _yaml(text: str, flag: str) -> Any:
    text = text.strip()
    if text.endswith((".yaml", ".yml", ".json")) and Path(text).is_file():
        text = Path(text).read_text(encoding="utf-8")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{flag}: not YAML or JSON: {exc}") from None


def parse_model_spec(text: str) -> ModelSpec:
    """A ModelSpec from the --model argument; errors name the argument and the field at fault."""
    return model_spec_from(_yaml(text, "--model"), "--model")


def parse_served_models(text: str) -> dict[str, ModelSpec]:
    """The --models argument: served name -> ModelSpec (each in any form --model takes)."""
    data = _yaml(text, "--models")
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"--models: expected a mapping of served name -> model spec, got {text!r:.80}")
    return {str(name): model_spec_from(spec, f"--models.{name}") for name, spec in data.items()}


def model_spec_from(data: Any, flag: str) -> ModelSpec:
    text = str(data)
    if data == "embedded":
        return ModelSpec(backend="hf", model="embedded")
    if isinstance(data, str) and data.partition(":")[0] in BACKENDS and data.partition(":")[2]:
        backend, _, model = data.partition(":")
        data = {"backend": backend, "model": model}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{flag}: expected `embedded`, BACKEND:MODEL or a mapping with backend and model, "
            f"got {text!r:.80}"
        )
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{flag}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sotopia_pi_lib.serve",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--model",
        metavar="SPEC",
        help="`embedded`, BACKEND:MODEL, a YAML/JSON model spec, or a YAML file holding one",
    )
    which.add_argument(
        "--models",
        metavar="MAPPING",
        help="several models: a YAML/JSON mapping (or file) of served name -> SPEC",
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


def served_specs(args: argparse.Namespace) -> dict[str, ModelSpec]:
    if args.models:
        if args.served_model_name:
            raise ConfigError("--served-model-name goes with --model; --models names every model itself")
        return parse_served_models(args.models)
    spec = parse_model_spec(args.model)
    return {args.served_model_name or spec.model: spec}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        specs = served_specs(args)
        api_key = read_api_key(args.api_key_env)
        import uvicorn

        from .llm.pool import EnginePool
        from .llm.registry import build_llm
        from .llm.server import create_app, exposure_warning

        pool = EnginePool()
        llms = {name: build_llm(spec, cache="default" if args.cache else None, pool=pool) for name, spec in specs.items()}
    except SotopiaPiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = create_app(llms, api_key=api_key, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    warning = exposure_warning(args.host, api_key)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    auth = f"Bearer key from ${args.api_key_env}" if api_key else "no API key"
    served = ", ".join(f"{spec.label} as {name!r}" for name, spec in specs.items())
    print(f"Serving {served} on http://{args.host}:{args.port}/v1 ({auth})", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    finally:
        for llm in llms.values():
            llm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
