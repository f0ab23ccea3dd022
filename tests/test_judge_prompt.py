"""The judge prompt shows the whole episode, both goals and both secrets, and asks for the rubric."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.judge import DIMENSIONS, judge_max_tokens, judge_request, judge_schema
from sotopia_pi_lib.sim.episode import AgentAction, EpisodeRecord, Turn
from sotopia_pi_lib.sim.prompts import describe_action
from sotopia_pi_lib.sim.visibility import render_goal, render_marked

SCRIPTS = json.loads((Path(__file__).parent / "fixtures" / "judge_episode_scripts.json").read_text())


def scripted_episode(sotopia, script: dict, with_profiles: bool = True) -> EpisodeRecord:
    """A hand-written conversation on a real SOTOPIA benchmark combo."""
    combo = sotopia.combos[script["combo_index"]]
    env = sotopia.environments[combo.env_id]
    people = tuple(sotopia.agents[a] for a in combo.agent_ids)
    turns = [
        Turn(index=i, agent=i % 2, action=AgentAction(action_type=t, argument=a),
             raw=json.dumps({"action_type": t, "argument": a}))
        for i, (t, a) in enumerate(script["turns"])
    ]  # fmt: skip
    return EpisodeRecord(
        episode_id=f"{env.codename}-{combo.combo_id}", env_id=env.env_id, combo_id=combo.combo_id,
        codename=env.codename, scenario=env.scenario, agent_ids=combo.agent_ids,
        agent_names=(people[0].name, people[1].name), goals=env.agent_goals, models=("hf:embedded",) * 2,
        prompt_version="sotopia-pi-lib/v2", seed=script["combo_index"], turns=turns,
        end_reason=script["end_reason"], tags={"source": "test"},
        agent_profiles=people if with_profiles else None, relationship=env.relationship,
    )  # fmt: skip


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: str(s["combo_index"]))
def test_prompt_holds_episode_goals_secrets_and_rubric(sotopia, script):
    record = scripted_episode(sotopia, script)
    request = judge_request(record)
    system, user = request.messages
    assert system.role == "system" and user.role == "user"
    assert render_marked(record.scenario, "environment").strip() in user.content
    for i, profile in enumerate(record.agent_profiles):
        assert profile.name in user.content
        assert profile.secret.strip() in user.content, "the judge must see both secrets"
        assert render_goal(record.goals[i], i, "environment").strip() in user.content, "the judge sees both goals"
    assert "<extra_info>" not in user.content
    # what SOTOPIA's evaluator is not given: why the episode ended, the relationship, the pair's story
    assert "ended because" not in user.content and "Relationship" not in user.content
    pair = sotopia.relationship_between(*record.agent_ids)
    assert pair is None or not pair.background_story or pair.background_story.strip() not in user.content
    for turn in record.turns:
        if turn.action.argument:
            assert turn.action.argument in user.content
    assert "did nothing" not in user.content
    assert f"{record.agent_names[0]} left the conversation" in user.content or record.end_reason != "leave"
    for d in DIMENSIONS:
        assert f"- {d.name} [{d.low}, {d.high}]:" in user.content
    assert f"agent_1 ({record.agent_names[0]})" in user.content
    assert f"agent_2 ({record.agent_names[1]})" in user.content


def test_request_carries_schema_budget_and_sampling(sotopia):
    record = scripted_episode(sotopia, SCRIPTS[0])
    greedy = judge_request(record)
    assert greedy.json_schema == judge_schema()
    assert greedy.sampling.max_tokens == judge_max_tokens()
    assert greedy.sampling.temperature == 0.0 and greedy.sample_index == 0
    sampled = judge_request(record, temperature=0.7, sample_index=2)
    assert (sampled.sampling.temperature, sampled.sample_index) == (0.7, 2)
    assert sampled.messages == greedy.messages


def test_profiles_come_from_sotopia_when_the_record_lacks_them(sotopia):
    with_profiles = scripted_episode(sotopia, SCRIPTS[1])
    bare = scripted_episode(sotopia, SCRIPTS[1], with_profiles=False)
    assert judge_request(bare, sotopia.agents).messages == judge_request(with_profiles).messages
    with pytest.raises(DataError, match="no agent_profiles"):
        judge_request(bare)
    unknown = bare.model_copy(update={"agent_ids": ("nobody", bare.agent_ids[1])})
    with pytest.raises(DataError, match="unknown character id"):
        judge_request(unknown, sotopia.agents)


@pytest.mark.model
def test_prompt_fits_the_embedded_model_with_room_for_the_answer(sotopia, embedded_model_dir):
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_model_dir)
    context = AutoConfig.from_pretrained(embedded_model_dir).max_position_embeddings
    for script in SCRIPTS:
        request = judge_request(scripted_episode(sotopia, script))
        messages = [m.model_dump() for m in request.messages]
        n = len(tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)["input_ids"])
        assert n + request.sampling.max_tokens < context
        assert n < 1500, f"judge prompt has {n} tokens; keep it lean, the judge reads one per episode"


_OFFICIAL_LINE = re.compile(r'^(?P<name>.+?) (?:said: "(?P<said>.*)"|\[(?P<kind>non-verbal communication|action)\] ?'
                            r'(?P<arg>.*)|(?P<left>left the conversation))$', re.S)
_KINDS = {"said": "speak", "non-verbal communication": "non-verbal communication", "action": "action",
          "left": "leave"}


def _official_turns(rewards_prompt: str, names: tuple[str, str]) -> list[tuple[str, str, str]]:
    """(speaker, action type, argument) of each turn in the text the official evaluator was given.

    Its releases differ in layout: "Turn #N" on a line of its own or "Turn #N: " inline, a `none` turn
    as an empty "Turn #N", and the text ends with the next turn's marker ("Turn #N,")."""
    marks = list(re.finditer(r"\nTurn #\d+(?::[ ]?|,?(?=\n|$))", rewards_prompt))
    out = []
    for m, nxt in zip(marks, [*marks[1:], None], strict=True):
        block = rewards_prompt[m.end(): nxt.start() if nxt else len(rewards_prompt)].strip().removesuffix(",")
        if not block:
            continue  # a turn where the agent on turn did nothing
        m = _OFFICIAL_LINE.match(block)
        assert m and m["name"] in names, block[:120]
        if m["said"] is not None:
            out.append((m["name"], "speak", m["said"]))
        elif m["kind"]:
            out.append((m["name"], m["kind"], m["arg"]))
        else:
            out.append((m["name"], "leave", ""))
    return out


