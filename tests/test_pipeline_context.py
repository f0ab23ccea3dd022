"""A stage's models: one engine per base model, shared by the policy's variants and (in the embedded
profiles) every role; released models let it go; nothing loads until a request needs it."""

from __future__ import annotations

import json

import pytest

from sotopia_pi_lib.pipeline.context import open_stage
from sotopia_pi_lib.pipeline.stages import policy_spec


@pytest.fixture
def ctx(tmp_path, monkeypatch):
    monkeypatch.setenv("SOTOPIA_PI_RESULTS", str(tmp_path))
    ctx = open_stage("05_evaluate", "params/ci.yaml")
    for name in ("sr", "bc", "bc_sr"):  # adapter folders as 04 leaves them (checked, never loaded here)
        folder = ctx.paths.adapter(name) / "adapter"
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))
    return ctx


def variant(ctx, name: str):
    return ctx.model(name, spec=policy_spec(ctx, name)).inner.inner  # MeteredLLM -> CachedLLM -> HFModel


def test_every_variant_and_role_of_one_base_shares_one_engine_that_is_not_loaded(ctx) -> None:
    models = [variant(ctx, n) for n in ("base", "sr", "bc", "bc_sr", "expert")]
    models += [ctx.model(role).inner.inner for role in ("partner", "judge")]
    assert len(ctx.pool.bases) == 1 and len({id(m.base) for m in models}) == 1
    base = models[0].base
    assert [m.adapter for m in models] == [None, "adapter1", "adapter2", "adapter3", None, None, None]
    assert not base.loaded and ctx.pool.loaded() == 0  # identity and construction load nothing
    assert len(base._users) == 7
    ctx.release("partner", "expert", "judge", "sr")
    assert len(base._users) == 3
    ctx.release("base", "bc", "bc_sr")
    assert not base._users
