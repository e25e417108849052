"""Counter-based random numbers for sampling: a completion's draws depend on its own identity, not its batch.

A ``torch.Generator`` hands out numbers in call order, so the token a row draws at step t depends on how
many rows were still decoding before it, which prompts shared its batch and which process it ran on. For
GRPO that means the same global batch sampled by one process or by two gives different completions.
:class:`RowStreams` instead derives each uniform from ``(seed, global row, step)`` with a 64-bit hash
(SplitMix64's finaliser, Steele, Lea & Flood, OOPSLA 2014), so a completion is sampled the same way
whatever the batch layout: the native backend on 1 or N processes draws the same tokens.

Used by :func:`grpo.generation.sampler.generate` (``generator=RowStreams(...)``); tested in tests/test_sampler.py.
"""

from __future__ import annotations

import torch

__all__ = ["RowStreams"]

_MASK64 = (1 << 64) - 1


def _signed(x: int) -> int:
    """An unsigned 64-bit constant as the int64 with the same bits."""
    x &= _MASK64
    return x - (1 << 64) if x >= 1 << 63 else x


_GOLDEN, _MUL1, _MUL2 = _signed(0x9E3779B97F4A7C15), _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 bits (torch's ``>>`` is arithmetic: it copies the sign bit)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's output function on int64 tensors (multiplication wraps modulo 2**64)."""
    x = x + _GOLDEN
    x = (x ^ _shift_right(x, 30)) * _MUL1
    x = (x ^ _shift_right(x, 27)) * _MUL2
    return x ^ _shift_right(x, 31)


class RowStreams:
    """One independent stream of uniforms per completion row, addressed by ``(row, step)``.

    Args:
        seed: the stream family (e.g. the run's seed and the generation batch number).
        first_row: the global index of this call's row 0 (e.g. ``rank * rows_per_process``), so that a row
            keeps its numbers whichever process or batch position samples it.
        device: where the uniforms are made (the logits' device).

    Example:
        >>> a = RowStreams(7, first_row=0, device="cpu").at(torch.tensor([2, 3]), step=5).rand(2)
        >>> b = RowStreams(7, first_row=2, device="cpu").at(torch.tensor([0, 1]), step=5).rand(2)
        >>> bool(torch.equal(a, b))
        True
    """

    def __init__(self, seed: int, first_row: int, device) -> None:
        self.seed, self.first_row, self.device = seed, first_row, torch.device(device)
        self._key = _mix(torch.tensor([_signed(seed)], dtype=torch.int64, device=self.device))  # (1,)

    def at(self, rows: torch.Tensor, step: int) -> _Bound:
        """The uniforms of ``rows`` (B,) local row indices at decode ``step``, as a ``rand``-able object."""
        return _Bound(self, rows, step)

    def uniform(self, rows: torch.Tensor, step: int) -> torch.Tensor:
        """(B, 1) float32 in [0, 1) for local ``rows`` (B,) at ``step``: 24 random bits each, exact in float32."""
        row = rows.to(device=self.device, dtype=torch.int64) + self.first_row  # (B,)
        h = _mix(_mix(self._key + row) + step)  # (B,)
        return (_shift_right(h, 40).to(torch.float32) * (1.0 / (1 << 24)))[:, None]  # (B, 1)


class _Bound:
    """:class:`RowStreams` at one ``(rows, step)``: what the sampler's draw asks for instead of a ``torch.Generator``."""

    def __init__(self, streams: RowStreams, rows: torch.Tensor, step: int) -> None:
        self.streams, self.rows, self.step = streams, rows, step

    def rand(self, n: int) -> torch.Tensor:
        """(n, 1) uniforms, one per live row (``n`` must equal the number of rows)."""
        if n != self.rows.numel():
            raise ValueError(f"asked for {n} uniforms for {self.rows.numel()} rows")
        return self.streams.uniform(self.rows, self.step)
