"""The sotopia prompt style: the official package plays and rates, the project's server answers.

Unit tests of the routing and the record keeping run without the package. Tests marked
`needs_official` drive the package's worker (`make sotopia`) against a scripted model (what reaches the
model and what the package makes of the answer), the golden test checks the evaluator's input against
154 released episodes, and one `model` test plays and rates an episode with the real embedded model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from official_support import EVALUATOR_ASKS, HUMAN_EVAL, Scripted, evaluation_json, released_episodes

from sotopia_pi_lib.config import load_config
from sotopia_pi_lib.data import load_sotopia
from sotopia_pi_lib.judge.official import evaluation_schema_from, official_rubric_version, rate_official
from sotopia_pi_lib.judge.rate import judge_episodes, rating_version
from sotopia_pi_lib.llm.registry import build_llm
from sotopia_pi_lib.llm.schema import check_schema
from sotopia_pi_lib.llm.server import create_app
from sotopia_pi_lib.official import official_available
from sotopia_pi_lib.official.routing import ROUTE_HEADER, OfficialRouter, route_seed
from sotopia_pi_lib.official.session import OfficialSession, SessionConfig
from sotopia_pi_lib.pi.sft import to_examples
from sotopia_pi_lib.pipeline.context import resolve_params
from sotopia_pi_lib.sim import EpisodeStore, RuleConfig, RunConfig, episode_id, make_specs, run_episodes
from sotopia_pi_lib.sim.official import OfficialPlay, action_schema_from, end_reason_from, setup_payload
from sotopia_pi_lib.sim.pairing import setups_for_task_set
from sotopia_pi_lib.sim.style import is_constrained_style, is_official_style, style_version

needs_official = pytest.mark.skipif(not official_available(), reason="run `make sotopia` first")
FIXTURES = Path(__file__).parent / "fixtures"
SOTOPIA = RunConfig(prompts="sotopia", rules=RuleConfig(max_turns=20), progress=False)
JSON_STYLE = SOTOPIA.model_copy(update={"sotopia": SOTOPIA.sotopia.model_copy(update={"json_schema": True})})


# -- the style in the config and the episode ids ------------------------------------------------------
def test_the_project_style_is_named_by_its_prompt_version(sotopia):
    """A project-style record's prompt_version is the project's template version, as before the style."""
    assert style_version(RunConfig()) == RunConfig().prompt_version == "sotopia-pi-lib/v2"


def test_the_style_and_its_decoding_are_part_of_the_episode(sotopia):
    [spec] = make_specs(setups_for_task_set(sotopia, "sotopia_hard")[:1], ("m", "m"))
    ids = {episode_id(spec, c, {"m": "same-model"}) for c in (RunConfig(), SOTOPIA, JSON_STYLE)}
    assert len(ids) == 3
    assert style_version(SOTOPIA) == "sotopia==0.0.6" and style_version(JSON_STYLE) == "sotopia==0.0.6+json"
    assert is_official_style("sotopia==0.0.6") and not is_official_style("sotopia-pi-lib/v2")
    assert is_constrained_style("sotopia==0.0.6+json") and not is_constrained_style("sotopia==0.0.6")


def test_profiles_choose_the_style():
    assert load_config("params/paper.yaml").simulation.prompts == "sotopia"
    assert not load_config("params/paper.yaml").simulation.sotopia.json_schema
    for profile in ("smoke", "ci"):
        assert load_config(f"params/{profile}.yaml").simulation.prompts == "project"


def test_the_package_end_reasons_map_to_the_record(sotopia):
    assert end_reason_from("Agent 2 is leaving; ") == "leave"
    assert end_reason_from("The conversation is too long; Agent 1 is leaving; ") == "leave"
    assert end_reason_from("The conversation stales for too long; ") == "stale"
    assert end_reason_from("The conversation is too long; ") == "max_turns"
    with pytest.raises(ValueError, match="no known reason"):
        end_reason_from("")


def test_a_setup_without_relationship_is_refused(sotopia):
    setup = setups_for_task_set(sotopia, "sotopia_hard")[0]
    assert setup_payload(setup)["env"]["relationship"] == int(setup.relationship)
    with pytest.raises(Exception, match="no relationship type"):
        setup_payload(setup.model_copy(update={"relationship": None}))


PACKAGE_ACTION = {"title": "AgentAction", "type": "object", "description": "x",
                  "properties": {"action_type": {"title": "A", "enum": ["none", "speak", "leave"], "type": "string"},
                                 "argument": {"title": "B", "type": "string"}},
                  "required": ["action_type", "argument"]}  # fmt: skip


def test_the_tightened_schemas_are_decodable_and_keep_the_ranges():
    action = action_schema_from(PACKAGE_ACTION, 120)
    check_schema(action)
    assert action["properties"]["action_type"]["enum"] == ["none", "speak", "leave"]
    assert action["properties"]["argument"]["maxLength"] == 120
    dims = ["believability", "relationship", "knowledge", "secret", "social_rules",
            "financial_and_material_benefits", "goal"]  # fmt: skip
    pair = {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]}
    package = {"properties": {"agent_1_evaluation": {"$ref": "#/definitions/E"}, "agent_2_evaluation": {"$ref": "#/definitions/E"}},
               "required": ["agent_1_evaluation", "agent_2_evaluation"],
               "definitions": {"E": {"properties": {d: pair for d in dims}, "required": dims}}}  # fmt: skip
    evaluation = evaluation_schema_from(package, 16)
    check_schema(evaluation)
    secret = evaluation["properties"]["agent_2_evaluation"]["properties"]["secret"]["prefixItems"]
    assert secret == [{"type": "string", "maxLength": 16}, {"type": "integer", "minimum": -10, "maximum": 0}]
    package["definitions"]["E"]["required"] = [*dims, "charisma"]
    with pytest.raises(Exception, match="charisma"):
        evaluation_schema_from(package, 16)


# -- the router ----------------------------------------------------------------------------------------
def _route(**extra):
    base = {"episode": "ep-1", "slot": "agent1", "turn": 3, "seed": 7, "max_tokens": 99,
            "models": {"gpt-4-0613": "policy", "gpt-3.5-turbo-0613": "partner"}}  # fmt: skip
    return json.dumps(base | extra)


def test_the_router_sends_each_wire_name_to_its_model_and_fills_in_what_the_package_leaves_out():
    policy, partner, router = Scripted("policy"), Scripted("partner"), OfficialRouter()
    router.schemas["action"] = action_schema_from(PACKAGE_ACTION, 50)
    chat = [{"role": "user", "content": "Imagine you are X. You are at Turn #3."}]
    with TestClient(create_app({"policy": policy, "partner": partner}, router=router)) as client:
        ok = client.post("/v1/chat/completions", json={"model": "gpt-4-0613", "messages": chat, "temperature": 1.0},
                         headers={ROUTE_HEADER: _route(schema_name="action")})
        fix = client.post("/v1/chat/completions", json={"model": "gpt-3.5-turbo-0613", "messages": chat, "max_tokens": 5},
                          headers={ROUTE_HEADER: _route()})
        missing = client.post("/v1/chat/completions", json={"model": "gpt-4-0613", "messages": chat})
        unrouted = client.post("/v1/chat/completions", json={"model": "gpt-4-1106-preview", "messages": chat},
                               headers={ROUTE_HEADER: _route()})
    assert ok.status_code == 200 and fix.status_code == 200
    assert missing.status_code == 400 and ROUTE_HEADER in missing.json()["error"]["message"]
    assert unrouted.status_code == 400 and "gpt-4-1106-preview" in unrouted.json()["error"]["message"]
    [asked], [fixed] = policy.requests, partner.requests
    assert asked.sampling.max_tokens == 99 and fixed.sampling.max_tokens == 5  # the request's own wins
    assert asked.json_schema == router.schemas["action"] and fixed.json_schema is None
    assert asked.session == "ep-1/agent1/gpt-4-0613" and fixed.session == "ep-1/agent1/gpt-3.5-turbo-0613"
    assert asked.seed != fixed.seed
    [one, two] = router.take("ep-1")
    assert (one.served, one.wire_model, one.turn, one.messages[0].content) == ("policy", "gpt-4-0613", 3, chat[0]["content"])
    assert two.served == "partner" and router.take("ep-1") == []


def test_route_seeds_depend_on_every_part_of_the_route_and_nothing_else():
    from sotopia_pi_lib.official.routing import Route

    base = Route.model_validate_json(_route())
    seeds = {route_seed(base, "gpt-4-0613")}
    for change in ({"seed": 8}, {"slot": "agent0"}, {"turn": 4}, {"sample": 1}, {"episode": "ep-2"}):
        seeds.add(route_seed(base.model_copy(update=change), "gpt-4-0613"))
    seeds.add(route_seed(base, "gpt-3.5-turbo-0613"))
    assert len(seeds) == 6  # the episode id is not part of it: only its seed, slot, turn, name, sample
    assert route_seed(base, "gpt-4-0613") == route_seed(Route.model_validate_json(_route()), "gpt-4-0613")


# -- the package's worker against a scripted model ------------------------------------------------------
class Garbled(Scripted):
    """Never writes JSON: every turn goes through the package's reformatting call."""

    def _answer(self, request):
        response = super()._answer(request)
        return response.model_copy(update={"text": "I think I will " + response.text.replace('"', "")})


