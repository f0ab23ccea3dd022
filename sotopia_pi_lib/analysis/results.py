"""A run's saved evaluation results as tidy tables: what notebook 06 reads, and nothing else.

One row per evaluated agent, rating and dimension. In an evaluation episode the evaluated model plays
the position named by the episode's tags (`eval_model`, `eval_position`, `task_set`, written by
`evaluate.benchmark`); its scores are those of that position, the partner's are not its scores.

Missing data is never silently dropped: an episode file whose ratings are missing is an error (or,
with `missing_ratings="gap"`, a labelled gap in the coverage table), and a model without an episode
file is a gap the figures label "no data". Files are only read, never repaired or rewritten.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pandas as pd
from tqdm.auto import tqdm

from ..errors import ConfigError, DataError
from ..judge.ratings import EpisodeRating, RatingKey
from ..judge.rubric import DIMENSION_NAMES
from ..sim.episode import EpisodeRecord
from ..store.jsonl import iter_jsonl
from ..store.run import RunPaths

MODEL_ORDER: tuple[str, ...] = ("base", "sr", "bc", "bc_sr", "expert")
EVAL_TASK_SETS: tuple[str, ...] = ("sotopia_all", "sotopia_hard", "safety")
METRICS: tuple[str, ...] = (*DIMENSION_NAMES, "overall")
SCORE_COLUMNS = [
    "model",
    "task_set",
    "episode_id",
    "env_id",
    "combo_id",
    "codename",
    "position",
    "dimension",
    "score",
    "judge",
    "sample",
    "rubric_version",
    "model_key",
]
COVERAGE_COLUMNS = ["model", "task_set", "status", "n_episodes", "n_rated", "n_failed", "file"]
MissingRatings = Literal["error", "gap"]


def check_models(models: Sequence[str]) -> tuple[str, ...]:
    """The model list to analyse, in report order; empty or repeated names are errors."""
    models = tuple(models)
    if not models:
        raise ConfigError(
            "no models to analyse: the model list is empty (params evaluate.models lists "
            f"the models of the study, e.g. {list(MODEL_ORDER)})"
        )
    dup = sorted({m for m in models if models.count(m) > 1})
    if dup:
        raise ConfigError(f"model list names {dup} more than once: {list(models)}")
    return models


def failures_path(episodes: Path) -> Path:
    """The episode store's side file of abandoned episodes (sim.store.EpisodeStore)."""
    return episodes.with_name(episodes.stem + ".failures.jsonl")


def _abandoned(path: Path, done: set[str]) -> int:
    """Episodes the store gave up on and no re-run completed (a re-run retries failures, so the side
    file can also list episodes that finished later)."""
    if not path.is_file():
        return 0
    ids = set()
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    ids.add(str(json.loads(line)["episode_id"]))
                except (ValueError, KeyError, TypeError):
                    raise DataError(f"{path}:{lineno}: not an episode failure record") from None
    return len(ids - done)


def _eval_position(rec: EpisodeRecord, path: Path, lineno: int, model: str, task_set: str) -> int:
    """The evaluated agent's position, checking the tags contract of `evaluate.benchmark`."""
    where = f"{path}:{lineno} (episode {rec.episode_id})"
    tags = rec.tags
    missing = [k for k in ("eval_model", "eval_position", "task_set") if k not in tags]
    if missing:
        raise DataError(
            f"{where}: tags {missing} missing; evaluation episodes must say which model "
            "was evaluated, in which position and on which task set"
        )
    if tags["eval_model"] != model or tags["task_set"] != task_set:
        raise DataError(
            f"{where}: tagged eval_model={tags['eval_model']!r}, task_set={tags['task_set']!r}, "
            f"but the file is for {model!r} on {task_set!r} (files from two runs mixed?)"
        )
    if tags["eval_position"] not in ("0", "1"):
        raise DataError(f"{where}: eval_position must be '0' or '1', got {tags['eval_position']!r}")
    return int(tags["eval_position"])


def _read_episodes(path: Path, model: str, task_set: str) -> list[tuple[EpisodeRecord, int]]:
    out: list[tuple[EpisodeRecord, int]] = []
    seen: set[str] = set()
    for lineno, rec in iter_jsonl(path, EpisodeRecord):
        if rec.episode_id in seen:
            continue  # the store keeps the first copy of a duplicate; so do we
        seen.add(rec.episode_id)
        out.append((rec, _eval_position(rec, path, lineno, model, task_set)))
    keys = sorted({rec.models[pos] for rec, pos in out})
    if len(keys) > 1:
        raise DataError(
            f"{path}: episodes of {len(keys)} different versions of {model!r} ({keys}); a "
            "retrained model writes new episodes beside the old ones. Delete the file and "
            "re-run notebook 05 for this model, so that one version is analysed"
        )
    return out


def _read_ratings(path: Path, rubric_version: str | None) -> dict[str, list[EpisodeRating]]:
    """Ratings by episode; with `rubric_version`, other versions are ignored (as join_ratings does)."""
    by_episode: dict[str, list[EpisodeRating]] = {}
    seen: set[RatingKey] = set()
    for _, r in iter_jsonl(path, EpisodeRating):
        if rubric_version is not None and r.rubric_version != rubric_version:
            continue
        if r.key not in seen:  # duplicates are re-runs of the same judgement (RatingStore drops them too)
            seen.add(r.key)
            by_episode.setdefault(r.episode_id, []).append(r)
    return by_episode


