"""Every unit of work is keyed by everything that shapes it: a changed setting, scenario, model or prompt
gives new keys, so a re-run never reuses (or mixes in) episodes, tasks or ratings made otherwise;
scheduling-only settings keep the keys, so a re-run with a bigger batch still resumes."""

from __future__ import annotations

from typing import Any

import pytest
from fakes import ScriptedJudge, ScriptedPlayer

from sotopia_pi_lib.judge.rate import JudgeConfig, judge_episodes, judge_into_stores, plan_ratings
from sotopia_pi_lib.judge.ratings import RatingStore
from sotopia_pi_lib.llm.types import SamplingParams
from sotopia_pi_lib.pi.collect import collect
from sotopia_pi_lib.pi.generate import GenerationConfig, build_request, task_id_for
from sotopia_pi_lib.pi.tasks import GeneratedTask
from sotopia_pi_lib.sim import RuleConfig, RunConfig
from sotopia_pi_lib.sim import runner as sim_runner
from sotopia_pi_lib.sim.episode import AgentAction, Turn
from sotopia_pi_lib.sim.episode_store import EpisodeStore
from sotopia_pi_lib.sim.pairing import setups_for_task_set
from sotopia_pi_lib.sim.runner import EpisodeSpec, episode_id, model_hashes
from sotopia_pi_lib.store.keys import content_hash, result_fields

BASE = RunConfig(rules=RuleConfig(max_turns=4), progress=False)


@pytest.fixture(scope="module")
def spec(sotopia) -> EpisodeSpec:
    return EpisodeSpec(setup=setups_for_task_set(sotopia, "sotopia_all")[0], models=("m", "m"), seed=3)


def eid(spec: EpisodeSpec, config: RunConfig = BASE, tag: str = "v1") -> str:
    return episode_id(spec, config, model_hashes({"m": ScriptedPlayer(tag)}))


def test_episode_ids_change_with_every_result_shaping_input(spec):
    base = eid(spec)
    changed = {
        "temperature": eid(spec, BASE.model_copy(update={"sampling": SamplingParams(temperature=0.7, max_tokens=160)})),
        "max_tokens": eid(spec, BASE.model_copy(update={"sampling": SamplingParams(temperature=1.0, max_tokens=90)})),
        "max_argument_chars": eid(spec, BASE.model_copy(update={"max_argument_chars": 120})),
        "retries": eid(spec, BASE.model_copy(update={"retries": 3})),
        "rules": eid(spec, BASE.model_copy(update={"rules": RuleConfig(max_turns=6)})),
        "scenario text": eid(spec.model_copy(update={"setup": spec.setup.model_copy(
            update={"scenario": spec.setup.scenario + " It is raining."})})),
        "a goal": eid(spec.model_copy(update={"setup": spec.setup.model_copy(
            update={"goals": (spec.setup.goals[0] + " Be brief.", spec.setup.goals[1])})})),
        "model weights": eid(spec, tag="v2"),
        "seed": eid(spec.model_copy(update={"seed": 4})),
        "tags": eid(spec.model_copy(update={"tags": {"round": "2"}})),
    }
    assert all(v != base for v in changed.values()), [k for k, v in changed.items() if v == base]
    assert len(set(changed.values())) == len(changed)
    scheduling = BASE.model_copy(update={"max_live_episodes": 99, "chained": False, "use_sessions": False,
                                         "progress": True})
    assert eid(spec, scheduling) == base  # how episodes are scheduled never changes what they are


def test_a_field_added_to_the_simulation_config_is_keyed_without_touching_episode_id(spec):
    class Extended(RunConfig):
        politeness: float = 0.5

    assert eid(spec, Extended()) != eid(spec, RunConfig())
    assert eid(spec, Extended(politeness=0.9)) != eid(spec, Extended())
    assert "politeness" in result_fields(Extended()) and "progress" not in result_fields(Extended())


def test_a_changed_prompt_template_changes_the_ids_even_without_a_new_version(spec, monkeypatch):
    base = eid(spec)
    original = sim_runner.render_prompt
    monkeypatch.setattr(sim_runner, "render_prompt", lambda *a, **k: original(*a, **k)[:-1])
    assert eid(spec) != base


def _tasks(sotopia, n: int = 2) -> list[GeneratedTask]:
    combos = sotopia.task_set("sotopia_all")[:n]
    insp = sotopia.inspirational_prompts[0]
    return [GeneratedTask(env=sotopia.environments[c.env_id], inspiration=insp, example_env_id=c.env_id,
                          generator="x", prompt_version="v", agent_pairs=[c.agent_ids], max_similarity=0.0)
            for c in combos]


def _collect(sotopia, tmp_path, sim: RunConfig, player: Any, judge: Any):
    return collect(_tasks(sotopia), sotopia, source="sr", round_=1, player=player, judge=judge,
                   episodes_path=tmp_path / "sr_round1.episodes.jsonl",
                   ratings_path=tmp_path / "sr_round1.ratings.jsonl", sim=sim, judging=JudgeConfig(), seed=0)


