"""Annotation packets: what annotators see, the CSV round trip, every import error, and the page
itself in a real headless browser.

The episodes are real SOTOPIA settings (scenario, characters, goals from the shipped profiles) with
short hand-written turns: the packet code depends on the record's shape, not on who wrote the turns.
The browser test needs Debian's `chromium` (apt-get install chromium) and the `playwright` package;
Playwright's own browser download is never used (`executable_path` points at the system chromium).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from sotopia_pi_lib.analysis.agreement import DIMENSION_RANGES, DIMENSIONS, Raters, krippendorff_alpha
from sotopia_pi_lib.analysis.annotation import (
    CSV_COLUMNS,
    RATING_COLUMNS,
    build_packet,
    load_packet,
    per_rater_tables,
    rater_coverage,
    read_annotations,
    write_packet,
)
from sotopia_pi_lib.data.human_eval import FIXED_COLUMNS, SCORE_COLUMNS
from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.sim.episode import AgentAction, EpisodeRecord, Turn

TRICKY = 'I said "no", then </script><script>alert(1)</script>, ok?'


def make_episodes(sotopia, n: int = 6, combos=None) -> list[EpisodeRecord]:
    out = []
    for k, combo in enumerate(combos or sotopia.combos[:n]):
        env = sotopia.environments[combo.env_id]
        names = tuple(sotopia.agents[a].name for a in combo.agent_ids)
        actions = [AgentAction(action_type="speak", argument=f"Hello, {names[1]}."),
                   AgentAction(action_type="non-verbal communication", argument="smiles"),
                   AgentAction(action_type="speak", argument=TRICKY),
                   AgentAction(action_type="leave")]
        turns = [Turn(index=i, agent=i % 2, action=a, raw=a.model_dump_json()) for i, a in enumerate(actions)]
        out.append(EpisodeRecord(
            episode_id=f"ep-{k:03d}", env_id=env.env_id, combo_id=combo.combo_id, codename=env.codename,
            scenario=env.scenario, agent_ids=combo.agent_ids, agent_names=names, goals=env.agent_goals,
            models=("secret-model-a", "secret-model-b"), prompt_version="test", seed=k, turns=turns,
            end_reason="leave"))
    return out


@pytest.fixture
def packet_files(sotopia, tmp_path):
    episodes = make_episodes(sotopia)
    as_dicts = [{**ep.model_dump(mode="json"), "ratings": {"goal": 9, "reasoning": "JUDGE-REASONING-TEXT"}}
                for ep in episodes]
    packet = build_packet(as_dicts[:3] + episodes[3:], n=4, seed=1, agents=sotopia.agents)
    return packet, write_packet(packet, tmp_path)


def fill(template: Path, out: Path, annotator: str, score_of, skip=()) -> None:
    """Fill the blank template as an annotator would in a spreadsheet."""
    with template.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):
        row["annotator"] = annotator
        if i not in skip:
            row.update({d: str(score_of(i, d)) for d in DIMENSIONS})
            row.update({f"{d}_reasoning": f"because {d}, row {i}" for d in DIMENSIONS})
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(rows)


def mid(i: int, d: str) -> int:
    lo, hi = DIMENSION_RANGES[d]
    return lo + (i * 3 + len(d)) % (hi - lo + 1)


def test_packet_is_blind_seeded_and_self_contained(packet_files, sotopia):
    packet, files = packet_files
    assert len(packet.episodes) == 4 and len({e.episode_id for e in packet.episodes}) == 4
    again = build_packet(make_episodes(sotopia), n=4, seed=1, agents=sotopia.agents)
    assert [e.episode_id for e in again.episodes] == [e.episode_id for e in packet.episodes]
    page = files.html.read_text()
    assert "JUDGE-REASONING-TEXT" not in page and "secret-model-a" not in page
    # as in the released protocol: both characters in full, secrets included, and two raters each
    first = packet.episodes[0]
    people = [a for a in sotopia.agents.values() if a.name in first.agent_names]
    assert all(p.secret.strip() in page and p.personality_and_values.strip()[:40] in page for p in people)
    assert packet.raters_per_episode == 2
    assert "<extra_info>" not in page  # goals are shown without SOTOPIA's markup tags
    assert "http://" not in page and "https://" not in page and "<link" not in page and " src=" not in page
    assert page.count("</script>") == 2  # transcript text cannot close the script element
    assert "default-src 'none'" in page
    assert load_packet(files.packet) == packet
    with files.csv.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and tuple(rows[0]) == CSV_COLUMNS and all(r["goal"] == "" for r in rows)
    assert "goal_reasoning" in CSV_COLUMNS and all(r["goal_reasoning"] == "" for r in rows)


def test_csv_round_trip_into_agreement(packet_files, tmp_path):
    packet, files = packet_files
    fill(files.csv, tmp_path / "alice.csv", "alice", mid)
    fill(files.csv, tmp_path / "bob.csv", "", lambda i, d: mid(i, d) if i != 2 else DIMENSION_RANGES[d][0],
         skip={7})
    ratings = read_annotations([tmp_path / "alice.csv", tmp_path / "bob.csv"], packet)
    assert tuple(ratings.columns) == RATING_COLUMNS
    assert set(ratings["rater"]) == {"alice", "bob"}  # bob left the annotator cell blank: the file name
    assert ratings.iloc[0]["reasoning"].startswith("because ")
    assert len(ratings) == (8 + 7) * 7
    first = packet.episodes[0].episode_id
    got = ratings[(ratings.rater == "alice") & (ratings.episode_id == first) & (ratings.agent == 0)]
    assert dict(zip(got["dimension"], got["score"], strict=True)) == {d: mid(0, d) for d in DIMENSIONS}
    tables = per_rater_tables(ratings)
    assert list(tables["alice"].columns) == ["episode_id", "agent", *DIMENSIONS] and len(tables["bob"]) == 7
    alpha = krippendorff_alpha(ratings, raters=Raters(kind="human", label="test")).set_index("dimension")
    assert alpha.loc["goal", "n_items"] == 7 and alpha.loc["goal", "alpha"] < 1.0


def bad_csv(files, tmp_path: Path, edit) -> Path:
    fill(files.csv, tmp_path / "bad.csv", "carol", mid)
    with (tmp_path / "bad.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    edit(rows)
    with (tmp_path / "bad.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return tmp_path / "bad.csv"


@pytest.mark.parametrize(("edit", "message"), [
    (lambda r: r[1].update(goal="11"), r"bad.csv, line 3, column goal: score 11 is out of range \[0, 10\]"),
    (lambda r: r[0].update(secret="2"), r"line 2, column secret: score 2 is out of range \[-10, 0\]"),
    (lambda r: r[2].update(knowledge=""), r"line 4, column knowledge: missing cell"),
    (lambda r: r[0].update(goal_reasoning=" "), r"line 2, column goal_reasoning: missing cell \(every dimension needs a reasoning\)"),
    (lambda r: r[3].update(episode_id="ep-999"), r"line 5, column episode_id: unknown episode id 'ep-999'"),
    (lambda r: r.append(dict(r[0])), r"line 10: duplicate row for annotator 'carol'.*first at .*line 2"),
    (lambda r: r[0].update(goal="7.5"), r"line 2, column goal: '7.5' is not a whole number"),
    (lambda r: r[0].update(goal="high"), r"line 2, column goal: 'high' is not a number"),
    (lambda r: r[0].update(agent="2"), r"line 2, column agent: '2' is not 0 or 1"),
    (lambda r: r[0].update(agent_name="Someone Else"), r"line 2, column agent_name: .*were rows moved"),
    (lambda r: [x.pop("goal") for x in r], r"line 1: header has missing columns \['goal'\]"),
])
def test_import_errors_name_file_line_and_column(packet_files, tmp_path, edit, message):
    packet, files = packet_files
    with pytest.raises(DataError, match=message):
        read_annotations([bad_csv(files, tmp_path, edit)], packet)


def test_import_duplicates_across_files_and_unrated(packet_files, tmp_path):
    packet, files = packet_files
    fill(files.csv, tmp_path / "a1.csv", "dana", mid)
    fill(files.csv, tmp_path / "a2.csv", "dana", mid, skip=set(range(1, 8)))
    with pytest.raises(DataError, match=r"a2.csv, line 2: duplicate row .*first at .*a1.csv, line 2"):
        read_annotations([tmp_path / "a1.csv", tmp_path / "a2.csv"], packet)
    with pytest.raises(DataError, match=r"a2.csv, line 3, column believability: missing cell"):
        read_annotations([tmp_path / "a2.csv"], packet, require_complete=True)
    with pytest.raises(DataError, match="no rated rows"):
        read_annotations([files.csv], packet)
    with pytest.raises(DataError, match="not found"):
        read_annotations([tmp_path / "absent.csv"], packet)


def test_build_packet_errors(sotopia):
    episodes = make_episodes(sotopia, 2)
    with pytest.raises(DataError, match="no episodes"):
        build_packet([])
    with pytest.raises(DataError, match="n=3 but there are 2 episodes"):
        build_packet(episodes, n=3)
    with pytest.raises(DataError, match=r"duplicate episode ids \['ep-000'\]"):
        build_packet([episodes[0], episodes[0]])
    with pytest.raises(DataError, match=r"episode 0 \(ep-000\): not an episode record: turns"):
        build_packet([{**episodes[0].model_dump(), "turns": "nope"}])
    with pytest.raises(DataError, match=r"episode ep-00[01]: no profile for character.*both backgrounds"):
        build_packet(episodes)
    with pytest.raises(DataError, match=r"no eval_model/eval_position tags"):
        build_packet(episodes, per_model=1, agents=sotopia.agents)
    assert sorted(e.episode_id for e in build_packet(episodes, agents=sotopia.agents).episodes) == ["ep-000", "ep-001"]


def evaluation_episodes(sotopia) -> list[EpisodeRecord]:
    """Evaluation-like episodes: three models, both seats, on SOTOPIA-hard and SOTOPIA (all)."""
    hard = sotopia.task_set("sotopia_hard")[:3]
    out = []
    for model in ("base", "bc", "expert"):
        for seat in ("0", "1"):
            for task_set, combos in (("sotopia_hard", hard), ("sotopia_all", sotopia.combos[:1])):
                for ep in make_episodes(sotopia, combos=combos):
                    out.append(ep.model_copy(update={
                        "episode_id": f"{model}-{seat}-{task_set}-{ep.combo_id}",
                        "tags": {"eval_model": model, "eval_position": seat, "task_set": task_set}}))
    return out


def test_packet_is_drawn_stratified_as_the_released_protocol(sotopia):
    episodes = evaluation_episodes(sotopia)
    packet = build_packet(episodes, per_model=2, task_set="sotopia_hard", seed=3, agents=sotopia.agents)
    by_id = {e.episode_id: e for e in episodes}
    chosen = [by_id[e.episode_id] for e in packet.episodes]
    assert all(e.tags["task_set"] == "sotopia_hard" for e in chosen)
    for model in ("base", "bc", "expert"):
        seats = sorted(e.tags["eval_position"] for e in chosen if e.tags["eval_model"] == model)
        assert seats == ["0", "1"]  # two per model, one in each seat
    again = build_packet(episodes, per_model=2, task_set="sotopia_hard", seed=3, agents=sotopia.agents)
    assert again == packet
    with pytest.raises(DataError, match="no episodes to sample from on sotopia_hard"):
        build_packet(episodes[:0] + [e for e in episodes if e.tags["task_set"] != "sotopia_hard"],
                     per_model=1, task_set="sotopia_hard")


def write_released_format(path: Path, packet, annotator: str) -> None:
    """Ratings of every packet episode in the released CSV format (as SOTOPIA-pi's annotation app saved
    them: one row per episode and annotator, both agents' scores and reasonings)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["", *FIXED_COLUMNS, *SCORE_COLUMNS])
        for i, ep in enumerate(packet.episodes):
            cells = []
            for side in (0, 1):
                for d in DIMENSIONS:
                    cells += [str(mid(i + side, d)), f"{annotator} on {d}"]
            data = json.dumps({"scenario": ep.scenario})
            w.writerow([str(i), "some-model", ep.episode_id, data, annotator, *cells])


def test_released_csv_format_imports_into_the_same_rating_table(packet_files, tmp_path):
    packet, files = packet_files
    write_released_format(tmp_path / "released.csv", packet, "5b9ed139")
    fill(files.csv, tmp_path / "alice.csv", "alice", mid)
    ratings = read_annotations([tmp_path / "released.csv", tmp_path / "alice.csv"], packet)
    assert tuple(ratings.columns) == RATING_COLUMNS and set(ratings["rater"]) == {"5b9ed139", "alice"}
    mine = ratings[ratings["rater"] == "5b9ed139"].set_index(["episode_id", "agent", "dimension"])
    first = packet.episodes[0].episode_id
    assert mine.loc[(first, 1, "goal"), "score"] == mid(1, "goal")
    assert mine.loc[(first, 1, "goal"), "reasoning"] == "5b9ed139 on goal"
    coverage = rater_coverage(ratings, packet)
    assert list(coverage["raters"]) == [2] * len(packet.episodes) and not coverage["short"].any()
    assert rater_coverage(ratings[ratings["rater"] == "alice"], packet)["short"].all()
    bad = tmp_path / "bad.csv"
    bad.write_text((tmp_path / "released.csv").read_text().replace(first, "nope", 1))
    with pytest.raises(DataError, match=r"bad\.csv, line 2, column pk: unknown episode id 'nope'"):
        read_annotations([bad], packet)


# --- the page in a real browser ---

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]