@pytest.fixture(scope="module")
def played(sotopia, tmp_path_factory):
    """One batch, one worker: two self-play episodes, one pairing of two models (twice, same seed),
    one model whose output never parses; then the package's evaluator rates them all."""
    setups = setups_for_task_set(sotopia, "sotopia_hard")
    models = {"m": Scripted(speak_turns=2), "a": Scripted("a", speak_turns=1), "b": Scripted("b", speak_turns=1),
              "g": Garbled("g", speak_turns=1)}  # fmt: skip
    specs = (make_specs(setups[:2], ("m", "m"), seed=5, tags={"source": "sr"})
             + make_specs(setups[2:3], ("a", "b"), seed=11, tags={"copy": "1"})
             + make_specs(setups[2:3], ("a", "b"), seed=11, tags={"copy": "2"})
             + make_specs(setups[3:4], ("g", "g"), seed=2))  # fmt: skip
    store = EpisodeStore(tmp_path_factory.mktemp("episodes") / "episodes.jsonl")
    fixer, judge = Scripted("fixer"), Scripted("judge")
    result = run_episodes(specs, models, SOTOPIA, store, reformatter=fixer)
    ratings = judge_episodes(result.records, judge, progress=False)
    by_model = {r.models: [x for x in result.records if x.models == r.models] for r in result.records}
    return {"result": result, "store": store, "specs": specs, "models": models, "fixer": fixer, "judge": judge,
            "ratings": ratings, "by_model": by_model}  # fmt: skip


