"""SOTOPIA-pi's released human-evaluation episodes as the project's episode records.

Each released episode becomes an `EpisodeRecord` that the judge, the exports and the annotation
packets handle like the study's own: the released id (`pk`) as episode id, both characters' full
SOTOPIA profiles (secrets included), the scenario, goals and turns exactly as the annotators read
them (the `data` cell of the release), which model played each side (`models`) and which side was
tested (`tags`).

The turns are the annotation app's transcript, line by line. The app showed a line as
"<speaker> said: <text>" when the text holds a double quote and as the text itself otherwise, so:
- "<name> [non-verbal communication] <argument>" or "<name> [action] <argument>", where <name> is one
  of the two characters, is that action by that character (the name in the text wins over the app's
  speaker field, which its parser guessed from the first name found in the line);
- "<name> left the conversation" (with or without a final period or comma) is a leave;
- any other text is speech by the app's speaker; the argument is the text without one enclosing pair
  of double quotes.
The app's parser kept two pieces of the official evaluator's frame on the last line of some
transcripts: the marker of the next, empty turn (a trailing "\nTurn #10,") and the comma the
evaluator's template puts after the whole history ('"…possessions.",'). Neither is part of what the agent
said (tests/test_judge_prompt.py compares with the evaluator's input), so the argument leaves them out.
`Turn.raw` keeps every line verbatim. Turns where an agent did nothing are not in the release, and
neither is why an episode ended: a transcript that ends with a leave ends by "leave", any other by
"released" (see `EndReason`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..data.human_eval import AnnotatorView, ReleasedHumanEval
from ..data.profiles import AgentProfile, EnvironmentProfile
from ..data.sotopia import SotopiaData
from ..errors import DataError
from .episode import AgentAction, EpisodeRecord, Turn

# Version of this import (the line parser above); recorded as the episodes' prompt_version, since the
# agents' prompts of these episodes were SOTOPIA's own and are not rebuilt here.
IMPORT_VERSION = "sotopia-pi-human-eval-1"
SOURCE_TAG = "sotopia_pi_human_eval"
PARTNER_LABEL = "gpt-3.5"


_NEXT_TURN_MARK = re.compile(r"\s*\nTurn #\d+,?\s*$")


def _patterns(names: tuple[str, str]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    who = "|".join(re.escape(n) for n in names)
    acted = re.compile(rf"(?P<name>{who}) \[(?P<kind>non-verbal communication|action)\]\s*(?P<arg>.*)", re.S)
    left = re.compile(rf"(?P<name>{who}) left the conversation[.,]?")
    return acted, left


def released_turns(view: AnnotatorView) -> list[Turn]:
    """The transcript of one annotator view as turns (see the module docstring for the rules)."""
    if view.names is None or view.parsed_conversation is None:
        raise DataError("this released episode has no transcript (its data holds only the scenario)")
    names = view.names
    acted, left = _patterns(names)
    turns = []
    last = len(view.parsed_conversation) - 1
    for i, line in enumerate(view.parsed_conversation):
        text = _NEXT_TURN_MARK.sub("", line.dialogue).strip()
        if i == last:
            text = text.removesuffix(",")
        if m := acted.fullmatch(text):
            who, action = m["name"], AgentAction(action_type=m["kind"], argument=m["arg"].strip())
        elif m := left.fullmatch(text):
            who, action = m["name"], AgentAction(action_type="leave")
        else:
            quoted = len(text) >= 2 and text[0] == text[-1] == '"'
            who, action = line.speaker, AgentAction(action_type="speak", argument=text[1:-1] if quoted else text)
        turns.append(Turn(index=i, agent=names.index(who), action=action, raw=line.dialogue))
    return turns


def _profiles(view: AnnotatorView, agents: Mapping[str, AgentProfile], where: str) -> tuple[AgentProfile, AgentProfile]:
    """The SOTOPIA characters the annotators saw, by name, checked against the app's age and secret."""
    by_name = {a.name: a for a in agents.values()}
    out = []
    for name in view.names or ():
        if name not in by_name:
            raise DataError(f"{where}: character {name!r} is not one of SOTOPIA's characters")
        p, shown = by_name[name], (view.personal_info or {})[name]
        if shown.age.strip() != str(p.age) or shown.secrets.strip().rstrip(".") != p.secret.strip().rstrip("."):
            raise DataError(f"{where}: {name}'s age or secret as released ({shown.age!r}, {shown.secrets!r}) "
                            f"differ from SOTOPIA's profile ({p.age!r}, {p.secret!r})")
        out.append(p)
    return out[0], out[1]


def released_episode(ev: ReleasedHumanEval, pk: str, agents: Mapping[str, AgentProfile],
                     environments: Mapping[str, EnvironmentProfile]) -> EpisodeRecord:
    """The record of one released episode that has a transcript."""
    view, models, label = ev.views[pk], ev.episodes[pk], ev.model_of(pk)
    where = f"{ev.files[label].name}, episode {pk}"
    if not view.has_transcript:
        raise DataError(f"{where}: the release holds only its scenario, no transcript")
    env = environments.get(models.environment_pk)
    if env is None:
        raise DataError(f"{where}: environment {models.environment_pk} is not a SOTOPIA scenario")
    tested = models.tested_positions
    profiles = _profiles(view, agents, where)
    names = view.names or ("", "")
    goals = view.social_goal or {}
    turns = released_turns(view)
    return EpisodeRecord(
        episode_id=pk, env_id=env.env_id, codename=env.codename, scenario=view.scenario,
        agent_ids=(profiles[0].agent_id, profiles[1].agent_id), agent_names=names,
        goals=(goals[names[0]], goals[names[1]]),
        models=tuple(label if i in tested else PARTNER_LABEL for i in (0, 1)),  # type: ignore[arg-type]
        prompt_version=IMPORT_VERSION, seed=0, turns=turns,
        end_reason="leave" if turns[-1].action.action_type == "leave" else "released",
        tags={"source": SOURCE_TAG, "released_model": label, "tested_positions": ",".join(map(str, tested)),
              "study_folder": models.study_folder, "tag": models.tag, "task_set": "sotopia_hard"},
        agent_profiles=profiles, relationship=env.relationship)


def released_episodes(ev: ReleasedHumanEval, sotopia: SotopiaData) -> list[EpisodeRecord]:
    """Every released episode with a transcript (151 of 154), in release order."""
    return [released_episode(ev, pk, sotopia.agents, sotopia.environments)
            for pk, view in ev.views.items() if view.has_transcript]


def without_transcript(ev: ReleasedHumanEval) -> list[str]:
    """Released episodes whose `data` holds only the scenario: rated by humans, not re-judgeable."""
    return [pk for pk, view in ev.views.items() if not view.has_transcript]
