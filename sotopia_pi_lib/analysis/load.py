"""A run's saved files as tidy tables: what notebook 06 reads, and nothing else.

- evaluation scores (05): one row per evaluated agent, rating and dimension, with a coverage row per
  model and task set saying what was found;
- MMLU answers and safety compliance flags (05), one row per question or flag;
- loss curves (04), the judge's scores of the collected training data and whether filtering kept
  them (02, 03);
- the run's provenance and which model played each role (manifest.json).

In an evaluation episode the evaluated model plays the position named by the episode's tags
(`eval_model`, `eval_position`, `task_set`, written by `evaluate.benchmark`); its scores are those of
that position, the partner's are not its scores.

Missing data is never silently dropped: an episode file whose ratings are missing is an error (or,
with `missing_ratings="gap"`, a labelled gap in the coverage table), and a model without an episode,
MMLU or flags file is a gap the figures label "no data", never a zero. Files are only read, never
repaired or rewritten.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError
from tqdm.auto import tqdm

from ..errors import ConfigError, DataError
from ..evaluate.compliance import ComplianceFlag
from ..evaluate.mmlu import load_mmlu_results as _read_mmlu
from ..evaluate.mmlu import results_frame
from ..judge.ratings import EpisodeRating, RatingKey
from ..judge.rubric import DIMENSION_NAMES
from ..pi.filtering import score_table
from ..sim.episode import EpisodeRecord
from ..store.jsonl import iter_jsonl, read_jsonl
from ..store.manifest import Manifest, manifest_path, provenance_lines
from ..store.run import RunPaths

MODEL_ORDER: tuple[str, ...] = ("base", "sr", "bc", "bc_sr", "expert")
EVAL_TASK_SETS: tuple[str, ...] = ("sotopia_all", "sotopia_hard", "safety")
METRICS: tuple[str, ...] = (*DIMENSION_NAMES, "overall")
SCORE_COLUMNS = ["model", "task_set", "episode_id", "env_id", "combo_id", "codename", "position", "dimension",
                 "score", "judge", "sample", "rubric_version", "model_key"]
COVERAGE_COLUMNS = ["model", "task_set", "status", "n_episodes", "n_rated", "n_failed", "file"]
MMLU_COLUMNS = ["model", "index", "subject", "category", "k_shot", "answer", "predicted", "correct", "method",
                "error"]
LOSS_COLUMNS = ["adapter", "step", "epoch", "loss", "learning_rate"]
# The file names of pi.train_record (LOSS_JSON, LOSS_CSV; a test checks they agree), repeated here
# because importing pi.train_record imports trl and torch, seconds that figure regeneration need not pay.
LOSS_JSON, LOSS_CSV = "loss_curve.json", "loss_curve.csv"
TRAINING_COLUMNS = ["source", "round", "episode_id", "agent", "goal", "overall", "kept"]
_COLLECTED = re.compile(r"^(?P<source>.+)_round(?P<round>\d+)\.episodes\.jsonl$")
EMBEDDED_HINTS = ("embedded", "smollm2")
MissingRatings = Literal["error", "gap"]
K = TypeVar("K")


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


def read_json(path: Path, what: str) -> object:
    """JSON from a file, with a DataError naming the file when it is not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: {what} is not valid JSON (line {e.lineno}: {e.msg})") from None


def _line_keys(path: Path, key: Callable[[dict], K], what: str) -> set[K]:
    """One key from every line of a JSONL file, read as plain JSON: only the key matters here (the
    writers validated the rest, and some records are long prompts); a line without it names file and
    line."""
    keys: set[K] = set()
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    keys.add(key(json.loads(line)))
                except (ValueError, KeyError, TypeError):
                    raise DataError(f"{path}:{lineno}: {what}") from None
    return keys


def read_ratings(path: Path, rubric_version: str | None = None) -> list[EpisodeRating]:
    """A ratings file (none if it does not exist), each judgement once (duplicates are re-runs of the
    same judgement; RatingStore drops them too); with `rubric_version`, other versions are ignored (as
    judge.join_ratings does)."""
    out, seen = [], set[RatingKey]()
    for _, r in iter_jsonl(path, EpisodeRating):
        if r.key not in seen and rubric_version in (None, r.rubric_version):
            seen.add(r.key)
            out.append(r)
    return out


# --- evaluation scores (05) ---------------------------------------------------------------------


def failures_path(episodes: Path) -> Path:
    """The episode store's side file of abandoned episodes (sim.episode_store.EpisodeStore)."""
    return episodes.with_name(episodes.stem + ".failures.jsonl")


def _abandoned(path: Path, done: set[str]) -> int:
    """Episodes the store gave up on and no re-run completed (a re-run retries failures, so the side
    file can also list episodes that finished later)."""
    if not path.is_file():
        return 0
    return len(_line_keys(path, lambda r: str(r["episode_id"]), "not an episode failure record") - done)


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


