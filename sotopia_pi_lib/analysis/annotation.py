"""Human rating packets: export a blind sample of episodes, import the CSVs annotators send back.

The packet follows the protocol of SOTOPIA-pi's released human evaluation, so that new human ratings
compare with the released ones: annotators see the scenario, both characters' full backgrounds
including their secrets, both goals and the transcript (never the judge's ratings nor which model
played which side), and give every dimension of both characters a score and a written reasoning.
Episodes are drawn stratified (`per_model`: per evaluated model, the model's two seats in turn, on
SOTOPIA-hard by default) and each episode is meant for two annotators (`raters_per_episode`;
`rater_coverage` says which episodes still lack them).

A packet is one self-contained HTML page (no network, one episode at a time, range-checked inputs,
a button that downloads the annotator's CSV) plus the same rows as a CSV template, and a JSON copy of
the packet that the import checks rows against. In a run, packets are written to
`results/<run>/annotations/` and the annotators' filled CSVs go to `annotations/returned/`
(`load_human_ratings` reads them).

CSV, one row per episode and agent position: annotator, episode_id, agent (0 or 1), agent_name, then
each dimension's score and reasoning (`goal`, `goal_reasoning`, ...). A row whose seven scores are all
blank is "not rated" (skipped, unless `require_complete`); any other blank score or reasoning is a
missing cell and an error. Files in the released CSV format (one row per episode and annotator,
`pk`, `prolific_id`, `goal_1`, `goal_reasoning_1`, ...) import into the same rating table.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import random
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from ..data.human_eval import iter_released_rows, parse_view
from ..data.profiles import AgentProfile
from ..errors import DataError
from ..judge.rubric import DIMENSIONS as RUBRIC_DIMENSIONS
from ..sim.episode import EpisodeRecord
from ..sim.prompts import describe_action
from ..sim.visibility import render_goal
from ..store import atomic_write_text
from .agreement import DIMENSION_RANGES, DIMENSIONS
from .agreement import RATING_COLUMNS as AGREEMENT_COLUMNS

CSV_COLUMNS: tuple[str, ...] = (
    "annotator", "episode_id", "agent", "agent_name", *(c for d in DIMENSIONS for c in (d, f"{d}_reasoning")))
# The rating table every human source imports into (returned packets, released CSVs): agreement's
# rating table with each score's reasoning and where it was read.
RATING_COLUMNS: tuple[str, ...] = (*AGREEMENT_COLUMNS, "reasoning", "source")
RETURNED = "returned"
# Annotators read the same wording of each dimension as the judge's prompt.
HINTS = {d.name: d.description for d in RUBRIC_DIMENSIONS}


class PacketEpisode(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    episode_id: str
    scenario: str
    agent_names: tuple[str, str]
    backgrounds: tuple[str, str]  # each character in full, secret included (as the released protocol)
    goals: tuple[str, str]
    transcript: list[str]


class Packet(BaseModel):
    """What annotators see; written beside the HTML so imports can check ids and names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    packet_id: str
    title: str
    seed: int
    raters_per_episode: int = 2
    episodes: list[PacketEpisode]


class PacketFiles(BaseModel):
    html: Path
    csv: Path
    packet: Path


def _as_record(ep: EpisodeRecord | Mapping, i: int) -> EpisodeRecord:
    if isinstance(ep, EpisodeRecord):
        return ep
    try:
        return EpisodeRecord.model_validate(ep)
    except ValidationError as e:
        key = ".".join(map(str, e.errors()[0]["loc"]))
        raise DataError(f"episode {i} ({ep.get('episode_id', 'no id')}): not an episode record: "
                        f"{key}: {e.errors()[0]['msg']}") from e


def character_background(p: AgentProfile) -> str:
    """A character as the released protocol showed it: who they are, personality and values, secret."""
    return (f"{p.name} is a {p.age}-year-old {p.gender.lower()} {p.occupation.strip()}. {p.gender_pronoun} "
            f"pronouns. {p.public_info.strip()} Personality and values: {p.personality_and_values.strip()} "
            f"{p.first_name}'s secret: {p.secret.strip()}")