def _browser_missing() -> str:
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install playwright)"
    if not Path(CHROMIUM).is_file():
        return "no system chromium (apt-get install chromium); the CSV round trip is still tested above"
    return ""


needs_browser = pytest.mark.skipif(bool(_browser_missing()), reason=_browser_missing() or "-")


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(accept_downloads=True)
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        yield pg
        assert errors == [], f"the page logged errors: {errors}"
        browser.close()


def score(agent: int, d: str) -> int:
    lo, hi = DIMENSION_RANGES[d]
    return hi - agent - (len(d) % 3) if d != "secret" else lo + agent


def fill_agent(page, agent: int) -> None:
    for d in DIMENSIONS:
        page.fill(f"input[name=a{agent}-{d}]", str(score(agent, d)))
        page.fill(f"textarea[name=a{agent}-{d}-reasoning]", f'{d}, "quoted", agent {agent}')


@needs_browser
def test_annotator_fills_saves_and_the_csv_imports(sotopia, tmp_path, page):
    packet = build_packet(make_episodes(sotopia, 3), seed=0, agents=sotopia.agents)
    files = write_packet(packet, tmp_path)
    page.goto(files.html.resolve().as_uri())
    first, second = packet.episodes[0], packet.episodes[1]
    assert page.inner_text("#episode-heading") == f"Episode {first.episode_id}"
    assert first.scenario in page.inner_text("#scenario")
    assert first.backgrounds[0] in page.inner_text("#backgrounds")
    assert page.locator("#transcript li").count() == len(first.transcript)
    assert "[-10, 0]" in page.inner_text("#scores")  # ranges are shown

    page.fill("#annotator", "erin")
    fill_agent(page, 0)
    fill_agent(page, 1)
    page.fill("input[name=a1-goal]", "42")  # out of range: rejected, not stored
    goal = page.locator("input[name=a1-goal]")
    assert goal.evaluate("e => e.validity.valid") is False and "invalid" in goal.get_attribute("class")
    assert "goal must be a whole number from 0 to 10" in page.inner_text("#message")
    downloads = []
    page.on("download", lambda d: downloads.append(d))
    page.click("#save")
    assert "Not saved" in page.inner_text("#message") and downloads == []
    page.fill("input[name=a1-goal]", str(score(1, "goal")))

    page.click("#next")
    assert page.inner_text("#episode-heading") == f"Episode {second.episode_id}"
    fill_agent(page, 0)
    page.click("#prev")  # values come back when the annotator returns
    assert page.input_value("input[name=a1-goal]") == str(score(1, "goal"))
    assert "1 of 3 episodes complete" in page.inner_text("#progress")

    with page.expect_download() as info:
        page.click("#save")
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    assert saved.name == f"annotations_erin_{packet.packet_id}.csv"

    ratings = read_annotations([saved], packet, require_complete=False)
    assert set(ratings["rater"]) == {"erin"} and len(ratings) == 3 * 7
    by_item = ratings.groupby(["episode_id", "agent"]).size()
    assert set(by_item.index) == {(first.episode_id, 0), (first.episode_id, 1), (second.episode_id, 0)}
    got = ratings.set_index(["episode_id", "agent", "dimension"])["score"]
    why = ratings.set_index(["episode_id", "agent", "dimension"])["reasoning"]
    for agent in (0, 1):
        for d in DIMENSIONS:
            assert got[(first.episode_id, agent, d)] == score(agent, d)
            assert why[(first.episode_id, agent, d)] == f'{d}, "quoted", agent {agent}'

    page.reload()  # work survives a reload (kept in the browser's local storage)
    assert page.input_value("#annotator") == "erin"
    assert page.input_value("input[name=a0-goal]") == str(score(0, "goal"))