def _score_rows(episodes: list[tuple[EpisodeRecord, int]], ratings: dict[str, list[EpisodeRating]], model: str,
          task_set: str) -> list[tuple]:
    rows = []
    for rec, pos in episodes:
        for r in ratings[rec.episode_id]:
            agent = r.agents[pos]
            base = (model, task_set, rec.episode_id, rec.env_id, rec.combo_id or rec.env_id, rec.codename, pos)
            tail = (r.judge, r.sample_index, r.rubric_version, rec.models[pos])
            rows.extend((*base, dim, float(score), *tail) for dim, score in agent.scores.items())
            rows.append((*base, "overall", float(agent.overall), *tail))
    return rows


def _unrated_status(unrated: list[str], n: int, ep_path: Path, rt_path: Path, missing: MissingRatings,
                    rubric_version: str | None) -> str:
    """The coverage status of a file with unrated episodes, or the error that `missing="error"` asks for."""
    rubric = f" with rubric {rubric_version}" if rubric_version else ""
    what = "no ratings file" if not rt_path.is_file() else f"{len(unrated)} of {n} episodes unrated{rubric}"
    if missing == "error":
        raise DataError(
            f"{ep_path}: {what} (e.g. {', '.join(unrated[:3])}; ratings belong in "
            f"{rt_path.name}). Run the judge in notebook 05, or analyse with "
            "missing_ratings='gap' to show this model and task set as a labelled gap"
        )
    return what


def _load_cell(paths: RunPaths, model: str, task_set: str, missing: MissingRatings,
               rubric_version: str | None) -> tuple[list, dict]:
    ep_path, rt_path = paths.eval_episodes(model, task_set), paths.eval_ratings(model, task_set)
    cov = {"model": model, "task_set": task_set, "status": "ok", "n_episodes": 0, "n_rated": 0, "n_failed": 0,
           "file": str(ep_path.relative_to(paths.root))}
    if not ep_path.is_file():
        return [], cov | {"status": "no episode file"}
    episodes = _read_episodes(ep_path, model, task_set)
    ratings: dict[str, list[EpisodeRating]] = {}
    for r in read_ratings(rt_path, rubric_version):
        ratings.setdefault(r.episode_id, []).append(r)
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
        return [], cov | {"status": _unrated_status(unrated, len(episodes), ep_path, rt_path, missing,
                                                    rubric_version)}
    return _score_rows(episodes, ratings, model, task_set), cov


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


# --- MMLU and safety (05) -----------------------------------------------------------------------


def load_mmlu_results(paths: RunPaths, models: Sequence[str] = MODEL_ORDER) -> pd.DataFrame:
    """One row per question and model (model, index, subject, category, correct, predicted, ...);
    a model without an MMLU file has no rows (a gap, not an error)."""
    runs = {m: _read_mmlu(paths.mmlu(m)) for m in check_models(models) if paths.mmlu(m).is_file()}
    runs = {m: rs for m, rs in runs.items() if rs}
    return results_frame(runs) if runs else pd.DataFrame(columns=MMLU_COLUMNS)


def load_safety(paths: RunPaths, models: Sequence[str] = MODEL_ORDER) -> pd.DataFrame:
    """Judged compliance flags: model, episode_id, agent, codename, complied (True/False/None when the
    judge's answer failed), evidence, judge, version, error. Models without a flags file have no rows."""
    rows = []
    for model in check_models(models):
        path = paths.compliance(model)
        for flag in read_jsonl(path, ComplianceFlag):
            if flag.model.split("@")[0] != model:
                raise DataError(
                    f"{path}: flag for episode {flag.episode_id} names model {flag.model!r}, "
                    f"the file is for {model!r}"
                )
            rows.append(flag.model_dump() | {"model": model})
    return pd.DataFrame(rows, columns=[*ComplianceFlag.model_fields])


# --- training (02-04) ---------------------------------------------------------------------------


def _loss_frame(folder: Path) -> pd.DataFrame:
    """step, epoch, loss, learning_rate of one adapter (the JSON list of LossPoint, else the CSV)."""
    js, csv_path = folder / LOSS_JSON, folder / LOSS_CSV
    if js.is_file():
        raw = read_json(js, "the loss curve")
        if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
            raise DataError(f"{js}: expected a JSON list of loss points ({{step, loss, ...}})")
        frame, where = pd.DataFrame(raw), js
    else:
        frame, where = pd.read_csv(csv_path), csv_path
    if frame.empty:
        return pd.DataFrame(columns=LOSS_COLUMNS[1:])
    if not {"step", "loss"} <= set(frame.columns):
        raise DataError(f"{where}: a loss curve needs step and loss, it has {list(frame.columns)}")
    numeric = frame.reindex(columns=LOSS_COLUMNS[1:]).apply(pd.to_numeric, errors="coerce")
    bad = numeric[["step", "loss"]].isna().any(axis=1)
    if bad.any():
        raise DataError(f"{where}: point {int(bad.to_numpy().argmax())} has no numeric step or loss")
    return numeric


