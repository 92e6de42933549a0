"""A small MoE language model, a synthetic easy/hard token task, training and evaluation.

The model is transformers' OLMoE architecture built from a config (so the same ``patch`` code
routes it), small enough to train from scratch on a CPU. The task mixes tokens of different
difficulty in one sequence, which is where a per-sequence budget can move experts:

- ``FILL`` runs: the next token after a filler is another filler (trivial);
- ``EASY a`` pairs: the answer after ``EASY a`` is ``perm[a]`` (a fixed permutation);
- ``HARD a b`` triples: the answer after ``HARD a b`` is ``table[a, b]`` (a random table to
  memorise; ``hard_weight`` makes these segments more frequent).

The easy answers need no expert (embeddings and the output layer map ``a`` to ``perm[a]``), the
hard ones a non-linear memory that small experts run short of: with a large enough table, more
experts per token help them, the premise a sequence-level budget needs to pay off.

Accuracy is measured on the answer positions of each kind, and the experts each position gets
are counted per kind (last MoE layer). ``continue_training`` fine-tunes a trained model with
another routing (the adoption experiment of ``seqtopk.repro``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch

from kernelkit.io import (
    load_artifact,
    load_training_state,
    save_artifact,
    training_state_tensors,
)
from kernelkit.utils import progress, seed_everything
from kernelkit.validation import check_int_in_range
from seqtopk.patching import patch
from seqtopk.selection import resolve_bounds

__all__ = [
    "MixtureTask",
    "SmallMoEConfig",
    "TrainConfig",
    "build_small_moe",
    "continue_training",
    "evaluate",
    "train",
]

KINDS = ("filler", "easy", "hard")


@dataclass
class SmallMoEConfig:
    """The small OLMoE-architecture language model (defaults sized for a CPU)."""

    hidden_size: int = field(default=48, metadata={"help": "model width"})
    num_layers: int = field(default=2, metadata={"help": "decoder layers, each with an MoE block"})
    num_heads: int = field(default=4, metadata={"help": "attention heads"})
    num_experts: int = field(default=8, metadata={"help": "experts per MoE layer (E)"})
    expert_hidden: int = field(default=16, metadata={"help": "hidden width of each expert"})
    aux_loss_coef: float = field(
        default=0.01, metadata={"help": "weight of the load-balancing loss (real routing)"}
    )


@dataclass
class TrainConfig:
    """Training a small MoE LM on the mixture task, TopK or SeqTopK at the same budget."""

    routing: Literal["topk", "seqtopk"] = field(
        default="seqtopk", metadata={"help": "per-token TopK or offline SeqTopK during training"}
    )
    k: int = field(default=2, metadata={"help": "experts per token on average (K)"})
    min_per_token: int = field(default=1, metadata={"help": "SeqTopK lower bound L (paper: 1)"})
    max_per_token: int = field(
        default=0,
        metadata={
            "help": "SeqTopK upper bound U; 0 means K + 2 (the paper's cap), at most the number "
            "of experts"
        },
    )
    steps: int = field(default=300, metadata={"help": "optimiser steps"})
    batch_size: int = field(default=32, metadata={"help": "sequences per step"})
    seq_len: int = field(default=32, metadata={"help": "tokens per sequence"})
    lr: float = field(default=3e-3, metadata={"help": "AdamW learning rate"})
    seed: int = field(default=0, metadata={"help": "seed for the model, task and batches"})
    table_size: int = field(default=8, metadata={"help": "symbols a, b of the lookup task"})
    hard_weight: int = field(
        default=1,
        metadata={"help": "relative frequency of hard segments (filler and easy have 1 each)"},
    )
    checkpoint_every: int = field(
        default=100, metadata={"help": "steps between checkpoints (0: never)"}
    )

    def bounds(self, num_experts: int) -> tuple[int, int]:
        """(L, U) for SeqTopK; TopK is L = U = K. The default cap K + 2 is limited to the
        ``num_experts`` a layer has (``--k 7`` with 8 experts used to crash on U = 9)."""
        return routing_bounds(
            self.routing, self.k, self.min_per_token, self.max_per_token, num_experts
        )


def routing_bounds(
    routing: str, k: int, min_per_token: int, max_per_token: int, num_experts: int
) -> tuple[int, int]:
    """(L, U) of a run: TopK is L = U = K; SeqTopK's cap 0 means the default of
    :func:`seqtopk.resolve_bounds` (K + 2, limited to the experts that exist), which also checks
    that the budget is feasible."""
    if routing == "topk":
        return k, k
    return resolve_bounds(k, num_experts, min_per_token, max_per_token or None)[1:]


def _route_as(
    model, routing: str, k: int, min_per_token: int, max_per_token: int, mode: str, name: str
) -> tuple[int, int]:
    """Route ``model`` with ``routing`` at budget ``k`` and return its (L, U); TopK must use the
    model's own K (transformers' router reads ``num_experts_per_tok``), named ``name`` in the
    error."""
    if routing == "topk" and k != model.config.num_experts_per_tok:
        raise ValueError(
            f"{name} must be the model's num_experts_per_tok={model.config.num_experts_per_tok} "
            f"for TopK routing (transformers' router reads it), got {k}"
        )
    low, high = routing_bounds(routing, k, min_per_token, max_per_token, model.config.num_experts)
    _route(model, routing, k, low, high, mode)
    return low, high


class MixtureTask:
    """Sequences of filler runs, easy lookups and hard lookups, with per-position kinds."""

    def __init__(self, table_size: int = 8, seed: int = 0, hard_weight: int = 1):
        if table_size < 2:
            raise ValueError(f"table_size must be >= 2, got {table_size}")
        self.hard_weight = check_int_in_range("hard_weight", hard_weight, 1)
        gen = torch.Generator().manual_seed(seed)
        self.table_size = table_size
        self.fill, self.easy, self.hard = table_size, table_size + 1, table_size + 2
        self.vocab_size = table_size + 3
        self.perm = torch.randperm(table_size, generator=gen)
        self.table = torch.randint(0, table_size, (table_size, table_size), generator=gen)

    def sample(self, batch: int, length: int, gen: torch.Generator):
        """``(tokens [B, T], kinds [B, T])``; kinds[t] describes the answer predicted at t."""
        # Every segment has at least 2 tokens, so length // 2 + 1 segments fill a row. The draws
        # are made for all of them at once: one draw per segment in a Python loop cost a third
        # of a training step of the repro's model.
        segments = length // 2 + 1
        # Draws 2, 3, ... all mean "hard", so hard_weight=1 is the uniform mixture.
        choices = torch.randint(0, 2 + self.hard_weight, (batch, segments), generator=gen)
        choices = choices.clamp(max=2).tolist()
        symbols = torch.randint(0, self.table_size, (batch, segments, 2), generator=gen).tolist()
        runs = torch.randint(2, 6, (batch, segments), generator=gen).tolist()
        perm, table = self.perm.tolist(), self.table.tolist()
        rows, row_kinds = [], []
        for b in range(batch):
            row, kind = [], []
            for choice, (a, c), run in zip(choices[b], symbols[b], runs[b], strict=True):
                if len(row) >= length:
                    break
                if choice == 0:
                    # The run's last filler predicts the next segment's random first token: not
                    # an easy answer, so it is left unlabelled like every segment boundary.
                    row += [self.fill] * run
                    kind += [0] * (run - 1) + [-1]
                elif choice == 1:
                    row += [self.easy, a, perm[a]]
                    kind += [-1, 1, -1]
                else:
                    row += [self.hard, a, c, table[a][c]]
                    kind += [-1, -1, 2, -1]
            rows.append(row[:length])
            row_kinds.append(kind[:length])
        tokens = torch.tensor(rows, dtype=torch.long)
        kinds = torch.tensor(row_kinds, dtype=torch.long)
        # The last position has no next token to predict.
        kinds[:, -1] = -1
        return tokens, kinds


def build_small_moe(config: SmallMoEConfig, vocab_size: int, k: int, seed: int = 0):
    """An OLMoE-architecture causal LM with ``k`` experts per token (unpatched TopK)."""
    from transformers import OlmoeConfig, OlmoeForCausalLM

    hf_config = OlmoeConfig(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.expert_hidden,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        num_experts=config.num_experts,
        num_experts_per_tok=k,
        max_position_embeddings=512,
        router_aux_loss_coef=config.aux_loss_coef,
        pad_token_id=None,
        bos_token_id=None,
        eos_token_id=None,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = OlmoeForCausalLM(hf_config)
    model.config._experts_implementation = "grouped_mm"
    return model


def _route(model, routing: str, k: int, low: int, high: int, mode: str):
    from seqtopk.patching import is_patched, unpatch

    if is_patched(model):
        unpatch(model)
    if routing == "seqtopk":
        patch(model, k=k, mode=mode, min_per_token=low, max_per_token=high)
    return model


def _learning_rate(config: TrainConfig, step: int) -> float:
    """Cosine decay from ``config.lr`` to 0 over the run, a pure function of the step."""
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(step, config.steps) / config.steps))


def _batch_generator(config: TrainConfig, step: int) -> torch.Generator:
    """Step ``step``'s batch generator, reseeded per step so a resumed run sees the same data.

    Seeding the global RNGs too covers any random op inside the model (none in OLMoE's defaults).
    """
    return seed_everything((config.seed * 1_000_003 + step + 1) % 2**32)


def train(
    config: TrainConfig,
    model_config: SmallMoEConfig | None = None,
    out_dir: str | Path | None = None,
):
    """Train from scratch (resuming from ``out_dir``'s checkpoint when one exists).

    Returns ``(model, task, losses)``; the model is left routed as trained (offline SeqTopK or
    TopK). Checkpoints are safetensors written atomically and hold the model, AdamW's moments and
    step counts (``kernelkit.io.training_state_tensors``) and the losses so far. The learning
    rate is a function of the step and each step's batch comes from a generator seeded with the
    step, so a run interrupted and resumed from a checkpoint equals an uninterrupted run bit for
    bit (tested).
    """
    model_config = model_config or SmallMoEConfig()
    task = MixtureTask(config.table_size, seed=config.seed, hard_weight=config.hard_weight)
    model = build_small_moe(model_config, task.vocab_size, config.k, seed=config.seed)
    optimizer = _start_training(model, config)
    start, losses = 0, []
    checkpoint = Path(out_dir) / "checkpoint" if out_dir is not None else None
    if checkpoint is not None and (checkpoint / "manifest.json").exists():
        tensors, saved = load_artifact(checkpoint, kind="seqtopk-train")
        if saved["train"] != asdict(config) or saved["model"] != asdict(model_config):
            raise ValueError(f"the checkpoint in {checkpoint} was written by a different config")
        load_training_state(tensors, model, optimizer)
        start, losses = saved["step"], saved["losses"]
    model.train()
    for step in progress(range(start, config.steps), desc=f"train {config.routing}"):
        losses.append(_train_step(model, optimizer, task, config, step, step))
        done = step + 1
        if (
            checkpoint is not None
            and config.checkpoint_every
            and (done % config.checkpoint_every == 0 or done == config.steps)
        ):
            meta = {"train": asdict(config), "model": asdict(model_config), "step": done}
            save_artifact(
                checkpoint,
                training_state_tensors(model, optimizer),
                {**meta, "losses": losses},
                kind="seqtopk-train",
            )
    model.eval()
    return model, task, losses


def _train_step(model, optimizer, task, config: TrainConfig, step: int, batch_index: int) -> float:
    for group in optimizer.param_groups:
        group["lr"] = _learning_rate(config, step)
    tokens, _ = task.sample(
        config.batch_size, config.seq_len, _batch_generator(config, batch_index)
    )
    out = model(tokens, labels=tokens, output_router_logits=True)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return float(out.loss.detach())


def _start_training(model, config) -> torch.optim.Optimizer:
    """Route ``model`` for training as ``config`` says (offline) and return its AdamW; a TopK
    config must use the model's own K (transformers' router reads ``num_experts_per_tok``)."""
    _route_as(
        model,
        config.routing,
        config.k,
        config.min_per_token,
        config.max_per_token,
        "offline",
        "config.k",
    )
    model.train()
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)


def continue_training(model, task: MixtureTask, config: TrainConfig, *, first_batch: int):
    """Fine-tune an already trained ``model`` for ``config.steps`` steps with ``config.routing``.

    The adoption experiment: a TopK-trained model is switched to offline SeqTopK (or kept on
    TopK, the control that gets the same extra steps) with a fresh AdamW and the cosine schedule
    of ``config``. Batches continue the training stream from batch ``first_batch`` (pass the
    number of steps the model was trained for), so fine-tuning sees sequences it has not seen.
    Returns ``(model, losses)``; the model is left routed as fine-tuned.
    """
    check_int_in_range("first_batch", first_batch, 0)
    optimizer = _start_training(model, config)
    losses = [
        _train_step(model, optimizer, task, config, step, first_batch + step)
        for step in progress(range(config.steps), desc=f"fine-tune {config.routing}")
    ]
    model.eval()
    return model, losses


@torch.no_grad()
def evaluate(
    model,
    task: MixtureTask,
    *,
    routing: Literal["topk", "seqtopk"],
    mode: Literal["offline", "online"] = "online",
    k: int = 2,
    min_per_token: int = 1,
    max_per_token: int | None = None,
    batches: int = 4,
    batch_size: int = 64,
    seq_len: int = 32,
    seed: int = 1234,
) -> dict[str, float]:
    """Loss, accuracy per answer kind and experts per position kind (last MoE layer).

    ``experts_<kind>`` is the mean count and ``share_<kind>_<c>`` the fraction of that kind's
    positions that got exactly ``c`` experts (``c`` from 0 to the upper bound), the histogram of
    experts per token against difficulty. ``mode="online"`` routes causally (the number to report
    for a causal LM); ``"offline"`` lets each token's allocation depend on later tokens.
    """
    _, high = _route_as(model, routing, k, min_per_token, max_per_token, mode, "k")
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    correct = dict.fromkeys(KINDS, 0.0)
    total = dict.fromkeys(KINDS, 0.0)
    experts = dict.fromkeys(KINDS, 0.0)
    histogram = {name: torch.zeros(high + 1) for name in KINDS}
    loss_sum, loss_count = 0.0, 0
    for _ in range(batches):
        tokens, kinds = task.sample(batch_size, seq_len, gen)
        out = model(tokens, labels=tokens)
        loss_sum += float(out.loss) * tokens.numel()
        loss_count += tokens.numel()
        predicted = out.logits[:, :-1].argmax(-1)
        hit = predicted == tokens[:, 1:]
        if routing == "seqtopk":
            counts = model._seqtopk_routing.records[-1][1].sum(-1).float()
        else:
            counts = torch.full(tokens.shape, float(k))
        for index, name in enumerate(KINDS):
            where = kinds[:, :-1] == index
            correct[name] += float(hit[where].sum())
            total[name] += float(where.sum())
            experts[name] += float(counts[:, :-1][where].sum())
            histogram[name] += torch.bincount(
                counts[:, :-1][where].long(), minlength=high + 1
            ).float()
    result = {"loss": loss_sum / loss_count}
    for name in KINDS:
        denominator = max(total[name], 1.0)
        result[f"acc_{name}"] = correct[name] / denominator
        result[f"experts_{name}"] = experts[name] / denominator
        for count, positions in enumerate(histogram[name].tolist()):
            result[f"share_{name}_{count}"] = positions / denominator
    return result