def _profiles(rec: EpisodeRecord, agents: Mapping[str, AgentProfile] | None) -> tuple[AgentProfile, AgentProfile]:
    if rec.agent_profiles is not None:
        return rec.agent_profiles
    missing = [a for a in rec.agent_ids if agents is None or a not in agents]
    if missing:
        raise DataError(f"episode {rec.episode_id}: no profile for character(s) {missing}; annotators must see "
                        "both backgrounds (pass the SOTOPIA agents)")
    assert agents is not None
    return agents[rec.agent_ids[0]], agents[rec.agent_ids[1]]


def packet_episode(rec: EpisodeRecord, agents: Mapping[str, AgentProfile] | None = None) -> PacketEpisode:
    """Only what an annotator may see: built field by field, so ratings or model names riding along
    in an episode dict never reach the page."""
    lines = [f"Turn {t.index + 1}: {describe_action(rec.agent_names[t.agent], t.action)}"
             for t in rec.turns if t.action.action_type != "none"]
    people = _profiles(rec, agents)
    return PacketEpisode(episode_id=rec.episode_id, scenario=rec.scenario, agent_names=rec.agent_names,
                         backgrounds=(character_background(people[0]), character_background(people[1])),
                         goals=(render_goal(rec.goals[0], 0, "environment"), render_goal(rec.goals[1], 1, "environment")),
                         transcript=lines)


def _stratified(records: list[EpisodeRecord], per_model: int, rng: random.Random) -> list[EpisodeRecord]:
    """Per evaluated model (tag eval_model), `per_model` episodes taking its two seats in turn."""
    untagged = [r.episode_id for r in records if "eval_model" not in r.tags or "eval_position" not in r.tags]
    if untagged:
        raise DataError(f"annotation packet: episodes {untagged[:3]} have no eval_model/eval_position tags; "
                        "a stratified packet draws from evaluation episodes (notebook 05)")
    chosen = []
    for model in sorted({r.tags["eval_model"] for r in records}):
        seats = [[r for r in records if r.tags["eval_model"] == model and r.tags["eval_position"] == s]
                 for s in ("0", "1")]
        queues = [rng.sample(seat, len(seat)) for seat in seats]
        picked = []
        while len(picked) < per_model and any(queues):
            picked += [q.pop() for q in queues if q][: per_model - len(picked)]
        chosen += picked
    return chosen


def build_packet(episodes: Sequence[EpisodeRecord | Mapping], *, n: int | None = None, per_model: int | None = None,
                 task_set: str | None = None, seed: int = 0, raters_per_episode: int = 2,
                 agents: Mapping[str, AgentProfile] | None = None,
                 title: str = "SOTOPIA-pi episode ratings") -> Packet:
    """A seeded sample of the episodes (of `task_set` when given, by tag), in a shuffled order:
    `per_model` per evaluated model with its seats balanced, or `n` at random, or all."""
    records = [_as_record(ep, i) for i, ep in enumerate(episodes)]
    if task_set is not None:
        records = [r for r in records if r.tags.get("task_set") == task_set]
    if not records:
        raise DataError("annotation packet: no episodes to sample from" + (f" on {task_set}" if task_set else ""))
    ids = [r.episode_id for r in records]
    if len(set(ids)) != len(ids):
        raise DataError(f"annotation packet: duplicate episode ids {sorted({i for i in ids if ids.count(i) > 1})}")
    if n is not None and not 1 <= n <= len(records):
        raise DataError(f"annotation packet: n={n} but there are {len(records)} episodes")
    rng = random.Random(seed)
    if per_model is not None:
        chosen = rng.sample(pick := _stratified(records, per_model, rng), len(pick))
    else:
        chosen = rng.sample(records, n or len(records))
    digest = hashlib.sha256("\n".join(r.episode_id for r in chosen).encode()).hexdigest()[:12]
    return Packet(packet_id=digest, title=title, seed=seed, raters_per_episode=raters_per_episode,
                  episodes=[packet_episode(r, agents) for r in chosen])


def render_html(packet: Packet) -> str:
    data = {**packet.model_dump(mode="json"), "columns": list(CSV_COLUMNS),
            "dimensions": [{"name": d, "low": lo, "high": hi, "hint": HINTS[d]} for d, (lo, hi) in DIMENSION_RANGES.items()]}
    # "<" escaped so that no transcript text can close the script element.
    payload = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")
    template = resources.files(__package__).joinpath("annotation_template.html").read_text(encoding="utf-8")
    return template.replace("{{TITLE}}", html.escape(packet.title)).replace("{{PACKET_JSON}}", payload)