def load_losses(paths: RunPaths) -> pd.DataFrame:
    """Training loss per step of every adapter under 04_train: adapter, step, epoch, loss, learning_rate."""
    root = paths.stage_dir("04_train")
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    rows = [_loss_frame(f).assign(adapter=f.name) for f in folders
            if (f / LOSS_JSON).is_file() or (f / LOSS_CSV).is_file()]
    if not rows:
        return pd.DataFrame(columns=LOSS_COLUMNS)
    return pd.concat(rows, ignore_index=True)[LOSS_COLUMNS]


def _kept_units(path: Path) -> set[tuple[str, int]]:
    """(episode_id, agent) of every example in a training file."""
    return _line_keys(path, lambda ex: (str(ex["episode_id"]), int(ex["agent"])),
                      "a training example needs episode_id and agent")


def _collected_scores(paths: RunPaths, ep_path: Path, source: str, round_: int) -> pd.DataFrame | None:
    """One collected round's score table with its `kept` column; None for an empty episode file."""
    episodes = read_jsonl(ep_path, EpisodeRecord)
    if not episodes:
        return None
    rt_path = paths.ratings(source, round_)
    try:
        table = score_table(episodes, read_jsonl(rt_path, EpisodeRating))
    except DataError as e:
        raise DataError(f"{ep_path}: training data without complete ratings ({rt_path.name}): {e}") from None
    sft = paths.sft(source, round_)
    if sft.is_file():
        kept = _kept_units(sft)
        table["kept"] = [(e, a) in kept for e, a in zip(table["episode_id"], table["agent"], strict=True)]
    else:
        table["kept"] = None
    return table.assign(source=source, round=round_)


def load_training_scores(paths: RunPaths) -> pd.DataFrame:
    """Goal and overall of every collected (episode, agent), one row each: source, round, episode_id,
    agent, goal, overall, kept (True/False after filtering; None when no filtered file exists)."""
    root = paths.stage_dir("02_collect")
    frames = []
    for ep_path in sorted(root.glob("*_round*.episodes.jsonl")) if root.is_dir() else []:
        m = _COLLECTED.match(ep_path.name)
        if m and (table := _collected_scores(paths, ep_path, m["source"], int(m["round"]))) is not None:
            frames.append(table)
    if not frames:
        return pd.DataFrame(columns=TRAINING_COLUMNS)
    return pd.concat(frames, ignore_index=True)[TRAINING_COLUMNS]


# --- provenance (manifest.json) -----------------------------------------------------------------


class RunInfo(BaseModel):
    """What the figures and summary need to know about how the run was made."""

    model_config = ConfigDict(frozen=True)

    run: str
    roles: dict[str, str]  # role -> model label ("hf:embedded", "openai:gpt-4")
    provenance: list[str]
    embedded_roles: list[str]  # roles played by the embedded 135M model


def _role_labels(params: Mapping[str, Any]) -> dict[str, str]:
    roles = params.get("models") or {}
    out = {}
    for role, spec in roles.items():
        if isinstance(spec, Mapping) and "model" in spec:
            out[role] = f"{spec.get('backend', '?')}:{spec['model']}" + (
                f"+{spec['adapter']}" if spec.get("adapter") else ""
            )
    return out


def is_embedded(label: str) -> bool:
    return any(h in label.lower() for h in EMBEDDED_HINTS)


def _manifest(paths: RunPaths) -> Manifest | None:
    path = manifest_path(paths.root)
    if not path.is_file():
        return None
    try:
        return Manifest.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as e:
        raise DataError(
            f"{path}: not a run manifest ({e.errors()[0]['loc']}: {e.errors()[0]['msg']})"
        ) from None


def load_run_info(paths: RunPaths, judges: list[str] | None = None) -> RunInfo:
    """Roles and provenance from manifest.json; without a manifest, the judge labels found in the
    ratings stand in for the roles (so the embedded-model note still appears)."""
    manifest = _manifest(paths)
    if manifest is None:
        roles = {f"judge ({j})": j for j in judges or []}
        provenance = [f"run {paths.root.name}: no manifest.json (provenance unknown)"]
    else:
        roles, provenance = _role_labels(manifest.params), provenance_lines(manifest)
    return RunInfo(run=paths.root.name, roles=roles, provenance=provenance,
                   embedded_roles=sorted(r for r, label in roles.items() if is_embedded(label)))