def test_changed_settings_re_run_and_never_mix_old_episodes_or_ratings(sotopia, tmp_path, capsys):
    """A changed temperature gives new episode ids and plays again: the episodes and ratings made at
    the old one move to superseded/, so the files hold only the new collection."""
    judge = ScriptedJudge()
    first = _collect(sotopia, tmp_path, BASE, ScriptedPlayer(), judge)
    hotter = BASE.model_copy(update={"sampling": SamplingParams(temperature=0.5, max_tokens=160)})
    player = ScriptedPlayer()
    second = _collect(sotopia, tmp_path, hotter, player, judge)
    assert player.requests > 0  # played again, not skipped
    old, new = {e.episode_id for e in first.episodes}, {e.episode_id for e in second.episodes}
    assert len(old) == len(new) == 2 and not old & new
    in_file = {r.episode_id for r in EpisodeStore(tmp_path / "sr_round1.episodes.jsonl").records()}
    rated = {r.episode_id for r in RatingStore(tmp_path / "sr_round1.ratings.jsonl").records()}
    assert in_file == rated == new  # the files hold exactly this collection
    aside = {r.episode_id for r in EpisodeStore(tmp_path / "superseded" / "sr_round1.episodes.jsonl").records()}
    assert aside == old  # moved aside, not lost
    again = ScriptedPlayer()
    _collect(sotopia, tmp_path, hotter, again, ScriptedJudge())
    assert again.requests == 0  # same settings: resumed, nothing played twice


def test_ratings_judged_in_one_batch_across_files_keep_each_file_to_its_current_keys(sotopia, tmp_path):
    """judge_into_stores (05's benchmark files): each file gets its own ratings; with `retain`, a changed
    setting (here the judge temperature) moves each file's old ratings to superseded/, not to another file."""
    episodes = _collect(sotopia, tmp_path / "played", BASE, ScriptedPlayer(), ScriptedJudge()).episodes
    stores = [RatingStore(tmp_path / f"{i}.ratings.jsonl") for i in range(2)]
    groups = [([ep], store) for ep, store in zip(episodes, stores, strict=True)]
    judge_into_stores(groups, ScriptedJudge(), temperature=0.0, progress=False, retain=True)
    old = [{r.key for r in store.records()} for store in stores]
    rated = judge_into_stores(groups, ScriptedJudge(), temperature=0.5, progress=False, retain=True)
    for i, store in enumerate(stores):
        assert {r.episode_id for r in store.records()} == {episodes[i].episode_id}
        assert {r.key for r in store.records()} == {r.key for r in rated[i]} and not old[i] & {r.key for r in rated[i]}
        assert {r.key for r in RatingStore(tmp_path / "superseded" / f"{i}.ratings.jsonl").records()} == old[i]


def test_task_ids_follow_generator_sampling_and_example(sotopia):
    insp = sotopia.inspirational_prompts[0]
    envs = sorted(sotopia.environments.values(), key=lambda e: e.env_id)
    cfg = GenerationConfig(n_tasks=1)
    hash_a, hash_b = (content_hash(ScriptedPlayer(t).identity()) for t in ("a", "b"))
    base = task_id_for(insp, build_request(insp, envs[0], cfg, 1), hash_a)
    hotter = cfg.model_copy(update={"sampling": SamplingParams(temperature=0.3, max_tokens=400)})
    assert base == task_id_for(insp, build_request(insp, envs[0], cfg, 1), hash_a)
    assert len({base, task_id_for(insp, build_request(insp, envs[0], hotter, 1), hash_a),
                task_id_for(insp, build_request(insp, envs[1], cfg, 1), hash_a),
                task_id_for(insp, build_request(insp, envs[0], cfg, 2), hash_a),
                task_id_for(insp, build_request(insp, envs[0], cfg, 1), hash_b)}) == 5


def test_rating_keys_follow_the_judge_its_options_and_the_episode_content(sotopia, tmp_path):
    first = _collect(sotopia, tmp_path, BASE, ScriptedPlayer(), ScriptedJudge()).episodes
    kw: dict[str, Any] = {"agents": sotopia.agents, "samples": 1, "temperature": 0.0, "reasoning_max_chars": 64}

    def keys(episodes=first, judge=None, **changes: Any) -> set:
        return {p.key for p in plan_ratings(episodes, judge or ScriptedJudge(), **(kw | changes))}

    edited = [first[0].model_copy(update={"turns": [Turn(index=0, agent=0, raw="",
                                                           action=AgentAction(action_type="leave"))]}), first[1]]
    base = keys()
    for other in (keys(judge=ScriptedJudge("judge-v2")), keys(temperature=0.5), keys(reasoning_max_chars=32),
                  keys(samples=2) - base):
        assert other and not other & base
    assert len(keys(edited) & base) == 1  # only the unchanged episode keeps its rating
    store = RatingStore(tmp_path / "r.jsonl")
    judge_episodes(first, ScriptedJudge(), store=store, **kw, progress=False)
    retrained = ScriptedJudge("judge-v2")
    judge_episodes(first, retrained, store=store, **kw, progress=False)
    assert retrained.requests == 2  # before: the old judge's ratings counted as done for the new one
