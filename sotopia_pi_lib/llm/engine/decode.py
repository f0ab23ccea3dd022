"""The hf backend's decode loop: continuous batching over model.forward with an in-place KV buffer.

Why not model.generate: on a 2-core CPU the time goes to (1) padding (sequences that finished still
decode until the longest one ends, and prompts are padded to the longest), (2) re-reading prompts the
model has already seen (the simulation's agents extend their prompt every turn), (3) the cache's
per-step torch.cat, and (4) per-token grammar work. Here prompts are prefilled in groups of similar
length (prefill.py), each on top of its longest kept prefix (kvcache.py); decoding runs all live rows
together in one preallocated buffer (batch_kv.py); a finished row leaves at once and its slot is
refilled from the queue; grammar masks are filled per row in microseconds and applied in one call,
and text the grammar forces costs no sampling (grammar.py) and no step of its own: it is appended at
once and fed with the row's next forward (a judge's JSON is half forced keys and punctuation).
Multi-token calls run attention.py's packed grouped-query attention on the CPU, and there the linear
layers' weights are packed once for oneDNN (cpu_linear.py), which matters most for decode steps.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import xgrammar as xg

from ..grammar import BatchMasker, GrammarBook, unpack
from ..jobs import DecodeStats, Job, OnDone, Outcome, truncation_error
from ..sampling import choose_tokens
from .batch_kv import BatchKV
from .kvcache import ANONYMOUS, KV, SessionStore, session_key
from .prefill import PrefillItem, kv_dtype_device, plan_groups, prefill_group, split_shared
from .settings import EngineSettings

ADMIT_FRACTION = 4
# Tokens one decode step may feed in all, shared among its rows (see Engine._step). On a CPU a step
# reads every weight and every row's cached K/V whatever it feeds, so a few more tokens per row cost
# little next to a step of their own while the batch is small; in a full batch each extra token per
# row costs a larger share, hence a budget for the whole step rather than per row.
# bench/sim_throughput.py reports the decode steps, the forced tokens fed without a step of their own
# and the tokens/s this gives.
STEP_TOKENS = 32

Done = tuple[list[int], str, str | None]  # (reply tokens, finish reason, error)


@dataclass
class Live:
    """A job being decoded: its row of the running batch."""

    index: int
    job: Job
    key: str  # its entry in the prefix store
    reused: int
    generated: list[int]
    matcher: xg.GrammarMatcher | None  # the job's grammar state (None without a schema)
    unfed: int = 0  # tokens at the end of `generated` whose KV is not in the batch yet

    @property
    def landing(self) -> bool:
        return self.matcher is not None and self.job.max_tokens - len(self.generated) <= self.job.reserve


class Engine:
    """The decode loop over one loaded model; a `Runner` (jobs.py) of the hf backend."""

    def __init__(self, net: Any, book: Callable[[], GrammarBook], settings: EngineSettings) -> None:
        self.jump_forward = settings.jump_forward
        self.net, self._book, self.stop_ids, self.pad_id = net, book, set(settings.stop_ids), settings.pad_id
        self.sessions = SessionStore(settings.kv_cache_bytes)
        self.max_batch_size, self.max_batch_tokens = settings.max_batch_size, settings.max_batch_tokens
        cfg = net.config
        self.layers, self.kv_heads = cfg.num_hidden_layers, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.stats = DecodeStats()
        self._masker: BatchMasker | None = None
        self._anonymous = 0  # numbers the store keys of requests without a session

    def close(self) -> None:
        self.sessions.clear()

    def masker(self, rows: int) -> BatchMasker:
        if self._masker is None:
            self._masker = BatchMasker(self._book(), rows)
        return self._masker

    @torch.inference_mode()
    def run(self, jobs: list[Job], on_done: OnDone | None = None) -> list[Outcome]:
        """Decode every job; `on_done(index, outcome)` hears of each as it finishes and may return
        follow-up jobs (numbered on from the last), which join the running batch at once."""
        t0 = time.perf_counter()
        adapters = {job.adapter for job in jobs}
        if len(adapters) > 1:  # the caller sets the model's active adapter for the whole run
            raise ValueError(f"one run decodes for one adapter, got {sorted(map(str, adapters))}")
        results: list[Outcome | None] = [None] * len(jobs)
        pending = deque(enumerate(jobs))
        dtype, device = kv_dtype_device(self.net)
        capacity = min(self.max_batch_size, len(jobs))
        batch = BatchKV(self.layers, self.kv_heads, self.head_dim, dtype, device, capacity)
        live: list[Live] = []
        starts: dict[int, float] = {}  # when each follow-up job was queued (latency counts from there)

        def finish(row: Live, tokens: list[int], reason: str, error: str | None, kv: KV) -> None:
            self.sessions.put(row.key, (row.job.prompt + row.generated)[: kv.shape[3]], kv, row.job.adapter or "")
            started = starts.pop(row.index, t0)
            outcome = Outcome(tokens, reason, len(row.generated), row.reused, time.perf_counter() - started, error)
            results[row.index] = outcome
            self.stats.requests += 1
            self.stats.decode_tokens += len(row.generated)
            for job in (on_done(row.index, outcome) if on_done is not None else None) or ():
                starts[len(results)] = time.perf_counter()
                pending.append((len(results), job))
                results.append(None)

        while pending or live:
            admitted = self._admit(pending, batch, live)
            for row, kv, done in self._prefill(admitted):
                if done is not None:
                    finish(row, *done, kv=kv)
                else:
                    batch.add(kv)
                    live.append(row)
            if live:
                self._step(batch, live, finish)
        self.stats.wall_s += time.perf_counter() - t0
        return [r for r in results if r is not None]

    def _admit(
        self, pending: deque[tuple[int, Job]], batch: BatchKV, live: list[Live]
    ) -> list[tuple[int, Job]]:
        """Jobs to start now: while the batch has a free row and the worst case (every row running to
        max_tokens) fits max_batch_tokens. An empty batch always takes one job. A running batch takes
        new jobs once a quarter of its rows are free (or the queue's rest fits): every forward costs a
        read of all weights, so prefilling one prompt per freed row would pay that over and over."""
        taken: list[tuple[int, Job]] = []
        rows = len(live)
        if rows and self.max_batch_size - rows < min(len(pending), self.max_batch_size // ADMIT_FRACTION):
            return taken  # wait for a few free rows: one prefill forward for several prompts
        width = batch.end - batch.start if live else 0
        left = max((r.job.max_tokens - len(r.generated) for r in live), default=0)
        while pending:
            job = pending[0][1]
            w, n = max(width, len(job.prompt) + 1), max(left, job.max_tokens)
            if rows and (rows >= self.max_batch_size or (rows + 1) * (w + n) > self.max_batch_tokens):
                break
            taken.append(pending.popleft())
            rows, width, left = rows + 1, w, n
        return taken

    def _prefill(self, admitted: list[tuple[int, Job]]) -> list[tuple[Live, KV, Done | None]]:
        """Prefill the admitted prompts (each after its longest kept prefix) plus their replies' forced
        openings, in groups; a prompt sharing not-yet-kept blocks with another waits one round so it
        can reuse them. Each row's first token is chosen here; a row may be done already."""
        t0 = time.perf_counter()
        waiting = []
        for i, job in admitted:
            matcher = self._book().matcher(job.schema) if job.schema is not None else None
            waiting.append((i, job, matcher, job.prompt + self._opening(job, matcher)))
        out: list[tuple[Live, KV, Done | None]] = []
        while waiting:
            items = [
                PrefillItem(tokens, *self.sessions.lookup(job.session, tokens, job.adapter or ""))
                for _, job, _, tokens in waiting
            ]
            ready, later = split_shared(
                [(it.tokens, it.reused) for it in items], enabled=self.sessions.max_bytes > 0
            )
            sizes = [(len(items[k].tokens) - items[k].reused, items[k].reused) for k in ready]
            for group in plan_groups(sizes, self.max_batch_tokens):
                chosen = [ready[g] for g in group]
                logits, kvs = prefill_group(self.net, [items[k] for k in chosen], self.pad_id)
                self.stats.prefill_forwards += 1
                rows = [
                    self._new_row(*waiting[k][:3], items[k], kv) for k, kv in zip(chosen, kvs, strict=True)
                ]
                out.extend(zip(rows, kvs, self._first_tokens(rows, logits), strict=True))
            waiting = [waiting[k] for k in later]
        self.stats.prefill_s += time.perf_counter() - t0
        return out

    def _opening(self, job: Job, matcher: xg.GrammarMatcher | None) -> list[int]:
        if matcher is None:
            return []
        return self._book().forced_prefix(matcher, job.max_tokens - 1)

    def _first_tokens(self, rows: list[Live], logits: torch.Tensor) -> list[Done | None]:
        """A reply the grammar forced entirely is done at once; the others get their first token."""
        forced_out = {
            i for i, r in enumerate(rows) if r.matcher is not None and self._complete(r.matcher)
        }
        todo = [i for i in range(len(rows)) if i not in forced_out]
        if todo:
            self._choose([rows[i] for i in todo], logits[todo])
        return [
            (r.generated, "stop", None) if i in forced_out else self._check_and_jump(r)
            for i, r in enumerate(rows)
        ]

    def _new_row(
        self, index: int, job: Job, matcher: xg.GrammarMatcher | None, item: PrefillItem, kv: KV
    ) -> Live:
        self._anonymous += 1
        key = session_key(job.session, job.adapter or "") or f"{ANONYMOUS}{self._anonymous}"
        # kept at once: later prompts, in this batch too, may share its prefix
        self.sessions.put(key, item.tokens, kv, job.adapter or "")
        self.stats.prefill_tokens_computed += len(item.tokens) - item.reused
        self.stats.prefill_tokens_reused += item.reused
        self.stats.prefix_hits += int(item.reused > 0)
        return Live(index, job, key, item.reused, item.tokens[len(job.prompt) :], matcher)

    def _step(self, batch: BatchKV, live: list[Live], finish: Callable[..., None]) -> None:
        """One forward over every live row. A row feeds its unfed tokens (its last choice plus any
        forced text), at most `cap` of them: a wide step costs every row its width, so the cap shrinks
        as the batch grows; a row with more left catches up over the next steps before choosing."""
        t0 = time.perf_counter()
        cap = max(1, STEP_TOKENS // len(live))
        counts = [min(r.unfed, cap) for r in live]
        feeds = [r.generated[len(r.generated) - r.unfed :][:k] for r, k in zip(live, counts, strict=True)]
        logits = forward_step(self.net, batch, feeds, self.pad_id)
        for r, k in zip(live, counts, strict=True):
            r.unfed -= k
        self.stats.forward_s += time.perf_counter() - t0
        self.stats.steps += 1
        self.stats.step_rows += len(live)
        ready = [i for i, r in enumerate(live) if r.unfed == 0]
        if not ready:
            return
        self._choose([live[i] for i in ready], logits[ready].float())
        done = [(i, d) for i in ready if (d := self._check_and_jump(live[i])) is not None]
        for i, d in reversed(done):
            finish(live[i], *d, kv=batch.row_kv(i))
            moved = batch.remove(i)
            if moved is not None:
                live[i] = live[moved]
            live.pop()

    def _choose(self, rows: list[Live], logits: torch.Tensor) -> None:
        """Each row's next token: forced text in canonical tokens, else sampled under its grammar mask."""
        t0 = time.perf_counter()
        forced: dict[int, int] = {}
        for i, row in enumerate(rows):
            if (
                row.matcher is not None
                and (token := self._book().forced_token(row.matcher)) is not None
            ):
                forced[i] = token
        free = [i for i in range(len(rows)) if i not in forced]
        if forced:
            logits = logits[free]
        constrained = [
            (j, rows[i].matcher, rows[i].landing) for j, i in enumerate(free) if rows[i].matcher
        ]
        if constrained:
            self.masker(self.max_batch_size).apply(logits, constrained)
        t1 = time.perf_counter()
        chosen = (
            dict(zip(free, choose_tokens(logits, [rows[i].job.sampling for i in free]), strict=True))
            if free
            else {}
        )
        for i, row in enumerate(rows):
            row.generated.append(forced[i] if i in forced else chosen[i])
            row.unfed += 1
        self.stats.grammar_s += t1 - t0
        self.stats.sample_s += time.perf_counter() - t1

    def _check_and_jump(self, row: Live) -> Done | None:
        """_check the chosen token; if the row goes on, append the text its grammar now forces (fed
        with the next step), then check again (forced text may complete the JSON or the budget)."""
        done = self._check(row)
        if done is not None or row.matcher is None or not self.jump_forward:
            return done
        t0 = time.perf_counter()
        extra = self._book().forced_prefix(row.matcher, row.job.max_tokens - len(row.generated))
        self.stats.grammar_s += time.perf_counter() - t0
        if not extra:
            return None
        row.generated.extend(extra)
        row.unfed += len(extra)
        self.stats.jumped_tokens += len(extra)
        if self._complete(row.matcher):
            return row.generated, "stop", None
        return self._budget(row)

    def _check(self, row: Live) -> Done | None:
        """(tokens, finish reason, error) once the row is done, else None."""
        token, matcher = row.generated[-1], row.matcher
        if matcher is not None and not self._accept(matcher, token):
            return row.generated[:-1], "stop", f"the grammar rejected token {token} (an xgrammar bug)"
        if token in self.stop_ids:
            return row.generated[:-1], "stop", None
        if matcher is not None and self._complete(matcher):
            return row.generated, "stop", None
        return self._budget(row)

    def _budget(self, row: Live) -> Done | None:
        """None while the row has tokens left; else its outcome (a truncated JSON is an error)."""
        if len(row.generated) < row.job.max_tokens:
            return None
        if row.matcher is None:
            return row.generated, "length", None
        self.stats.truncated_json += 1
        return row.generated, "length", truncation_error(row.job.max_tokens, row.job.reserve)

    def _accept(self, matcher: xg.GrammarMatcher, token: int) -> bool:
        t0 = time.perf_counter()
        accepted = matcher.accept_token(token)
        self.stats.grammar_s += time.perf_counter() - t0
        return accepted

    def _complete(self, matcher: xg.GrammarMatcher) -> bool:
        """True when the JSON is complete and nothing may follow it (a number could still grow), so the
        row stops without spending a step on the end-of-sequence token."""
        if not matcher.is_completed():
            return False
        masker = self.masker(self.max_batch_size)
        matcher.fill_next_token_bitmask(masker.scratch, 0)
        allowed = unpack(masker.scratch[0], masker.book.vocab_size)
        allowed[list(self.stop_ids)] = False
        return not bool(allowed.any())


def forward_step(net: Any, batch: BatchKV, feeds: list[list[int]], pad_id: int) -> torch.Tensor:
    """One forward of the running batch: row r feeds the tokens feeds[r] (at least one) after its
    cached ones; returns each row's logits after its last fed token ([rows, vocab], the model's dtype)."""
    counts = [len(f) for f in feeds]
    batch.step_inputs(counts)
    width = batch.width
    ids = [[pad_id] * (width - len(f)) + f for f in feeds]
    uneven = counts if any(k != width for k in counts) else None
    out = net(
        input_ids=torch.tensor(ids, device=net.device),
        position_ids=batch.positions(uneven),
        attention_mask=batch.step_mask(uneven),
        cache=batch.as_cache(),
        use_cache=True,
        logits_to_keep=1,  # a row chooses after its last fed token only; the vocabulary head is 1/5 of the weights
    )
    batch.advance(uneven)
    return out.logits[:, -1]
