"""Synthetic tasks: state tracking on permutation groups and multi-query associative recall.

State tracking (Merrill et al., "The Illusion of State in State-Space Models"): the input is a
sequence of group elements ``g_1 .. g_T`` and the target at position ``t`` is the running product
``g_1 g_2 ... g_t`` (apply ``g_1`` first). S3 (6 elements) is the smallest non-abelian group; S5
(120) and A5 (60) are not solvable, so no constant-depth circuit tracks them. Chance accuracy is
one over the group order.

MQAR (Zoology, Arora et al.): key-value pairs, then queries of earlier keys scattered among
filler tokens; the target at a query is its value, every other position is ignored (-100).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cache

import torch

from kernelkit.validation import check_int_in_range

__all__ = [
    "IGNORE_INDEX",
    "PermutationGroup",
    "mqar_batch",
    "permutation_group",
    "state_tracking_batch",
]

IGNORE_INDEX = -100
GROUPS = ("S3", "S5", "A5")


def _is_even(permutation: tuple[int, ...]) -> bool:
    inversions = sum(a > b for a, b in itertools.combinations(permutation, 2))
    return inversions % 2 == 0


@dataclass(frozen=True)
class PermutationGroup:
    """A permutation group with elements numbered ``0 .. order - 1`` (element 0 is the identity)."""

    name: str
    elements: tuple[tuple[int, ...], ...]
    table: torch.Tensor  # table[i, j] = index of "apply element i, then element j"

    @property
    def order(self) -> int:
        return len(self.elements)


@cache
def permutation_group(name: str) -> PermutationGroup:
    """``"S3"``, ``"S5"`` or ``"A5"`` with its multiplication table."""
    if name not in GROUPS:
        raise ValueError(f"name must be one of {GROUPS}, got {name!r}")
    degree = int(name[1])
    elements = tuple(itertools.permutations(range(degree)))
    if name.startswith("A"):
        elements = tuple(p for p in elements if _is_even(p))
    index = {p: i for i, p in enumerate(elements)}
    table = torch.tensor(
        [[index[tuple(q[p[x]] for x in range(degree))] for q in elements] for p in elements]
    )
    return PermutationGroup(name, elements, table)


def state_tracking_batch(
    group: str, batch_size: int, length: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)``, both ``(batch_size, length)`` int64: elements and running products."""
    check_int_in_range("batch_size", batch_size, 1)
    check_int_in_range("length", length, 1)
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
    g = permutation_group(group)
    inputs = torch.randint(0, g.order, (batch_size, length), generator=generator)
    targets = torch.empty_like(inputs)
    running = inputs[:, 0]
    targets[:, 0] = running
    for t in range(1, length):
        running = g.table[running, inputs[:, t]]
        targets[:, t] = running
    return inputs, targets


def mqar_batch(
    batch_size: int,
    length: int,
    num_kv_pairs: int,
    vocab_size: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)`` for multi-query associative recall, both ``(batch_size, length)``.

    Token 0 is filler; keys come from ``1 .. vocab_size // 2 - 1`` and values from
    ``vocab_size // 2 .. vocab_size - 1``. The first ``2 * num_kv_pairs`` tokens are the pairs;
    each key is queried once at a uniformly random later position, where the target is its value.
    """
    check_int_in_range("batch_size", batch_size, 1)
    check_int_in_range("num_kv_pairs", num_kv_pairs, 1)
    check_int_in_range("vocab_size", vocab_size, 2 * num_kv_pairs + 2)
    half = vocab_size // 2
    check_int_in_range("length", length, 3 * num_kv_pairs)
    inputs = torch.zeros(batch_size, length, dtype=torch.long)
    targets = torch.full((batch_size, length), IGNORE_INDEX, dtype=torch.long)
    query_slots = length - 2 * num_kv_pairs
    for row in range(batch_size):
        keys = 1 + torch.randperm(half - 1, generator=generator)[:num_kv_pairs]
        values = half + torch.randint(0, vocab_size - half, (num_kv_pairs,), generator=generator)
        inputs[row, 0 : 2 * num_kv_pairs : 2] = keys
        inputs[row, 1 : 2 * num_kv_pairs : 2] = values
        positions = (
            2 * num_kv_pairs + torch.randperm(query_slots, generator=generator)[:num_kv_pairs]
        )
        inputs[row, positions] = keys
        targets[row, positions] = values
    return inputs, targets