@pytest.mark.slow
@needs_official
def test_episodes_are_played_by_the_package_and_stored_with_their_prompts(played):
    result, store = played["result"], played["store"]
    assert result.summary.completed == 5 and not result.summary.failed
    for record in played["by_model"][("m", "m")]:
        assert record.prompt_version == "sotopia==0.0.6" and record.tags == {"source": "sr"}
        assert [t.action.action_type for t in record.turns] == ["speak"] * 4 + ["leave"]
        assert [t.agent for t in record.turns] == [0, 1, 0, 1, 0] and record.end_reason == "leave"
        for turn in record.turns:
            [message] = turn.prompt
            name = record.agent_names[turn.agent]
            assert message.role == "user" and message.content.startswith(f"Imagine you are {name},")
            assert f"You are at Turn #{turn.index}." in message.content
            assert json.loads(turn.raw)["action_type"] == turn.action.action_type and turn.reformatted is None
    assert sorted(r.episode_id for r in store.records()) == sorted(r.episode_id for r in result.records)
    again = run_episodes(played["specs"], played["models"], SOTOPIA, store, reformatter=played["fixer"])
    assert again.summary.skipped == 5 and not again.records  # resumes: nothing left to play


@pytest.mark.slow
@needs_official
def test_each_agent_reaches_its_own_model_with_reproducible_seeds(played):
    a, b = played["models"]["a"], played["models"]["b"]
    first, second = played["by_model"][("a", "b")]
    for record in (first, second):
        names = record.agent_names
        assert [t.action.action_type for t in record.turns] == ["speak", "speak", "leave"]
    assert all(r.messages[0].content.startswith(f"Imagine you are {first.agent_names[0]},") for r in a.requests)
    assert all(r.messages[0].content.startswith(f"Imagine you are {names[1]},") for r in b.requests)
    assert len(a.requests) == 4 and len(b.requests) == 2  # turns 0 and 2 of each copy; turn 1 of each
    seeds = sorted(r.seed for r in a.requests + b.requests)
    assert seeds[0::2] == seeds[1::2] and len(set(seeds)) == 3  # the two copies share their seed: same draws


