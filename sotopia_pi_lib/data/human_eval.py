"""SOTOPIA-pi's released human evaluation, read into typed records.

The release (see ../shared/data/README.md) is six CSV files, one per tested model, with one row per
episode and annotator: the episode id (`pk`), what the annotation app showed (`data`, JSON: scenario,
both characters with their secrets, both goals, the transcript), the annotator (`prolific_id`, a
pseudonym) and, for agent 1 and 2, each dimension's score and reasoning (`goal_1`,
`goal_reasoning_1`, ...). `episode_models.jsonl` says which model played each side, and
`sotopia_gpt4_scores.json` holds GPT-4's released scores of the GPT-4 episodes.

Every cell is checked once, here: a missing column, a score outside its dimension's range, an episode
id that the model map does not know, broken JSON in `data` — each is a DataError naming the file, the
line and the column. Quirks of the release are kept as released, never repaired:
- the first column is unnamed in three files and `ID` in the others, and its values repeat, so rows are
  identified by file and line;
- three episodes (two of BC+SR, one of GPT-4) carry only their scenario in `data`: their ratings are
  read (the paper's means include them) but they have no transcript;
- seven episodes hold two ratings by the same annotator (two of those pairs are byte-identical rows),
  and one GPT-3.5 episode has three annotators;
- `model` in SR_final.csv names the self-training round; the file, not that cell, says the model.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError, model_validator

from ..errors import DataError
from ..store.jsonl import read_jsonl
from ..strict import StrictModel
from .fetch import verified_path
from .sources import EPISODE_MODELS, HUMAN_EVAL_CSVS, HUMAN_EVAL_DIR

GPT4_SCORES = f"{HUMAN_EVAL_DIR}/sotopia_gpt4_scores.json"
PARTNER = "gpt-3.5-turbo"  # the partner model; the tested side is the other one
# The score scale of the annotation app's form (SOTOPIA-EVAL's ranges). The data layer does not import
# the judge; tests check that these equal judge.rubric's ranges.
HUMAN_DIMENSIONS: dict[str, tuple[int, int]] = {
    "believability": (0, 10),
    "relationship": (-5, 5),
    "knowledge": (0, 10),
    "secret": (-10, 0),
    "social_rules": (-10, 0),
    "financial_and_material_benefits": (-5, 5),
    "goal": (0, 10),
}
ROW_ID_COLUMNS = ("", "ID")  # the pandas index column the files were saved with, named or not
FIXED_COLUMNS = ("model", "pk", "data", "prolific_id")
SCORE_COLUMNS: tuple[str, ...] = tuple(
    f"{dim}{part}_{side}" for side in (1, 2) for dim in HUMAN_DIMENSIONS for part in ("", "_reasoning")
)


class EpisodeModels(StrictModel):
    """Which model played each side of one released episode (`models` = [evaluator, agent 1, agent 2])."""

    pk: str
    study_folder: str
    models: tuple[str, str, str]
    tag: str
    environment_pk: str

    @property
    def tested_positions(self) -> tuple[int, ...]:
        """0-based positions of the tested model: the side that is not the GPT-3.5 partner; both sides
        when GPT-3.5 plays itself."""
        sides = tuple(i for i in (0, 1) if self.models[i + 1] != PARTNER)
        return sides or (0, 1)


class Character(StrictModel):
    """A character as the annotation app showed it (parsed from SOTOPIA's rendering by the app)."""

    name: str
    age: str
    profession: str
    pronouns: str
    interests: str
    personality: str
    secrets: str


class TranscriptLine(StrictModel):
    """One line of the transcript the annotators read: the app's speaker and its text, as released."""

    speaker: str
    dialogue: str


class AnnotatorView(StrictModel):
    """The `data` cell: what the annotators saw. Everything but the scenario is absent for the three
    episodes whose released `data` holds only the scenario."""

    scenario: str
    names: tuple[str, str] | None = None
    personal_info: dict[str, Character] | None = None
    social_goal: dict[str, str] | None = None
    parsed_conversation: list[TranscriptLine] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> AnnotatorView:
        parts = (self.names, self.personal_info, self.social_goal, self.parsed_conversation)
        if all(p is None for p in parts):
            return self
        if any(p is None for p in parts):
            raise ValueError("names, personal_info, social_goal and parsed_conversation must come together")
        names = set(self.names or ())
        if len(names) != 2:
            raise ValueError(f"names must be two different people, got {list(self.names or ())}")
        for key, value in (("personal_info", self.personal_info), ("social_goal", self.social_goal)):
            if set(value or {}) != names:
                raise ValueError(f"{key} is keyed by {sorted(value or {})}, not by the names {sorted(names)}")
        strangers = sorted({t.speaker for t in self.parsed_conversation or []} - names)
        if strangers:
            raise ValueError(f"parsed_conversation has speakers {strangers} who are not in names")
        if not self.parsed_conversation:
            raise ValueError("parsed_conversation is empty")
        return self

    @property
    def has_transcript(self) -> bool:
        return self.parsed_conversation is not None


class HumanScore(StrictModel):
    score: int
    reasoning: str


class ReleasedRating(StrictModel):
    """One annotator's rating of both agents of one episode: one row of a released CSV."""

    model: str  # the released model label (mistral-7b, sr, bc, bc+sr, gpt-4, gpt-3.5)
    file: str
    line: int  # first line of the row in its file
    row_id: str  # the file's index column; not unique, kept for reference
    model_column: str
    pk: str
    annotator: str
    agents: tuple[dict[str, HumanScore], dict[str, HumanScore]]

    @property
    def where(self) -> str:
        return f"{self.file}, line {self.line}"


class Gpt4Scores(StrictModel):
    """GPT-4's released SOTOPIA-EVAL scores of one episode (agent 1, agent 2)."""

    pk: str
    env_pk: str
    agents: tuple[dict[str, float], dict[str, float]]


@dataclass(frozen=True)
class ReleasedHumanEval:
    """The whole release: ratings in file order, the annotators' view and the model map per episode,
    GPT-4's scores, and the files they came from."""

    ratings: list[ReleasedRating]
    views: dict[str, AnnotatorView]
    episodes: dict[str, EpisodeModels]
    gpt4: dict[str, Gpt4Scores]
    files: dict[str, Path]
    labels: dict[str, str]  # pk -> released model label (the file it is rated in)

    def model_of(self, pk: str) -> str:
        return self.labels[pk]

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in self.ratings))


