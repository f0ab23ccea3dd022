"""The published reference numbers load typed, agree with themselves, and bad files fail clearly."""

from __future__ import annotations

import json

import pytest

from sotopia_pi_lib.analysis.agreement import DIMENSION_RANGES
from sotopia_pi_lib.analysis.reference import (
    PAPER_TO_STUDY,
    SOTOPIA_PI_REFERENCE,
    load_leaderboard,
    load_reference,
    reference_goal_gap,
)
from sotopia_pi_lib.errors import DataError
from sotopia_pi_lib.paths import shared_data_dir

needs_shared = pytest.mark.skipif(not (shared_data_dir() / SOTOPIA_PI_REFERENCE).is_file(),
                                  reason="../shared/data/reference/ is not beside this checkout")


@needs_shared
def test_reference_gap_table_is_consistent():
    gap = reference_goal_gap(load_reference()).set_index("model")
    assert gap.loc["mistral-7b", "gap"] == 0.36 and gap.loc["bc+sr", "gap"] == 1.42  # the paper's headline
    assert (gap["judge_goal"] - gap["gap"] - gap["human_goal"]).abs().max() < 1e-9
    assert set(gap["role"]) == set(PAPER_TO_STUDY.values())
    assert set(gap["source"]) == {"published (SOTOPIA-pi paper)"}


@needs_shared
def test_leaderboard_is_tidy_with_our_dimension_names():
    lb = load_leaderboard()
    assert set(lb["dimension"]) == set(DIMENSION_RANGES) and len(lb) == 4 * 7
    wide = lb.pivot(index="model", columns="dimension", values="score")
    assert wide.loc["GPT-4", "goal"] == 7.62 and wide.loc["MPT", "believability"] == 6.17
    # the same goal numbers appear in the SOTOPIA-pi reference file
    ref = load_reference().sotopia_all_vs_gpt35_partner.goal
    assert ref["gpt-4"] == wide.loc["GPT-4", "goal"] and ref["mpt"] == wide.loc["MPT", "goal"]


def test_leaderboard_errors_name_file_and_line(tmp_path):
    good = {"model_name": "X", "SOC [-10, 0]": 0, "SEC [-10, 0]": 0, "FIN [-5, 5]": 0, "REL [-5, 5]": 0,
            "KNO [0, 10]": 1, "GOAL [0, 10]": 2, "BEL [0, 10]": 3}
    cases = {
        "not JSON": "{oops",
        "unknown column 'CHARM": json.dumps({**good, "CHARM [0, 10]": 1}),
        "has a range other than": json.dumps({k.replace("GOAL [0, 10]", "GOAL [1, 10]"): v for k, v in good.items()}),
        r"missing dimensions \['goal'\]": json.dumps({k: v for k, v in good.items() if not k.startswith("GOAL")}),
        "is not a number": json.dumps({**good, "BEL [0, 10]": "high"}),
    }
    for message, bad_line in cases.items():
        path = tmp_path / "lb.jsonl"
        path.write_text(json.dumps(good) + "\n" + bad_line + "\n")
        with pytest.raises(DataError, match=f"lb.jsonl, line 2: .*{message}"):
            load_leaderboard(path)


def test_reference_file_is_validated(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_reference(tmp_path / "absent.json")
    src = shared_data_dir() / SOTOPIA_PI_REFERENCE
    if not src.is_file():
        pytest.skip("../shared/data/reference/ is not beside this checkout")
    data = json.loads(src.read_text())
    data["sotopia_eval_dimensions"]["dimensions"]["goal"] = [0, 5]
    (tmp_path / "ref.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="differ from the ranges the judge uses"):
        load_reference(tmp_path / "ref.json")
    del data["hard_goal_vs_gpt35_partner"]
    (tmp_path / "ref.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="hard_goal_vs_gpt35_partner: Field required"):
        load_reference(tmp_path / "ref.json")
