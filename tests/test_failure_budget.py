"""The failure budget: a stage where more than run.max_failure_fraction of its units failed is recorded
as failed, with a count per cause, and not marked done; a re-run retries only the failed units."""

from __future__ import annotations

import pytest
from fakes import ScriptedJudge, ScriptedPlayer

from sotopia_pi_lib.llm.usage import MeteredLLM
from sotopia_pi_lib.pi.tasks import GeneratedTask, write_tasks
from sotopia_pi_lib.pipeline import stages
from sotopia_pi_lib.pipeline.budget import FailureBudget, FailureBudgetExceeded, failure_cause
from sotopia_pi_lib.pipeline.context import open_stage
from sotopia_pi_lib.store.lock import RunLock
from sotopia_pi_lib.store.manifest import load_manifest


def test_causes_are_short_and_countable():
    assert failure_cause("HTTP 503: injected 503 after 6 attempts") == "HTTP 503"
    assert failure_cause("APITimeoutError: Request timed out. after 6 attempts") == "timeout"
    assert failure_cause("unparseable action (length): '{\"action_type\": \"spe'") == "unparseable action"
    assert failure_cause("no valid JSON after 2 repair attempts: output at <root>: ...") == \
        "no valid JSON after 2 repair attempts"
    budget = FailureBudget("02_collect", 0.1)
    budget.add("episodes", 10, ["HTTP 500: x", "HTTP 500: y"])
    budget.add("ratings", 100, ["timed out"])
    assert budget.problems() == ["2 of 10 episodes failed (20.0% > 10.0%): HTTP 500 x2"]


@pytest.fixture
def run(tmp_path, monkeypatch, sotopia):
    monkeypatch.setenv("SOTOPIA_PI_RESULTS", str(tmp_path))
    ctx = open_stage("01_generate", "params/ci.yaml")
    combos = sotopia.task_set("sotopia_all")[:10]
    tasks = [GeneratedTask(env=sotopia.environments[c.env_id], inspiration=sotopia.inspirational_prompts[0],
                           example_env_id=c.env_id, generator="x", prompt_version="v", agent_pairs=[c.agent_ids],
                           max_similarity=0.0) for c in combos]
    write_tasks(ctx.paths.tasks, tasks)
    ctx.finish([ctx.paths.tasks])
    return tasks


def collect(player: ScriptedPlayer):
    ctx = open_stage("02_collect", "params/ci.yaml")
    ctx._models["judge"] = MeteredLLM(ScriptedJudge(), "judge")  # a scripted judge in place of the model
    collection = stages.collect_source(ctx, "bc", 1, player)
    return ctx, collection


def test_over_budget_is_not_done_and_a_re_run_retries_only_the_failed(run):
    doomed = {t.env.scenario for t in run[:3]}
    flaky = ScriptedPlayer(fault=lambda r: "HTTP 500: injected" if any(
        s in r.messages[-1].content or s in r.messages[0].content for s in doomed) else None)
    ctx, collection = collect(flaky)
    assert len(collection.episodes) == 7
    with pytest.raises(FailureBudgetExceeded, match=r"3 of 10 episodes failed \(30.0% > 2.0%\): HTTP 500 x3"):
        ctx.finish([ctx.paths.episodes("bc", 1)])
    assert not ctx.paths.done_marker("02_collect").exists()
    assert load_manifest(ctx.paths.root).stages["02_collect"].status == "failed"
    RunLock(ctx.paths.root).acquire().release()  # the failed stage let go of the run

    healed = ScriptedPlayer()
    ctx, collection = collect(healed)
    assert len(collection.episodes) == 10
    assert healed.requests == 3 * 3  # only the 3 failed episodes were played (3 turns each)
    ctx.finish([ctx.paths.episodes("bc", 1), ctx.paths.ratings("bc", 1)])
    assert ctx.paths.done_marker("02_collect").is_file()
