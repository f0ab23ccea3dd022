"""Build a model from a spec: validate it, import only the chosen backend, put it behind the cache.

Backends are imported lazily so that selecting `openai` never imports torch and a missing vLLM only
matters to whoever selects `vllm`. A spec is checked before any weights load, so a typo in a params file
fails at once with the list of what would have worked.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from ..errors import BackendError, ConfigError, SotopiaPiError
from ..paths import models_dir, project_root
from .base import LLM, Chain, Prompt, Then, WrappedLLM
from .cache import ResponseCache, choice_key, default_cache_path, model_hash, request_key
from .json_output import check_schemas
from .pool import EnginePool
from .types import BACKENDS, LLMRequest, LLMResponse, ModelSpec

log = logging.getLogger(__name__)

BACKEND_CLASSES: dict[str, tuple[str, str]] = {
    "hf": ("sotopia_pi_lib.llm.hf", "HFModel"),
    "openai": ("sotopia_pi_lib.llm.openai_backend", "OpenAIModel"),
    "vllm": ("sotopia_pi_lib.llm.vllm_backend", "VLLMModel"),
}
EMBEDDED = "embedded"
LOCAL_BACKENDS = ("hf", "vllm")  # backends whose `model` and `adapter` name weights on this machine
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_default_caches: dict[Path, ResponseCache] = {}
_default_lock = threading.Lock()


class CachedLLM(WrappedLLM):
    """Any LLM behind the response cache (or, with cache=None, behind the schema check only).

    A fully cached batch never calls the inner model, and backends load weights on first use, so a
    cached re-run needs no model at all. Identical requests in one batch are generated once.
    """

    def __init__(self, inner: LLM, cache: ResponseCache | None) -> None:
        super().__init__(inner)
        self.cache = cache
        self._identity: dict[str, Any] | None = None

    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            self._identity = dict(self.inner.identity())
        return dict(self._identity)

    def generate(self, requests: Sequence[LLMRequest], *, progress: bool = False) -> list[LLMResponse]:
        requests = list(requests)
        check_schemas(requests)
        if self.cache is None:
            return self.inner.generate(requests, progress=progress)
        model = model_hash(self.identity())
        keys = [request_key(model, r) for r in requests]
        found = self.cache.get_many(keys)
        todo = {k: r for k, r, hit in zip(keys, requests, found, strict=True) if hit is None}
        fresh = self._run_inner(list(todo.values()), progress)
        self.cache.put_many(self.identity(), list(zip(todo, fresh, strict=True)))
        by_key, out = dict(zip(todo, fresh, strict=True)), []
        for key, hit in zip(keys, found, strict=True):
            if hit is not None:
                out.append(hit)
            elif key in todo:
                out.append(by_key[key])
                del todo[key]  # later copies of the same request in this batch are replays
            else:
                out.append(by_key[key].model_copy(update={"cached": by_key[key].ok}))
        if progress:
            log.info(
                "%s: %d of %d requests from the cache", self.spec.label, sum(r.cached for r in out), len(out)
            )
        return out

    def generate_chained(self, first: Chain, then: Then, *, progress: bool = False) -> None:
        """Cached answers are handed to `then` at once (their follow-ups are looked up in turn); only
        misses reach the model, and each fresh answer is stored as it arrives, so an interrupted chain
        keeps what it got."""
        if self.cache is None:  # the backend checks each request's schema itself
            self.inner.generate_chained(first, then, progress=progress)
            return
        cache, model, identity = self.cache, model_hash(self.identity()), self.identity()

        def misses(pairs: Chain) -> list[tuple[Any, LLMRequest]]:
            out, queue = [], deque(pairs)
            while queue:
                key, request = queue.popleft()
                check_schemas([request])
                rkey = request_key(model, request)
                hit = cache.get_many([rkey])[0]
                if hit is None:
                    out.append(((key, rkey), request))
                else:
                    queue.extend(then(key, hit))
            return out

        def fresh(tagged: tuple[Any, str], response: LLMResponse) -> Chain:
            key, rkey = tagged
            cache.put_many(identity, [(rkey, response)])
            return misses(then(key, response))

        todo = misses(first)
        if todo:
            self.inner.generate_chained(todo, fresh, progress=progress)

    def _run_inner(self, requests: list[LLMRequest], progress: bool) -> list[LLMResponse]:
        if not requests:
            return []
        fresh = self.inner.generate(requests, progress=progress)
        if len(fresh) != len(requests):
            raise BackendError(
                f"{self.spec.label} returned {len(fresh)} responses for {len(requests)} requests"
            )
        return fresh

    def choice_logprobs(self, prompts: Sequence[Prompt], choices: Sequence[str]) -> list[dict[str, float]]:
        if self.cache is None:
            return self.inner.choice_logprobs(prompts, choices)
        model = model_hash(self.identity())
        keys = [choice_key(model, p, choices) for p in prompts]
        found = self.cache.get_logprobs_many(keys, choices)
        todo = {k: p for k, p, hit in zip(keys, prompts, found, strict=True) if hit is None}
        fresh = self.inner.choice_logprobs(list(todo.values()), choices) if todo else []
        self.cache.put_logprobs_many(self.identity(), list(zip(todo, fresh, strict=True)))
        by_key = dict(zip(todo, fresh, strict=True))
        return [hit if hit is not None else by_key[k] for k, hit in zip(keys, found, strict=True)]


def default_cache() -> ResponseCache:
    """One cache object per process for the default file, so its stats cover every model."""
    path = default_cache_path()
    with _default_lock:
        if path not in _default_caches:
            _default_caches[path] = ResponseCache(path)
        return _default_caches[path]


def parse_spec(spec: ModelSpec | Mapping[str, Any]) -> ModelSpec:
    if isinstance(spec, ModelSpec):
        return spec
    if not isinstance(spec, Mapping):
        raise ConfigError(f"a model spec must be a mapping with backend and model, got {spec!r:.80}")
    if spec.get("backend") not in BACKENDS:
        raise ConfigError(
            f"unknown backend {spec.get('backend')!r} in model spec; known backends: {', '.join(BACKENDS)}"
        )
    try:
        return ModelSpec.model_validate(dict(spec))
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'spec'}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"invalid model spec {dict(spec)!r:.120}: {problems}") from None


def known_local_models() -> list[str]:
    """`embedded` and every model folder under models/ (what an unknown-model error suggests)."""
    folder = models_dir()
    local = (
        sorted(str(p) for p in folder.glob("*") if (p / "config.json").is_file()) if folder.is_dir() else []
    )
    return [EMBEDDED, *local]


def resolve_local(name: str, what: str, marker: str, spec: ModelSpec) -> str:
    """A path (as given, or under the project root) holding `marker`, or a plausible hub id."""
    given = Path(name).expanduser()
    tried = [given] if given.is_absolute() else [Path.cwd() / given, project_root() / given]
    for path in tried:
        if path.exists():
            if not (path / marker).is_file():
                raise ConfigError(f"model spec {spec.label}: {what} {path} has no {marker}")
            return name if path == tried[0] else str(path)
    if _HUB_ID.match(name) and ".." not in name:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
        if offline and not _in_hub_cache(name, marker):
            raise ConfigError(
                f"model spec {spec.label}: {what} {name!r} is not in the local Hugging Face cache "
                f"and HF_HUB_OFFLINE is set; known models: {', '.join(known_local_models())}"
            )
        return name
    raise ConfigError(
        f"model spec {spec.label}: {what} {name!r} not found; tried {', '.join(map(str, tried))} "
        f"and it is not a Hugging Face hub id (org/name); known models: {', '.join(known_local_models())}"
    )


def _in_hub_cache(repo_id: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename), str)


def check_spec(spec: ModelSpec) -> ModelSpec:
    """Check that a local backend's model and adapter exist; relative paths found under the project
    root (not the working directory, e.g. a notebook's folder) come back absolute."""
    if spec.backend not in LOCAL_BACKENDS:
        return spec
    model = spec.model if spec.model == EMBEDDED else resolve_local(spec.model, "model", "config.json", spec)
    adapter = spec.adapter and resolve_local(spec.adapter, "adapter", "adapter_config.json", spec)
    return spec.model_copy(update={"model": model, "adapter": adapter})


def backend_class(backend: str) -> type[LLM]:
    if backend not in BACKEND_CLASSES:
        raise ConfigError(f"unknown backend {backend!r}; known backends: {', '.join(BACKEND_CLASSES)}")
    module_name, class_name = BACKEND_CLASSES[backend]
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise BackendError(f"backend {backend!r} cannot be imported: {e} (is its extra installed?)") from e
    return getattr(module, class_name)


def build_llm(
    spec: ModelSpec | Mapping[str, Any],
    cache: ResponseCache | None | Literal["default"] = "default",
    pool: EnginePool | None = None,
) -> LLM:
    """The model a spec names, behind the response cache (`default`: <project root>/cache/responses.sqlite;
    None: no caching, schemas still checked). Weights load on first use, not here. With a `pool`, models
    of one base model (differing in their adapter) share one engine (pool.py)."""
    spec = check_spec(parse_spec(spec))
    cls = backend_class(spec.backend)
    try:
        inner = pool.build(spec, cls) if pool is not None else cls(spec)  # type: ignore[call-arg]
    except SotopiaPiError:
        raise
    except Exception as e:  # noqa: BLE001 -- a user sees which spec failed, not a traceback
        raise BackendError(f"could not build {spec.label}: {type(e).__name__}: {e}") from e
    return CachedLLM(inner, default_cache() if cache == "default" else cache)