def template_rows(packet: Packet) -> list[dict[str, str]]:
    return [{"annotator": "", "episode_id": ep.episode_id, "agent": str(a), "agent_name": ep.agent_names[a],
             **dict.fromkeys(CSV_COLUMNS[4:], "")} for ep in packet.episodes for a in (0, 1)]


def write_rows_csv(path: Path, rows: Sequence[Mapping[str, object]]) -> None:
    from io import StringIO

    buf = StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def write_packet(packet: Packet, out_dir: Path) -> PacketFiles:
    """`annotation_<id>.html`, `annotation_<id>.csv` (blank template) and `packet_<id>.json`."""
    files = PacketFiles(html=out_dir / f"annotation_{packet.packet_id}.html",
                        csv=out_dir / f"annotation_{packet.packet_id}.csv",
                        packet=out_dir / f"packet_{packet.packet_id}.json")
    atomic_write_text(files.html, render_html(packet))
    write_rows_csv(files.csv, template_rows(packet))
    atomic_write_text(files.packet, packet.model_dump_json(indent=1))
    return files


def load_packet(path: Path) -> Packet:
    try:
        return Packet.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise DataError(f"packet file not found: {path}") from e
    except ValidationError as e:
        raise DataError(f"{path}: not a packet file ({e.errors()[0]['msg']})") from e


def _score(raw: str, dim: str, where: str) -> float:
    lo, hi = DIMENSION_RANGES[dim]
    try:
        value = float(raw)
    except ValueError:
        raise DataError(f"{where}: {raw!r} is not a number (expected a whole number from {lo} to {hi})") from None
    if not value.is_integer():
        raise DataError(f"{where}: {raw!r} is not a whole number")
    if not lo <= value <= hi:
        raise DataError(f"{where}: score {raw} is out of range [{lo}, {hi}] for {dim}")
    return value


def _csv_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and rows (with each row's first line: cells may span lines) of a CSV file."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None) or []
        rows, start = [], reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if len(cells) != len(header):
                raise DataError(f"{path}, line {line}: expected {len(header)} cells, the row has {len(cells)}")
            rows.append((line, dict(zip(header, cells, strict=True))))
    return header, rows


def _claim(seen: dict, rater: str, ep: str, agent: int, at: str) -> None:
    key = (rater, ep, agent)
    if key in seen:
        raise DataError(f"{at}: duplicate row for annotator {rater!r}, episode {ep}, agent {agent} "
                        f"(first at {seen[key]})")
    seen[key] = at


def _packet_rows(path: Path, packet: Packet, require_complete: bool, seen: dict) -> list[dict]:
    """A returned packet CSV: one row per episode and agent, every score with its reasoning."""
    names = {ep.episode_id: ep.agent_names for ep in packet.episodes}
    header, rows = _csv_rows(path)
    missing, extra = set(CSV_COLUMNS) - set(header), set(header) - set(CSV_COLUMNS)
    if missing or extra:
        raise DataError(f"{path}, line 1: header has missing columns {sorted(missing)} and unknown "
                        f"columns {sorted(extra)}; expected {list(CSV_COLUMNS)}")
    out = []
    for line, row in rows:
        at = f"{path}, line {line}"
        ep, agent = row["episode_id"].strip(), row["agent"].strip()
        if ep not in names:
            raise DataError(f"{at}, column episode_id: unknown episode id {ep!r} (not in packet {packet.packet_id})")
        if agent not in ("0", "1"):
            raise DataError(f"{at}, column agent: {agent!r} is not 0 or 1")
        if row["agent_name"].strip() != names[ep][int(agent)]:
            raise DataError(f"{at}, column agent_name: {row['agent_name']!r} is not agent {agent} of "
                            f"episode {ep} ({names[ep][int(agent)]!r}); were rows moved?")
        blank = [c for c in CSV_COLUMNS[4:] if not row[c].strip()]
        if len([c for c in blank if c in DIMENSIONS]) == len(DIMENSIONS) and not require_complete:
            continue
        if blank:
            what = "a score" if blank[0] in DIMENSIONS else "a reasoning"
            raise DataError(f"{at}, column {blank[0]}: missing cell (every dimension needs {what})")
        rater = row["annotator"].strip() or path.stem
        _claim(seen, rater, ep, int(agent), at)
        out.extend({"rater": rater, "episode_id": ep, "agent": int(agent), "dimension": d,
                    "score": _score(row[d].strip(), d, f"{at}, column {d}"),
                    "reasoning": row[f"{d}_reasoning"].strip(), "source": at} for d in DIMENSIONS)
    return out


def _released_format_rows(path: Path, packet: Packet, seen: dict) -> list[dict]:
    """A CSV in the released human-evaluation format (one row per episode and annotator, both agents)."""
    names = {ep.episode_id: ep.agent_names for ep in packet.episodes}
    out = []
    for line, row, agents in iter_released_rows(path):
        at = f"{path}, line {line}"
        ep = row["pk"].strip()
        if ep not in names:
            raise DataError(f"{at}, column pk: unknown episode id {ep!r} (not in packet {packet.packet_id})")
        view = parse_view(row["data"], at) if row["data"].strip() else None
        if view is not None and view.names is not None and tuple(view.names) != names[ep]:
            raise DataError(f"{at}, column data: names {list(view.names)} are not the packet's "
                            f"{list(names[ep])} for episode {ep}")
        rater = row["prolific_id"].strip() or path.stem
        for agent, scores in enumerate(agents):
            _claim(seen, rater, ep, agent, at)
            out.extend({"rater": rater, "episode_id": ep, "agent": agent, "dimension": d,
                        "score": float(s.score), "reasoning": s.reasoning, "source": at} for d, s in scores.items())
    return out


def _read_rows(path: Path, packet: Packet, require_complete: bool, seen: dict) -> list[dict]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), None) or []
    released = "prolific_id" in header and "pk" in header
    out = _released_format_rows(path, packet, seen) if released else _packet_rows(path, packet, require_complete, seen)
    if not out:
        raise DataError(f"{path}: no rated rows (every score cell is blank)")
    return out