# Released episodes whose CSV transcript (the annotation app's parse of the episode) lost what the
# official evaluator saw, so no importer can recover it: the app split "X [action] Counteroffer: $454"
# at the colon into speech, guessed the wrong speaker for an unprefixed line, or split a turn whose text
# itself held "Turn #4: X said:" into several lines; one official text even holds a third name.
KNOWN_RELEASE_DEFECTS = {
    "01HNBAXJ1HS3NVDHEX69DY72HF": "colon split", "01HB25BGZ2AJ4WJF7CJX8VTB7J": "colon split",
    "01HNBC3M5FVR3854PWNYM68TSY": "speaker guess", "01HNBC6F13KMQT4Y22Z9DP59CA": "speaker guess",
    "01HNBC9CQF53R4FDWWF3B5FG37": "speaker guess", "01HP5KH3R3NWD8BZE9BN0GRPJY": "echoed turn markers",
    "01HP5KZSVY4163T9PJ2HADN7CR": "echoed turn markers", "01HP5P0MBPQ5WN9GSVKAVXFDRY": "echoed turn markers",
    "01HNBCQQRFA7332019G6ABD7Y6": "a third speaker in the official text",
}


def _turns_match(ep, rewards_prompt: str) -> bool:
    try:
        theirs = [(n, k, a.strip()) for n, k, a in _official_turns(rewards_prompt, ep.agent_names)]
    except AssertionError:
        return False
    ours = [(ep.agent_names[t.agent], t.action.action_type, t.action.argument.strip())
            for t in ep.turns if t.action.action_type != "none"]
    return ours == theirs


def test_released_episodes_reach_the_judge_turn_for_turn_as_the_official_evaluator_saw_them(sotopia):
    """Golden data: for the released human-evaluation episodes, the project's judge prompt (built from
    the released CSV transcript) holds the same turns, in the same order, with the same speakers, action
    types and arguments as the text the official evaluator was given — for every episode whose CSV kept
    them (142 of 151; the rest are named above with what the release lost)."""
    from sotopia_pi_lib.data.human_eval import load_human_eval
    from sotopia_pi_lib.paths import data_dir
    from sotopia_pi_lib.sim.human_eval import released_episodes

    path = data_dir() / "sotopia_pi" / "human_eval" / "official_renderings.jsonl"
    if not path.is_file():
        pytest.skip("official_renderings.jsonl (golden data, optional) is not in the data folder")
    official = {json.loads(line)["pk"]: json.loads(line)["rewards_prompt"] for line in path.read_text().splitlines()}
    episodes = released_episodes(load_human_eval(), sotopia)
    assert len(episodes) == 151
    differ = {ep.episode_id for ep in episodes if not _turns_match(ep, official[ep.episode_id])}
    assert differ == set(KNOWN_RELEASE_DEFECTS)
    for ep in episodes:
        if ep.episode_id in differ:
            continue
        prompt = judge_request(ep).messages[-1].content
        at = prompt.index("Conversation:\n")
        for t in ep.turns:  # every turn, in order, as "Turn N: <speaker> <action>"
            line = f"Turn {t.index + 1}: {describe_action(ep.agent_names[t.agent], t.action)}"
            at = prompt.index(line, at) + len(line)
