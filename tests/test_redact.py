"""Secrets are masked in every form before anything is written: env values, key shapes, URL passwords."""

from __future__ import annotations

from sotopia_pi_lib.pi.tasks import RejectedTask
from sotopia_pi_lib.redact import register_secret_env, scrub, scrub_text
from sotopia_pi_lib.sim.episode_store import EpisodeFailure, EpisodeStore


def test_every_form_of_secret_is_masked(monkeypatch):
    monkeypatch.setenv("ODD_NAME_FOR_A_KEY", "zyx-987-wvu-654")
    register_secret_env("ODD_NAME_FOR_A_KEY")  # what the openai backend does with options.api_key_env
    monkeypatch.setenv("HF_TOKEN", "hf_" + "a" * 30)
    text = ("GET https://alice:s3cr3t-pw@host.example:8443/v1/chat?api_key=abc123&x=1 failed; "
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload; key zyx-987-wvu-654; "
            "token hf_" + "a" * 30 + "; sk-proj-" + "Q" * 24)
    clean = scrub_text(text)
    for secret in ("s3cr3t-pw", "alice", "abc123", "eyJhbGciOiJIUzI1NiJ9", "zyx-987-wvu-654", "a" * 30, "Q" * 24):
        assert secret not in clean
    assert "https://***@host.example:8443/v1/chat?api_key=***&x=1" in clean  # where it went stays readable


def test_mappings_keep_ordinary_fields_and_names_of_env_vars():
    params = {"api_key": "plain", "api_key_env": "OPENAI_API_KEY", "max_tokens": 80, "hf_token": "t" * 12,
              "nested": [{"password": "pw"}, "https://u:p@x.org/"]}
    assert scrub(params) == {"api_key": "<redacted>", "api_key_env": "OPENAI_API_KEY", "max_tokens": 80,
                             "hf_token": "<redacted>", "nested": [{"password": "<redacted>"}, "https://***@x.org/"]}


def test_failure_records_are_scrubbed_before_they_are_stored(tmp_path, monkeypatch):
    monkeypatch.setenv("SOME_API_KEY", "sk-live-0123456789abcdefXYZ")
    store = EpisodeStore(tmp_path / "e.episodes.jsonl")
    store.append_failure(EpisodeFailure(
        episode_id="ep", env_id="env", agent_ids=("a", "b"), models=("m", "m"), turn=0,
        error="HTTP 401: Incorrect API key provided: sk-live-0123456789abcdefXYZ at https://u:pw@h/v1"))
    written = store.failures_path.read_text()
    assert "0123456789abcdef" not in written and ":pw@" not in written and "HTTP 401" in written
    rejected = RejectedTask(inspiration_pk="p", reason="request_failed", detail="url https://u:pw@h?token=q1w2e3")
    assert "pw" not in rejected.detail and "q1w2e3" not in rejected.detail