@pytest.mark.slow
@needs_official
def test_unparseable_output_is_reformatted_by_the_reformatting_model(played):
    [record] = played["by_model"][("g", "g")]
    asked = [r.messages[0].content for r in played["fixer"].requests]
    assert len(asked) == len(record.turns) and all("can not be parsed by json parser" in a for a in asked)
    assert record.end_reason == "max_turns" and len(record.turns) == 21  # never leaves: turn_number > 20
    for turn in record.turns:
        assert turn.raw.startswith("I think I will") and json.loads(turn.reformatted)
        assert turn.action.model_dump() == {"action_type": "speak", "argument": "reformatted"}


@pytest.mark.slow
@needs_official
def test_sotopia_style_episodes_are_rated_by_the_package_evaluator(played):
    ratings, records = played["ratings"], played["result"].records
    assert len(ratings) == 5 and all(r.rubric_version == "sotopia==0.0.6" for r in ratings)
    by_episode = {r.episode_id: r for r in ratings}
    for request in played["judge"].requests:
        assert EVALUATOR_ASKS in request.messages[0].content and request.sampling.temperature == 0.0
        episode = request.session.split("/judge/")[0]
        scores = json.loads(evaluation_json(request.seed))["agent_1_evaluation"]
        assert by_episode[episode].agents[0].scores == {d: s for d, (_, s) in scores.items()}
    assert rating_version(records[0]) == official_rubric_version(records[0], 160) == "sotopia==0.0.6"


@pytest.mark.slow
@needs_official
def test_sft_examples_of_the_style_are_the_received_prompts(played):
    import pandas as pd

    record = played["by_model"][("m", "m")][0]
    kept = pd.DataFrame([{"episode_id": record.episode_id, "agent": 0, "goal": 7.0}])
    examples, stats = to_examples([record], kept, source="bc")
    assert [e.turn for e in examples] == [0, 2, 4] and stats.dropped_none == 0  # two speeches, then the leave
    assert examples[0].prompt == list(record.turns[0].prompt)
    assert json.loads(examples[0].completion_text) == record.turns[0].action.model_dump()
    assert to_examples([record], kept, source="bc", count_tokens=len, max_prompt_tokens=100)[1].dropped_too_long == 3


# -- the golden test: the evaluator's input for released episodes --------------------------------------
@needs_official
@pytest.mark.slow
@pytest.mark.skipif(not HUMAN_EVAL.is_dir(), reason="the released human evaluation files are not here")
def test_released_episodes_reach_the_evaluator_as_the_paper_rendered_them(sotopia):
    """The released episode (from its human-evaluation CSV) through this style's evaluator sends an
    episode context equal, byte for byte, to the released `rewards_prompt`, for the 97 episodes in
    the fixture; the other 38 differ for the reasons recorded there (docs/official_style.md)."""
    golden = json.loads((FIXTURES / "official_golden.json").read_text())
    renderings = {r["pk"]: r["rewards_prompt"] for r in map(json.loads, (HUMAN_EVAL / "official_renderings.jsonl").open())}
    episodes = released_episodes(sotopia)
    assert sorted(set(renderings) - set(episodes)) == golden["not_in_csv"]
    judge = Scripted("judge")
    ratings, failures = rate_official([(r, 0) for r in episodes.values()], judge, agents=None, temperature=0.0,
                                      reasoning_max_chars=160)
    assert len(ratings) == len(episodes) and not failures
    received = {r.session.split("/judge/")[0]: r.messages[0].content for r in judge.requests}
    prefix = "Prompt after formatting:\n"
    same = sorted(pk for pk, text in renderings.items()
                  if pk in received and text.startswith(prefix) and received[pk].startswith(text.removeprefix(prefix)))
    assert same == golden["identical"]
    assert sorted(pk for pk, text in renderings.items() if not text.startswith(prefix)) == golden["not_evaluator_format"]
    assert sorted(set(received) - set(same) - set(golden["not_evaluator_format"])) == sorted(golden["differ"])


