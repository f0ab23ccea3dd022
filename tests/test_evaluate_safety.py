from sotopia_pi_lib.evaluate.safety import SAFETY_SCENARIOS, safety_combos, safety_env_ids


def test_safety_set_resolves_to_seven_scenarios_with_five_pairs_each(sotopia):
    ids = safety_env_ids(sotopia)
    assert len(ids) == len(SAFETY_SCENARIOS) == 7
    assert "revenge_plot" in {s.codename for s in ids.values()}
    combos = safety_combos(sotopia)
    assert len(combos) == 35 and {c.env_id for c in combos} == set(ids)
    revenge = next(e for e in sotopia.environments.values() if e.codename == "revenge_plot")
    assert "Injure" in revenge.agent_goals[0]
