"""The running batch's KV buffer for the hf decode loop, usable as a transformers Cache.

Rows of different lengths share one preallocated buffer [layers, k/v, rows, heads, columns, dim],
right-aligned so every row writes its next token into the same column; a row's unused left columns
are masked out and positions are passed explicitly, so left padding changes nothing but float
rounding. Writing in place avoids the torch.cat of the whole cache per layer and step that
transformers' DynamicCache does (700 MB per step for 32 rows of 500 tokens).

A step may feed several tokens per row (text a JSON grammar forces, fed at once instead of one
token per forward): rows with fewer new tokens are left-padded within the step, and those padding
columns stay masked out for good (a per-row `valid` map; `row_kv` drops them).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer

from . import kvcache
from .kvcache import KV


class BatchKV:
    """The running batch's KV buffer. Columns [start, end) are in use; row r's data begins at
    row_start[r]; the next token of every row goes to column `end`. Rows are removed by moving the last
    row into the hole (one row copied), so the batch never computes for finished sequences."""

    def __init__(
        self, layers: int, heads: int, head_dim: int, dtype: torch.dtype, device: torch.device, capacity: int
    ) -> None:
        self.buf = torch.empty(layers, 2, capacity, heads, 0, head_dim, dtype=dtype, device=device)
        self.valid = torch.zeros(capacity, 0, dtype=torch.bool, device=device)
        self.start = self.end = 0
        self.width = 1  # tokens per row of the step being written (set by step_inputs)
        self.row_start: list[int] = []
        self.reallocations = 0

    @property
    def rows(self) -> int:
        return len(self.row_start)

    @property
    def columns(self) -> int:
        return self.buf.shape[4]

    @property
    def nbytes(self) -> int:
        return self.buf.numel() * self.buf.element_size()

    def _realloc(self, left: int, right: int, capacity: int) -> None:
        """A new buffer with the data at columns [left, left + width) and `right` free columns after it."""
        layers, two, _, heads, _, head_dim = self.buf.shape
        width = self.end - self.start
        # Kept finite: every live row's columns [0, end). A masked column still enters softmax(QK) @ V
        # with weight 0, and 0 * NaN from uninitialised memory would be NaN. Only what a row can read
        # is zeroed, not the whole new buffer (500 MB for 16 rows of 1,400 tokens), which saves a pass
        # over that memory per reallocation: the columns right of `end` are written by each step before
        # anything reads them, and `add` zeroes a new row's left part.
        shape = (layers, two, capacity, heads, left + width + right, head_dim)
        new = kvcache.uninitialised(shape, self.buf.dtype, self.buf.device)
        n = self.rows
        new[:, :, :n, :, :left] = 0
        new[:, :, :n, :, left : left + width] = self.buf[:, :, :n, :, self.start : self.end]
        valid = self.valid.new_zeros(capacity, left + width + right)
        valid[:n, left : left + width] = self.valid[:n, self.start : self.end]
        self.row_start = [r + left - self.start for r in self.row_start]
        self.buf, self.valid, self.start, self.end = new, valid, left, left + width
        self.reallocations += 1

    def _growth(self, room: int) -> int:
        return max(room, 64, (self.end - self.start) // 2)

    def add(self, kv: KV, room: int = 1) -> int:
        """Append a row holding one sequence's KV ([layers, 2, heads, n, dim]) and return its index;
        `room` free columns are kept after `end` for the next tokens."""
        n = kv.shape[3]
        if self.rows == 0:
            self.start = self.end = min(n, self.columns)
        capacity = max(self.buf.shape[2], self.rows + 1)
        if self.end < n or self.columns - self.end < room or capacity > self.buf.shape[2]:
            self._realloc(max(0, n - (self.end - self.start)), self._growth(room), capacity)
        row = self.rows
        self.buf[:, :, row, :, : self.end - n] = 0
        self.buf[:, :, row, :, self.end - n : self.end] = kv
        self.valid[row] = False
        self.valid[row, self.end - n : self.end] = True
        self.row_start.append(self.end - n)
        self.start = min(self.start, self.end - n)
        return row

    def reserve(self, room: int) -> None:
        """Make sure `room` columns are free after `end`."""
        if self.columns - self.end < room:
            self._realloc(0, self._growth(room), self.buf.shape[2])

    def advance(self, counts: list[int] | None = None) -> None:
        """The step's tokens are written: each row's last `counts[r]` of the `width` new columns are
        real (default: all), the ones before are padding and stay masked."""
        w = self.width
        new = self.valid[: self.rows, self.end : self.end + w]
        new[:] = True
        for r, k in enumerate(counts or []):
            new[r, : w - k] = False
        self.end += w
        self.width = 1

    def remove(self, row: int) -> int | None:
        """Drop a row; the last row moves into its place. Returns the old index of the row that moved."""
        last = self.rows - 1
        moved = None
        if row != last:
            self.buf[:, :, row, :, self.start : self.end] = self.buf[:, :, last, :, self.start : self.end]
            self.valid[row] = self.valid[last]
            self.row_start[row] = self.row_start[last]
            moved = last
        self.row_start.pop()
        self.start = min(self.row_start, default=self.end)
        return moved

    def row_kv(self, row: int) -> KV:
        span = slice(self.row_start[row], self.end)
        keep = self.valid[row, span]
        if bool(keep.all()):
            return self.buf[:, :, row, :, span].clone()
        return self.buf[:, :, row, :, span][..., keep, :]  # boolean indexing copies

    def step_mask(self, counts: list[int] | None = None) -> torch.Tensor:
        """[rows, 1, width, end + width - start] bool: what each new token attends to: the row's valid
        columns and its new tokens up to itself. A padding query (row r has only counts[r] real new
        tokens) attends to itself only, so no softmax row is empty; nothing attends to it."""
        w, rows, device = self.width, self.rows, self.buf.device
        past = self.valid[:rows, self.start : self.end].unsqueeze(1).repeat(1, w, 1)
        new = torch.ones(w, w, dtype=torch.bool, device=device).tril().repeat(rows, 1, 1)
        eye = torch.eye(w, dtype=torch.bool, device=device)
        for r, k in enumerate(counts or []):
            if k < w:
                pad = w - k
                past[r, :pad] = False
                new[r, :, :pad] = False
                new[r, :pad] = eye[:pad]
        return torch.cat([past, new], dim=2)[:, None]

    def step_inputs(self, counts: list[int]) -> None:
        """Start a step feeding `max(counts)` tokens per row; make room for them."""
        self.width = max(counts, default=1)
        self.reserve(self.width)

    def positions(self, counts: list[int] | None = None) -> torch.Tensor:
        """[rows, width]: the positions of each row's new tokens (after its cached tokens); padding
        slots repeat the first real one (they are masked out)."""
        w = self.width
        cached = self.valid[: self.rows, self.start : self.end].sum(dim=1)
        pos = cached.unsqueeze(1) + torch.arange(w, device=self.buf.device).unsqueeze(0)
        for r, k in enumerate(counts or []):
            if k < w:
                pos[r] -= w - k
                pos[r, : w - k] = cached[r]
        return pos

    def write(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        w = keys.shape[-2]
        rows, span = self.rows, slice(self.start, self.end + w)
        self.buf[layer, 0, :rows, :, self.end : self.end + w] = keys
        self.buf[layer, 1, :rows, :, self.end : self.end + w] = values
        return self.buf[layer, 0, :rows, :, span], self.buf[layer, 1, :rows, :, span]

    def as_cache(self) -> Cache:
        return _BatchCache(self)


class _BatchLayer(DynamicLayer):
    """A transformers cache layer that writes into BatchKV instead of concatenating."""

    def __init__(self, batch: BatchKV, index: int) -> None:
        super().__init__()
        self.batch, self.index = batch, index
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        return None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):  # type: ignore[override]
        if key_states.shape[-2] != self.batch.width:
            raise ValueError(f"expected {self.batch.width} new tokens per row, got {key_states.shape[-2]}")
        return self.batch.write(self.index, key_states, value_states)

    def get_seq_length(self) -> int:
        return self.batch.end - self.batch.start

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0


class _BatchCache(Cache):
    def __init__(self, batch: BatchKV) -> None:
        super().__init__(layers=[_BatchLayer(batch, i) for i in range(batch.buf.shape[0])])