def _problem(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}" for err in e.errors()[:3])


def read_episode_models(path: Path) -> dict[str, EpisodeModels]:
    """The model map, by pk; a bad or repeated line is a DataError naming file and line."""
    out: dict[str, EpisodeModels] = {}
    for lineno, rec in enumerate(read_jsonl(path, EpisodeModels), 1):
        if rec.pk in out:
            raise DataError(f"{path}:{lineno}: episode {rec.pk} is listed twice")
        out[rec.pk] = rec
    return out


def _header(path: Path, header: list[str] | None) -> list[str]:
    if not header:
        raise DataError(f"{path}, line 1: empty file (expected a header row)")
    wanted = [*FIXED_COLUMNS, *SCORE_COLUMNS]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(f"{path}, line 1, column {missing[0]}: missing column"
                        + (f" (and {len(missing) - 1} more: {missing[1:4]})" if len(missing) > 1 else ""))
    extra = [c for c in header if c not in wanted and c not in ROW_ID_COLUMNS]
    if extra or len(set(header)) != len(header):
        raise DataError(f"{path}, line 1: unexpected or repeated columns {extra or header}")
    return header


def _score(cell: str, dim: str, at: str) -> int:
    lo, hi = HUMAN_DIMENSIONS[dim]
    try:
        value = int(cell.strip())
    except ValueError:
        raise DataError(f"{at}: {cell!r} is not a whole number from {lo} to {hi}") from None
    if not lo <= value <= hi:
        raise DataError(f"{at}: score {value} is outside {dim}'s range [{lo}, {hi}]")
    return value


def _agents(row: dict[str, str], where: str) -> tuple[dict[str, HumanScore], dict[str, HumanScore]]:
    sides = []
    for side in (1, 2):
        sides.append({
            dim: HumanScore(score=_score(row[f"{dim}_{side}"], dim, f"{where}, column {dim}_{side}"),
                            reasoning=row[f"{dim}_reasoning_{side}"])
            for dim in HUMAN_DIMENSIONS
        })
    return sides[0], sides[1]


def parse_view(cell: str, where: str) -> AnnotatorView:
    at = f"{where}, column data"
    try:
        raw = json.loads(cell)
    except json.JSONDecodeError as e:
        raise DataError(f"{at}: not valid JSON ({e.msg} at character {e.pos} of the cell)") from None
    try:
        return AnnotatorView.model_validate(raw)
    except ValidationError as e:
        raise DataError(f"{at}: not the annotation app's episode view ({_problem(e)})") from None


def _check_pk(pk: str, label: str, episodes: dict[str, EpisodeModels], where: str) -> None:
    at = f"{where}, column pk"
    if pk not in episodes:
        raise DataError(f"{at}: episode {pk!r} is not in the model map (episode_models.jsonl)")
    folder = HUMAN_EVAL_CSVS[label][1]
    if episodes[pk].study_folder != folder:
        raise DataError(f"{at}: episode {pk} belongs to study folder {episodes[pk].study_folder!r} in the "
                        f"model map, not to {folder!r} of the {label} file")