# -- the embedded model, end to end ----------------------------------------------------------------------
@needs_official
@pytest.mark.model
def test_an_episode_on_the_embedded_model_records_what_the_package_rendered(sotopia, embedded_model_dir):
    """A short episode with the real model through the local server: each recorded prompt is the one
    the package itself logged for that turn (its LangChain callback; one job at a time, as the log is
    global). test_a_few_ci_episodes_in_the_sotopia_style (below) rates such episodes and makes training examples of them."""
    from sotopia_pi_lib.llm.registry import build_llm
    from sotopia_pi_lib.llm.types import ModelSpec

    llm = build_llm(ModelSpec(backend="hf", model="embedded"))
    config = JSON_STYLE.model_copy(update={"rules": RuleConfig(max_turns=2), "max_argument_chars": 60,
                                           "sampling": JSON_STYLE.sampling.model_copy(update={"max_tokens": 40})})
    [spec] = make_specs(setups_for_task_set(sotopia, "sotopia_hard")[:1], ("embedded", "embedded"), seed=9)
    with OfficialSession({"embedded": llm}, SessionConfig(max_live=1)) as session:
        session.router.schemas["action"] = action_schema_from(session.hello["schemas"]["action"], 60)
        play = OfficialPlay(config, session)
        session.submit(play.job(episode_id(spec, config, {"embedded": "embedded"}), spec) | {"log_prompts": True})
        [(result, exchanges)] = list(session.results())
    turns = play.outcome(result, exchanges)
    assert not isinstance(turns, str), turns
    assert turns and end_reason_from(result["end"]) in ("leave", "stale", "max_turns")
    for played, turn in zip(result["turns"], turns, strict=True):
        assert played["package_prompt"] == f"Prompt after formatting:\n{turn.prompt[0].content}\x1b[0m"
        assert json.loads(turn.raw)["action_type"] == turn.action.action_type


@needs_official
@pytest.mark.model
@pytest.mark.slow
def test_a_few_ci_episodes_in_the_sotopia_style(tmp_path, monkeypatch, embedded_model_dir):
    """The ci profile's models play two SOTOPIA-hard episodes in the sotopia style (with json_schema:
    the 135M model cannot write the package's JSON unaided), the package's evaluator rates them, and
    their turns become training examples holding the prompts the model received."""
    import pandas as pd

    monkeypatch.setenv("SOTOPIA_PI_CACHE", str(tmp_path / "cache.sqlite"))  # generated here, not replayed
    cfg = load_config(resolve_params("params/ci.yaml"))
    sim = cfg.simulation.model_copy(update={
        "prompts": "sotopia", "progress": False,
        "sotopia": cfg.simulation.sotopia.model_copy(update={"json_schema": True})})  # fmt: skip
    llms = {}
    for role in ("policy", "judge", cfg.simulation.reformat_role):
        spec = getattr(cfg.models, role)
        llms[role] = next((m for m in llms.values() if m.spec == spec), None) or build_llm(spec)
    specs = make_specs(setups_for_task_set(load_sotopia(), "sotopia_hard")[:2], ("policy", "policy"),
                       seed=cfg.run.seed, tags={"source": "sotopia-style"})  # fmt: skip
    store = EpisodeStore(tmp_path / "episodes.jsonl")
    result = run_episodes(specs, {"policy": llms["policy"]}, sim, store, reformatter=llms[sim.reformat_role])
    assert result.summary.completed + result.summary.skipped == 2 and not result.summary.failed
    records = store.records()
    assert all(r.prompt_version == "sotopia==0.0.6+json" and r.turns for r in records)
    assert all(t.prompt[0].content.startswith("Imagine you are ") for r in records for t in r.turns)
    ratings = judge_episodes(records, llms["judge"], samples=cfg.judge.samples, progress=False,
                             reasoning_max_chars=cfg.judge.reasoning_max_chars,
                             reformatter=llms[sim.reformat_role])  # fmt: skip
    version = f"sotopia==0.0.6+json/reasoning{cfg.judge.reasoning_max_chars}"
    assert len(ratings) == 2 and all(r.rubric_version == version for r in ratings)
    kept = pd.DataFrame([{"episode_id": r.episode_id, "agent": a, "goal": 0.0} for r in records for a in (0, 1)])
    examples, stats = to_examples(records, kept, source="sotopia-style")
    acting = {(r.episode_id, t.index): list(t.prompt) for r in records for t in r.turns if t.action.action_type != "none"}
    assert {(e.episode_id, e.turn): e.prompt for e in examples} == acting and stats.examples == len(acting)
