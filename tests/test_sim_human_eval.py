"""Released human-evaluation episodes as EpisodeRecords: every transcript line becomes the turn the
annotators read, with the released id, both full profiles, the tested side, and an honest ending."""

from __future__ import annotations

import collections

import pytest

from sotopia_pi_lib.data.human_eval import load_human_eval
from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.judge.prompt import judge_request
from sotopia_pi_lib.sim.episode import EpisodeRecord
from sotopia_pi_lib.sim.human_eval import (
    IMPORT_VERSION,
    released_episode,
    released_episodes,
    released_turns,
    without_transcript,
)


@pytest.fixture(scope="module")
def release():
    return load_human_eval()


@pytest.fixture(scope="module")
def episodes(release, sotopia):
    return {e.episode_id: e for e in released_episodes(release, sotopia)}


def test_every_transcript_imports(release, episodes):
    assert len(episodes) == 151 and sorted(without_transcript(release)) == sorted(set(release.views) - set(episodes))
    ends = collections.Counter(e.end_reason for e in episodes.values())
    assert ends == {"leave": 114, "released": 37}
    for pk, e in episodes.items():
        view = release.views[pk]
        assert [t.raw for t in e.turns] == [line.dialogue for line in view.parsed_conversation]
        assert e.agent_names == view.names and e.goals == tuple(view.social_goal[n] for n in view.names)
        assert e.scenario == view.scenario and e.prompt_version == IMPORT_VERSION
        assert [p.name for p in e.agent_profiles] == list(view.names)
        assert all(p.secret for p in e.agent_profiles)
        tested = release.episodes[pk].tested_positions
        assert e.tags["tested_positions"] == ",".join(map(str, tested))
        assert e.tags["released_model"] == release.model_of(pk)
        assert {e.models[i] for i in tested} == {release.model_of(pk)}
        assert EpisodeRecord.model_validate_json(e.model_dump_json()) == e


def test_lines_become_turns_as_the_annotators_read_them(episodes):
    blanket = episodes["01HNBAH2MFNWNX62KYD3ARWN5Y"]  # base model vs GPT-3.5, with non-verbal lines
    acts = [(t.agent, t.action.action_type, t.action.argument[:28]) for t in blanket.turns]
    assert acts[0] == (0, "speak", "Hey Noah, I'm freezing over ")  # enclosing quotes dropped
    assert acts[1] == (1, "action", "I'm sorry, I think I may nee")
    # the app's speaker field says Samuel; the line itself says Noah did it (what the annotators read)
    assert blanket.turns[3].raw.startswith("Noah Davis [non-verbal communication] Samuel Anderson shivers")
    assert acts[3] == (1, "non-verbal communication", "Samuel Anderson shivers and ")
    assert acts[-1] == (0, "leave", "") and blanket.end_reason == "leave"
    stationery = episodes["01HNBAEKNYKBC3EKHM9XHGFQDA"]  # ends without a leave; parser residue kept
    last = stationery.turns[-1]
    assert last.action.action_type == "speak" and last.action.argument.endswith("I hope you understand.")
    assert last.raw.endswith('understand."\nTurn #10,')  # the app's residue stays in the raw line only
    assert stationery.end_reason == "released"
    unquoted = [t for t in episodes["01HNBAXJ1HS3NVDHEX69DY72HF"].turns if t.raw == "How about $454?"]
    assert unquoted and unquoted[0].action.action_type == "speak" and unquoted[0].action.argument == "How about $454?"


def test_what_cannot_be_imported_says_why(release, sotopia):
    pk = without_transcript(release)[0]
    with pytest.raises(DataError, match=rf"episode {pk}: the release holds only its scenario"):
        released_episode(release, pk, sotopia.agents, sotopia.environments)
    with pytest.raises(DataError, match="no transcript"):
        released_turns(release.views[pk])
    some = next(pk for pk, v in release.views.items() if v.has_transcript)
    name = release.views[some].names[0]
    agents = {k: (a.model_copy(update={"secret": "something else"}) if a.name == name else a)
              for k, a in sotopia.agents.items()}
    with pytest.raises(DataError, match=rf"{name}'s age or secret as released .* differ from SOTOPIA's profile"):
        released_episode(release, some, agents, sotopia.environments)


def test_the_judge_sees_both_secrets_and_every_turn(episodes):
    ep = episodes["01HNBAH2MFNWNX62KYD3ARWN5Y"]
    text = "\n".join(m.content for m in judge_request(ep).messages)
    assert all(p.secret.strip() in text for p in ep.agent_profiles)
    assert all(t.action.argument.strip()[:40] in text for t in ep.turns if t.action.argument)


def test_the_judge_renders_an_episode_whose_ending_is_not_released(episodes):
    """The judge is never told why an episode ended (as SOTOPIA's evaluator), so `released` needs no text."""
    ep = episodes["01HNBAEKNYKBC3EKHM9XHGFQDA"]
    assert ep.end_reason == "released"
    text = "\n".join(m.content for m in judge_request(ep).messages)
    last = ep.turns[-1]
    assert f"Turn {last.index + 1}: " in text and "ended" not in text


def test_a_released_episode_exports_as_an_episode_log(release, episodes):
    from sotopia_pi_lib.judge.export import to_episode_log

    ep = episodes["01HNBAH2MFNWNX62KYD3ARWN5Y"]
    log = to_episode_log(ep, allow_unrated=True)
    assert log.pk == ep.episode_id and log.tag == release.episodes[ep.episode_id].tag
    assert log.models == ["", "gpt-3.5", "mistral-7b"] and log.agents == list(ep.agent_ids)
    assert len(log.messages) == len(ep.turns) + 1