def iter_released_rows(path: Path) -> Iterator[tuple[int, dict[str, str], tuple[dict[str, HumanScore], dict[str, HumanScore]]]]:
    """Every row of a file in the released CSV format: its first line, its cells by column and both
    agents' scores; the header and every score are checked (DataError naming file, line, column)."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = _header(path, next(reader, None))
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            where = f"{path}, line {line}"
            if len(cells) != len(header):
                raise DataError(f"{where}: {len(cells)} cells, the header has {len(header)}")
            row = dict(zip(header, cells, strict=True))
            yield line, row, _agents(row, where)


def read_human_eval_csv(
    path: Path, label: str, episodes: dict[str, EpisodeModels]
) -> tuple[list[ReleasedRating], dict[str, AnnotatorView]]:
    """One released CSV of model `label`: its ratings in file order and the view of each episode."""
    if label not in HUMAN_EVAL_CSVS:
        raise DataError(f"unknown released model {label!r}; known: {list(HUMAN_EVAL_CSVS)}")
    ratings, views, cells = [], {}, {}
    for line, row, agents in iter_released_rows(path):
        where = f"{path}, line {line}"
        pk = row["pk"].strip()
        _check_pk(pk, label, episodes, where)
        if pk in cells and cells[pk] != row["data"]:
            raise DataError(f"{where}, column data: differs from the data of the same episode at line "
                            f"{views[pk][1]}")
        if pk not in cells:
            cells[pk], views[pk] = row["data"], (parse_view(row["data"], where), line)
        ratings.append(ReleasedRating(
            model=label, file=path.name, line=line, row_id=row.get("", row.get("ID", "")),
            model_column=row["model"], pk=pk, annotator=row["prolific_id"].strip(), agents=agents))
    if not ratings:
        raise DataError(f"{path}: no rating rows")
    return ratings, {pk: view for pk, (view, _) in views.items()}


def read_gpt4_scores(path: Path) -> dict[str, Gpt4Scores]:
    """GPT-4's released scores by pk; every score in range, `overall_score` the mean of the seven."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}, line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected an object keyed by episode pk")
    out = {}
    for pk, entry in raw.items():
        where = f"{path}, episode {pk}"
        if not isinstance(entry, dict) or set(entry) != {"env_pk", "agent1", "agent2"}:
            raise DataError(f"{where}: expected keys env_pk, agent1, agent2")
        agents = []
        for key in ("agent1", "agent2"):
            scores = entry[key]
            if not isinstance(scores, dict) or set(scores) != {*HUMAN_DIMENSIONS, "overall_score"}:
                raise DataError(f"{where}, {key}: expected the seven dimensions and overall_score")
            for dim, (lo, hi) in HUMAN_DIMENSIONS.items():
                v = scores[dim]
                if not isinstance(v, int | float) or not lo <= v <= hi:
                    raise DataError(f"{where}, {key}.{dim}: {v!r} is outside [{lo}, {hi}]")
            mean = sum(scores[d] for d in HUMAN_DIMENSIONS) / len(HUMAN_DIMENSIONS)
            if abs(scores["overall_score"] - mean) > 1e-6:
                raise DataError(f"{where}, {key}.overall_score: {scores['overall_score']} is not the mean {mean}")
            agents.append({d: float(scores[d]) for d in HUMAN_DIMENSIONS})
        out[pk] = Gpt4Scores(pk=pk, env_pk=str(entry["env_pk"]), agents=(agents[0], agents[1]))
    return out


def release_files(data_folder: Path | None = None) -> dict[str, Path]:
    """The release's files, verified by checksum (fetched if missing): the model map, GPT-4's scores,
    and each model's CSV by its label."""
    files = {"episode_models": verified_path(EPISODE_MODELS, data_folder),
             "gpt4_scores": verified_path(GPT4_SCORES, data_folder)}
    return files | {label: verified_path(f"{HUMAN_EVAL_DIR}/{name}", data_folder)
                    for label, (name, _) in HUMAN_EVAL_CSVS.items()}


def load_human_eval(data_folder: Path | None = None) -> ReleasedHumanEval:
    """Every released file, verified, parsed and cross-checked: each episode of the model map is rated
    in exactly one file."""
    files = release_files(data_folder)
    episodes = read_episode_models(files["episode_models"])
    ratings, views = [], {}
    for label in HUMAN_EVAL_CSVS:
        rs, vs = read_human_eval_csv(files[label], label, episodes)
        clash = sorted(set(vs) & set(views))
        if clash:
            raise DataError(f"{files[label]}: episodes {clash[:3]} are also rated in another released file")
        ratings += rs
        views |= vs
    unrated = sorted(set(episodes) - set(views))
    if unrated:
        raise DataError(f"{files['episode_models']}: episodes {unrated[:3]} ({len(unrated)} in all) have no "
                        "rating in any released CSV")
    return ReleasedHumanEval(ratings=ratings, views=views, episodes=episodes,
                             gpt4=read_gpt4_scores(files["gpt4_scores"]), files=files,
                             labels={r.pk: r.model for r in ratings})
