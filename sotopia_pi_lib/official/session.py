"""The project's server and the package's worker, wired together for one batch of jobs.

The server (in this process, on a free loopback port) serves the study's models under their labels;
the worker (the official environment, a subprocess) plays or rates the jobs, up to `max_live` at
once, each request routed by its header to the right model. Concurrent episodes' requests meet in
the server's micro-batcher, so the backends batch across episodes as with the project's own runner.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import BackendError
from ..llm.base import LLM
from ..llm.server import BackgroundServer, create_app
from .routing import Exchange, OfficialRouter
from .runtime import Worker

WORKER_SCRIPT = "worker"


class SessionConfig(BaseModel):
    """What the package is configured with for one batch (through its own gin bindings)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_live: int = Field(16, ge=1, description="jobs the worker runs at once")
    agent_temperature: float = Field(1.0, ge=0.0, description="agenerate_action.temperature")
    judge_temperature: float = Field(0.0, ge=0.0, description="ReachGoalLLMEvaluator.__acall__.temperature")
    max_wait_ms: float = Field(
        50.0, ge=0.0,
        description="server micro-batching window: a batch's answers go out together and the episodes' next "
        "turns come back over the next tens of milliseconds (each worker thread runs the package's Python)",
    )
    timeout_s: float = Field(
        3600.0, gt=0.0,
        description="longest wait for the worker's next result before it counts as hung (a dead worker is "
        "noticed at once; a result is one whole episode, which a CPU model may take many minutes to play)",
    )


class OfficialSession:
    """`with OfficialSession(models, config) as s:` then `s.submit(job)` and `s.results()`.

    `models` maps served names (the labels episodes record) to the study's models. Each result comes
    back with the exchanges the server answered for it.
    """

    def __init__(self, models: Mapping[str, LLM], config: SessionConfig) -> None:
        self.config, self.router = config, OfficialRouter()
        self._key = f"sk-local-{secrets.token_hex(16)}"  # only the worker knows it: the port is loopback but shared
        app = create_app(dict(models), api_key=self._key, max_wait_ms=config.max_wait_ms, router=self.router)
        self.server = BackgroundServer(app)
        self.worker: Worker | None = None
        self.pending = 0

    def __enter__(self) -> OfficialSession:
        self.server.start()
        try:
            self.worker = Worker(WORKER_SCRIPT, {
                "base_url": self.server.base_url, "api_key": self._key, "max_live": self.config.max_live,
                "agent_temperature": self.config.agent_temperature,
                "judge_temperature": self.config.judge_temperature,
            }, timeout_s=self.config.timeout_s)  # fmt: skip
        except BaseException:
            self.server.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        try:
            if self.worker is not None:
                self.worker.__exit__()
        finally:
            self.server.stop()

    @property
    def hello(self) -> dict[str, Any]:
        assert self.worker is not None, "use the session in a with block"
        return self.worker.hello

    def wire_models(self) -> tuple[str, str]:
        """The model names the package sends for an agent (or the judge) and for a reformatting call."""
        models = self.hello["models"]
        return models["agent"], models["reformat"]

    def submit(self, job: dict[str, Any]) -> None:
        assert self.worker is not None, "use the session in a with block"
        self.worker.send(job)
        self.pending += 1

    def results(self) -> Iterator[tuple[dict[str, Any], list[Exchange]]]:
        """Each submitted job's result with its exchanges, in finishing order, until none is pending."""
        assert self.worker is not None, "use the session in a with block"
        while self.pending:
            result = self.worker.next()
            if "id" not in result:
                raise BackendError(f"official worker printed a line that is not a result: {str(result)[:200]}")
            self.pending -= 1
            yield result, self.router.take(result["id"])