def _rows(
    episodes: list[tuple[EpisodeRecord, int]],
    ratings: dict[str, list[EpisodeRating]],
    model: str,
    task_set: str,
) -> list[tuple]:
    rows = []
    for rec, pos in episodes:
        for r in ratings[rec.episode_id]:
            agent = r.agents[pos]
            base = (
                model,
                task_set,
                rec.episode_id,
                rec.env_id,
                rec.combo_id or rec.env_id,
                rec.codename,
                pos,
            )
            tail = (r.judge, r.sample_index, r.rubric_version, rec.models[pos])
            rows.extend((*base, dim, float(score), *tail) for dim, score in agent.scores.items())
            rows.append((*base, "overall", float(agent.overall), *tail))
    return rows


def _load_cell(
    paths: RunPaths, model: str, task_set: str, missing: MissingRatings, rubric_version: str | None
) -> tuple[list, dict]:
    ep_path, rt_path = paths.eval_episodes(model, task_set), paths.eval_ratings(model, task_set)
    cov = {
        "model": model,
        "task_set": task_set,
        "status": "ok",
        "n_episodes": 0,
        "n_rated": 0,
        "n_failed": 0,
        "file": str(ep_path.relative_to(paths.root)),
    }
    if not ep_path.is_file():
        return [], cov | {"status": "no episode file"}
    episodes = _read_episodes(ep_path, model, task_set)
    ratings = _read_ratings(rt_path, rubric_version)
    ids = {rec.episode_id for rec, _ in episodes}
    cov["n_failed"] = _abandoned(failures_path(ep_path), ids)
    orphans = sorted(set(ratings) - ids)
    if orphans:
        raise DataError(
            f"{rt_path}: ratings of {len(orphans)} episodes that are not in {ep_path.name} "
            f"(e.g. {', '.join(orphans[:3])}); files from two runs mixed?"
        )
    unrated = [rec.episode_id for rec, _ in episodes if rec.episode_id not in ratings]
    cov |= {"n_episodes": len(episodes), "n_rated": len(episodes) - len(unrated)}
    if not episodes:
        return [], cov | {"status": "no episodes"}
    if unrated:
        what = (
            "no ratings file"
            if not rt_path.is_file()
            else f"{len(unrated)} of {len(episodes)} episodes unrated"
            + (f" with rubric {rubric_version}" if rubric_version else "")
        )
        if missing == "error":
            raise DataError(
                f"{ep_path}: {what} (e.g. {', '.join(unrated[:3])}; ratings belong in "
                f"{rt_path.name}). Run the judge in notebook 05, or analyse with "
                "missing_ratings='gap' to show this model and task set as a labelled gap"
            )
        return [], cov | {"status": what}
    return _rows(episodes, ratings, model, task_set), cov


def _one_rubric(df: pd.DataFrame) -> pd.DataFrame:
    versions = sorted(df["rubric_version"].unique())
    if len(versions) > 1:
        raise DataError(
            f"ratings of several rubric versions {versions} are mixed in this run; their scores "
            "are not comparable: pass rubric_version= to choose one"
        )
    return df


def load_eval_with_coverage(
    paths: RunPaths,
    models: Sequence[str] = MODEL_ORDER,
    task_sets: Sequence[str] = EVAL_TASK_SETS,
    *,
    missing_ratings: MissingRatings = "error",
    rubric_version: str | None = None,
    progress: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores, coverage): the tidy score table and one coverage row per model and task set saying
    what was found (status "ok", "no episode file", "no episodes", "... unrated")."""
    models = check_models(models)
    rows: list[tuple] = []
    coverage = []
    cells = [(m, ts) for m in models for ts in task_sets]
    for model, task_set in tqdm(cells, desc="reading evaluation results", unit="file", disable=not progress):
        cell_rows, cov = _load_cell(paths, model, task_set, missing_ratings, rubric_version)
        rows += cell_rows
        coverage.append(cov)
    scores = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    if not scores.empty:
        scores = _one_rubric(scores)
    return scores, pd.DataFrame(coverage, columns=COVERAGE_COLUMNS)


def load_eval(
    paths: RunPaths,
    models: Sequence[str] = MODEL_ORDER,
    task_sets: Sequence[str] = EVAL_TASK_SETS,
    *,
    missing_ratings: MissingRatings = "error",
    rubric_version: str | None = None,
) -> pd.DataFrame:
    """Tidy scores of the evaluated agents: model, task_set, episode_id, env_id, combo_id, codename,
    position, dimension (the seven + "overall"), score, judge, sample, rubric_version, model_key."""
    return load_eval_with_coverage(
        paths, models, task_sets, missing_ratings=missing_ratings, rubric_version=rubric_version
    )[0]


def read_json(path: Path, what: str) -> object:
    """JSON from a file, with a DataError naming the file when it is not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: {what} is not valid JSON (line {e.lineno}: {e.msg})") from None