def read_annotations(paths: Sequence[Path], packet: Packet, *, require_complete: bool = False) -> pd.DataFrame:
    """Filled CSVs — returned packets, or files in the released CSV format — as one rating table
    (RATING_COLUMNS: rater, episode_id, agent, dimension, score, reasoning, source) for `agreement`; a
    blank annotator cell means the file's name. Duplicates are checked across files."""
    if not paths:
        raise DataError("no annotation files given")
    seen: dict = {}
    rows = []
    for p in paths:
        if not Path(p).is_file():
            raise DataError(f"annotation file not found: {p}")
        rows.extend(_read_rows(Path(p), packet, require_complete, seen))
    return pd.DataFrame(rows, columns=list(RATING_COLUMNS))


def load_human_ratings(folder: Path) -> pd.DataFrame | None:
    """Filled annotation CSVs of `folder/returned/` checked against the one packet in `folder`; None
    when nothing has been returned."""
    returned = sorted((folder / RETURNED).glob("*.csv")) if (folder / RETURNED).is_dir() else []
    if not returned:
        return None
    packets = sorted(folder.glob("packet_*.json"))
    if len(packets) != 1:
        raise DataError(
            f"{folder}: {len(packets)} packet_*.json files; the returned CSVs in {RETURNED}/ "
            "must be checked against exactly one packet"
        )
    return read_annotations(returned, load_packet(packets[0]))


def rater_coverage(ratings: pd.DataFrame, packet: Packet) -> pd.DataFrame:
    """Per packet episode: how many annotators rated it, and whether that is short of the packet's
    `raters_per_episode` (the released protocol: two per episode)."""
    counts = ratings.groupby("episode_id")["rater"].nunique() if not ratings.empty else pd.Series(dtype=int)
    rows = [{"episode_id": ep.episode_id, "raters": int(counts.get(ep.episode_id, 0))} for ep in packet.episodes]
    df = pd.DataFrame(rows, columns=["episode_id", "raters"])
    return df.assign(short=df["raters"] < packet.raters_per_episode)


def per_rater_tables(ratings: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One wide table per annotator (episode_id, agent, the seven dimensions), for review."""
    wide = ratings.pivot_table(index=["rater", "episode_id", "agent"], columns="dimension", values="score")
    wide = wide.reindex(columns=[d for d in DIMENSIONS if d in wide.columns]).reset_index()
    return {r: part.drop(columns="rater").reset_index(drop=True) for r, part in wide.groupby("rater")}
