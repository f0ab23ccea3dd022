"""Social task generation (SOTOPIA-pi, section 3.1).

Inspirational prompts are drawn evenly from the three sources and never reused within a run; the
generator sees one existing SOTOPIA scenario as an example and writes a new scenario with one
private goal per agent, under a JSON schema. Invalid tasks and near-duplicates are rejected with a
counted reason, and each accepted task gets character pairs that fit its relationship and ages.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from ..data.profiles import EnvironmentProfile, InspirationalPrompt, RelationshipType
from ..data.sotopia import SotopiaData
from ..errors import DataError
from ..llm.base import LLM
from ..llm.cache import model_hash
from ..llm.types import LLMRequest, Message, SamplingParams
from ..sim.pairing import candidate_pairs
from ..store.keys import content_hash
from .similarity import DuplicateFinder, task_text
from .tasks import GeneratedTask, GenerationReport, RejectedTask

PROMPT_VERSION = "taskgen/v2"
SOURCES = ("social_iqa", "social_chem", "normbank")
SOURCE_NAMES = {
    "social_iqa": "Social IQa (everyday social situations)",
    "social_chem": "Social Chemistry (social norms and judgements)",
    "normbank": "NormBank (behaviour in a setting)",
}

TASK_SCHEMA = {
    "type": "object",
    "properties": {
        "scenario": {"type": "string", "minLength": 40, "maxLength": 600},
        "agent1_goal": {"type": "string", "minLength": 20, "maxLength": 300},
        "agent2_goal": {"type": "string", "minLength": 20, "maxLength": 300},
        "relationship": {"type": "string", "enum": [r.name for r in RelationshipType]},
        "min_age": {"type": "integer", "minimum": 18, "maximum": 80},
        "max_age": {"type": "integer", "minimum": 18, "maximum": 80},
    },
    "required": ["scenario", "agent1_goal", "agent2_goal", "relationship", "min_age", "max_age"],
    "additionalProperties": False,
}

SYSTEM = (
    "You design social role-play tasks for two people. A task is a short scenario both people know, "
    "and one private goal for each person that the other does not know. The goals should pull in "
    "different directions, so the two must negotiate, persuade, cooperate or resolve a conflict."
)


class GenerationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    n_tasks: int = Field(ge=1, description="accepted tasks wanted")
    pairs_per_task: int = Field(2, ge=1)
    oversample: float = Field(2.0, ge=1.0, description="requests per wanted task, per round")
    max_rounds: int = Field(3, ge=1)
    similarity_threshold: float = Field(0.6, gt=0.0, le=1.0)
    sampling: SamplingParams = SamplingParams(temperature=1.0, max_tokens=400)


def sample_inspirations(
    prompts: Sequence[InspirationalPrompt], n: int, used: Iterable[str], seed: int
) -> list[InspirationalPrompt]:
    """`n` unused prompts, taken round-robin over the three sources (rows without a source skipped)."""
    used = set(used)
    rng = random.Random(seed)
    pools = {s: [p for p in prompts if p.source == s and p.pk not in used] for s in SOURCES}
    for pool in pools.values():
        rng.shuffle(pool)
    out: list[InspirationalPrompt] = []
    while len(out) < n and any(pools.values()):
        for s in SOURCES:
            if pools[s] and len(out) < n:
                out.append(pools[s].pop())
    return out


def render_example(env: EnvironmentProfile) -> str:
    """The example scenario as the official generator shows it: the whole profile as JSON, goals with
    their <extra_info>/<strategy_hint> markup (sotopia-pi data_generate/generate_new_envs.py passes
    `env.json()` of a randomly drawn SOTOPIA scenario)."""
    return env.model_dump_json()


def build_request(
    inspiration: InspirationalPrompt, example: EnvironmentProfile, cfg: GenerationConfig, seed: int
) -> LLMRequest:
    user = (
        f"Example task:\n{render_example(example)}\n\n"
        f"Write a NEW task, different from the example, inspired by this "
        f"{SOURCE_NAMES.get(inspiration.source or '', 'social')} prompt: \"{inspiration.prompt}\".\n"
        "Both goals must be concrete and achievable within a short conversation."
    )
    return LLMRequest(
        messages=(Message(role="system", content=SYSTEM), Message(role="user", content=user)),
        json_schema=TASK_SCHEMA,
        sampling=cfg.sampling,
        seed=seed,
    )


def task_id_for(inspiration: InspirationalPrompt, request: LLMRequest, generator: str) -> str:
    """A hash of everything that shapes the task: the prompt version, the generator's identity
    (`generator`: its model hash), the inspiration and the full request (example scenario, prompt
    text, schema, sampling, seed)."""
    key = {"v": PROMPT_VERSION, "generator": generator, "inspiration": inspiration.pk, "request": request}
    return "gen_" + content_hash(key, 20)


def validate_task(parsed: object, task_id: str, inspiration: InspirationalPrompt) -> EnvironmentProfile:
    """Turn a generated object into a scenario, or raise DataError with the reason."""
    if not isinstance(parsed, dict):
        raise DataError("no JSON object")
    scenario, g1, g2 = (str(parsed.get(k, "")).strip() for k in ("scenario", "agent1_goal", "agent2_goal"))
    if min(len(scenario.split()), len(g1.split()), len(g2.split())) < 4:
        raise DataError("scenario or a goal has fewer than 4 words")
    if g1.lower() == g2.lower():
        raise DataError("both agents have the same goal")
    if scenario.lower() in (g1.lower(), g2.lower()):
        raise DataError("a goal repeats the scenario")
    lo, hi = parsed.get("min_age"), parsed.get("max_age")
    if not (isinstance(lo, int) and isinstance(hi, int) and 18 <= lo <= hi):
        raise DataError(f"bad age range {lo}..{hi}")
    return EnvironmentProfile(
        env_id=task_id,
        codename=f"{inspiration.source}_{inspiration.pk[-6:].lower()}",
        source=f"sotopia-pi-generated/{inspiration.source}",
        scenario=scenario,
        agent_goals=(g1, g2),
        relationship=RelationshipType[parsed["relationship"]],
        age_constraint=[(lo, hi), (lo, hi)],
    )


def _pick_pairs(env: EnvironmentProfile, data: SotopiaData, n: int, seed: int) -> list[tuple[str, str]]:
    pool = candidate_pairs(env, data)
    return random.Random(f"{seed}/{env.env_id}").sample(pool, min(n, len(pool)))


def generate_tasks(
    llm: LLM,
    data: SotopiaData,
    cfg: GenerationConfig,
    seed: int,
    used_pks: Iterable[str] = (),
    round_: int = 1,
) -> GenerationReport:
    """Generate up to `cfg.n_tasks` accepted tasks in at most `cfg.max_rounds` batched rounds,
    never drawing an inspiration in `used_pks` (those of earlier training rounds of this run)."""
    used_pks = set(used_pks)
    used = set(used_pks)
    envs = sorted(data.environments.values(), key=lambda e: e.env_id)
    finder = DuplicateFinder([task_text(e.scenario, e.agent_goals) for e in envs])
    rng = random.Random(seed)
    tasks: list[GeneratedTask] = []
    rejected: list[RejectedTask] = []
    n_requests = 0
    generator = model_hash(llm.identity())
    bar = tqdm(total=cfg.n_tasks, desc="tasks accepted", unit="task")
    for attempt in range(cfg.max_rounds):
        missing = cfg.n_tasks - len(tasks)
        if missing <= 0:
            break
        inspirations = sample_inspirations(data.inspirational_prompts, round(missing * cfg.oversample),
                                           used, seed=seed * 1000 + attempt)
        if not inspirations:
            break
        used |= {p.pk for p in inspirations}
        examples = [rng.choice(envs) for _ in inspirations]
        requests = [build_request(p, ex, cfg, seed) for p, ex in zip(inspirations, examples, strict=True)]
        n_requests += len(requests)
        for insp, ex, req, resp in zip(inspirations, examples, requests, llm.generate(requests), strict=True):
            if len(tasks) >= cfg.n_tasks:
                break
            task_id = task_id_for(insp, req, generator)
            if not resp.ok:
                rejected.append(RejectedTask(inspiration_pk=insp.pk, reason="request_failed", detail=resp.error))
                continue
            try:
                env = validate_task(resp.parsed, task_id, insp)
            except (DataError, ValueError, KeyError) as e:
                rejected.append(RejectedTask(inspiration_pk=insp.pk, reason="invalid", detail=str(e)[:200],
                                             text=resp.text[:500]))
                continue
            text = task_text(env.scenario, env.agent_goals)
            ref, acc = finder.similarities(text)
            if max(ref, acc) >= cfg.similarity_threshold:
                reason = "duplicate_of_sotopia" if ref >= acc else "duplicate_of_generated"
                rejected.append(RejectedTask(inspiration_pk=insp.pk, reason=reason,
                                             detail=f"similarity {max(ref, acc):.2f}", text=text[:500]))
                continue
            pairs = _pick_pairs(env, data, cfg.pairs_per_task, seed)
            if not pairs:
                rejected.append(RejectedTask(inspiration_pk=insp.pk, reason="no_character_pairs",
                                             detail=f"{env.relationship.name}, ages {env.age_constraint}"))
                continue
            finder.accept(text)
            tasks.append(GeneratedTask(env=env, inspiration=insp, example_env_id=ex.env_id,
                                       generator=llm.spec.label, prompt_version=PROMPT_VERSION,
                                       agent_pairs=pairs, max_similarity=round(max(ref, acc), 4),
                                       round=round_))
            bar.update(1)
    bar.close()
    report = GenerationReport(tasks=tasks, rejected=rejected, requests=n_requests,
                              used_pks=sorted(used - set(used_pks)))
    print(f"task generation: {n_requests} requests -> " +
          ", ".join(f"{k} {v}" for k, v in report.reason_counts().items()))
    return report
