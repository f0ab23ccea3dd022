"""Human rating packets: export a blind sample of episodes, import the CSVs annotators send back.

A packet is one self-contained HTML page (no network, one episode at a time, range-checked inputs,
a button that downloads the annotator's CSV) plus the same rows as a CSV template, and a JSON copy of
the packet that the import checks rows against. Annotators see the scenario, both goals and the
transcript; never the judge's ratings nor which model played which side.

CSV, one row per episode and agent position: annotator, episode_id, agent (0 or 1), agent_name, then
the seven dimensions. A row whose seven scores are all blank is "not rated" (skipped, unless
`require_complete`); any other blank score is a missing cell and an error.
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

from ..errors import DataError
from ..judge.rubric import DIMENSIONS as RUBRIC_DIMENSIONS
from ..sim.episode import EpisodeRecord
from ..sim.prompts import describe_action
from ..sim.visibility import render_goal
from ..store import atomic_write_text
from .agreement import DIMENSION_RANGES, DIMENSIONS

CSV_COLUMNS: tuple[str, ...] = ("annotator", "episode_id", "agent", "agent_name", *DIMENSIONS)
# Annotators read the same wording of each dimension as the judge's prompt.
HINTS = {d.name: d.description for d in RUBRIC_DIMENSIONS}


class PacketEpisode(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    episode_id: str
    scenario: str
    agent_names: tuple[str, str]
    goals: tuple[str, str]
    transcript: list[str]


class Packet(BaseModel):
    """What annotators see; written beside the HTML so imports can check ids and names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    packet_id: str
    title: str
    seed: int
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


def packet_episode(rec: EpisodeRecord) -> PacketEpisode:
    """Only what an annotator may see: built field by field, so ratings or model names riding along
    in an episode dict never reach the page."""
    lines = [f"Turn {t.index + 1}: {describe_action(rec.agent_names[t.agent], t.action)}" for t in rec.turns]
    return PacketEpisode(episode_id=rec.episode_id, scenario=rec.scenario, agent_names=rec.agent_names,
                         goals=(render_goal(rec.goals[0], 0, "environment"), render_goal(rec.goals[1], 1, "environment")),
                         transcript=lines)


def build_packet(episodes: Sequence[EpisodeRecord | Mapping], *, n: int | None = None, seed: int = 0,
                 title: str = "SOTOPIA-pi episode ratings") -> Packet:
    """A seeded random sample of `n` episodes (all when None), in a shuffled order."""
    records = [_as_record(ep, i) for i, ep in enumerate(episodes)]
    if not records:
        raise DataError("annotation packet: no episodes to sample from")
    ids = [r.episode_id for r in records]
    if len(set(ids)) != len(ids):
        raise DataError(f"annotation packet: duplicate episode ids {sorted({i for i in ids if ids.count(i) > 1})}")
    if n is not None and not 1 <= n <= len(records):
        raise DataError(f"annotation packet: n={n} but there are {len(records)} episodes")
    chosen = random.Random(seed).sample(records, n or len(records))
    digest = hashlib.sha256("\n".join(r.episode_id for r in chosen).encode()).hexdigest()[:12]
    return Packet(packet_id=digest, title=title, seed=seed, episodes=[packet_episode(r) for r in chosen])


def render_html(packet: Packet) -> str:
    data = {**packet.model_dump(mode="json"), "columns": list(CSV_COLUMNS),
            "dimensions": [{"name": d, "low": lo, "high": hi, "hint": HINTS[d]} for d, (lo, hi) in DIMENSION_RANGES.items()]}
    # "<" escaped so that no transcript text can close the script element.
    payload = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")
    template = resources.files(__package__).joinpath("annotation_template.html").read_text(encoding="utf-8")
    return template.replace("{{TITLE}}", html.escape(packet.title)).replace("{{PACKET_JSON}}", payload)


def template_rows(packet: Packet) -> list[dict[str, str]]:
    return [{"annotator": "", "episode_id": ep.episode_id, "agent": str(a), "agent_name": ep.agent_names[a],
             **dict.fromkeys(DIMENSIONS, "")} for ep in packet.episodes for a in (0, 1)]


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


def _read_rows(path: Path, packet: Packet, require_complete: bool, seen: dict) -> list[dict]:
    names = {ep.episode_id: ep.agent_names for ep in packet.episodes}
    out = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing, extra = set(CSV_COLUMNS) - set(header), set(header) - set(CSV_COLUMNS)
        if missing or extra:
            raise DataError(f"{path}, line 1: header has missing columns {sorted(missing)} and unknown "
                            f"columns {sorted(extra)}; expected {list(CSV_COLUMNS)}")
        for row in reader:
            at = f"{path}, line {reader.line_num}"
            if None in row or any(v is None for v in row.values()):
                raise DataError(f"{at}: expected {len(CSV_COLUMNS)} cells, the row has a different number")
            ep, agent = row["episode_id"].strip(), row["agent"].strip()
            if ep not in names:
                raise DataError(f"{at}, column episode_id: unknown episode id {ep!r} (not in packet {packet.packet_id})")
            if agent not in ("0", "1"):
                raise DataError(f"{at}, column agent: {agent!r} is not 0 or 1")
            if row["agent_name"].strip() != names[ep][int(agent)]:
                raise DataError(f"{at}, column agent_name: {row['agent_name']!r} is not agent {agent} of "
                                f"episode {ep} ({names[ep][int(agent)]!r}); were rows moved?")
            blank = [d for d in DIMENSIONS if not row[d].strip()]
            if len(blank) == len(DIMENSIONS) and not require_complete:
                continue
            if blank:
                raise DataError(f"{at}, column {blank[0]}: missing cell (every dimension needs a score)")
            rater = row["annotator"].strip() or path.stem
            key = (rater, ep, int(agent))
            if key in seen:
                raise DataError(f"{at}: duplicate row for annotator {rater!r}, episode {ep}, agent {agent} "
                                f"(first at {seen[key]})")
            seen[key] = at
            out.extend({"rater": rater, "episode_id": ep, "agent": int(agent), "dimension": d,
                        "score": _score(row[d].strip(), d, f"{at}, column {d}"), "source": str(path)}
                       for d in DIMENSIONS)
    if not out:
        raise DataError(f"{path}: no rated rows (every score cell is blank)")
    return out


def read_annotations(paths: Sequence[Path], packet: Packet, *, require_complete: bool = False) -> pd.DataFrame:
    """Filled CSVs -> tidy ratings (rater, episode_id, agent, dimension, score, source) for
    `agreement`; a blank annotator cell means the file's name. Duplicates are checked across files."""
    if not paths:
        raise DataError("no annotation files given")
    seen: dict = {}
    rows = []
    for p in paths:
        if not Path(p).is_file():
            raise DataError(f"annotation file not found: {p}")
        rows.extend(_read_rows(Path(p), packet, require_complete, seen))
    return pd.DataFrame(rows)


def per_rater_tables(ratings: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One wide table per annotator (episode_id, agent, the seven dimensions), for review."""
    wide = ratings.pivot_table(index=["rater", "episode_id", "agent"], columns="dimension", values="score")
    wide = wide.reindex(columns=[d for d in DIMENSIONS if d in wide.columns]).reset_index()
    return {r: part.drop(columns="rater").reset_index(drop=True) for r, part in wide.groupby("rater")}
