"""Associative recall: the toy task on which a tiny model learns in-context learning.

A sequence is ``BOS k1 v1 k2 v2 ...`` where the keys are drawn from ``num_keys`` key tokens and
every sequence has its own random key-to-value map, so the only way to predict a value is to look
the key up earlier in the context (an induction head). A *new task* is one fixed, unseen map
``g``: it can be taught by demonstrations in context (ICL), by a trained cache, or by LoRA.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F

from kernelkit.io import load_artifact, save_artifact
from kernelkit.utils import progress

__all__ = [
    "RecallConfig",
    "RecallTask",
    "icl_accuracy",
    "load_pretrained_recall_model",
    "pretrain_recall_model",
    "recall_accuracy",
    "save_recall_model",
    "shipped_recall_model_path",
    "tiny_recall_model",
]

BOS = 0
WEIGHTS_NAME = "recall_model"
#: The shipped fixture lives at ``reasoncache/data/recall_model`` (safetensors + config JSON).
#: Regenerate it with ``reasoncache pretrain-recall --out src/reasoncache/data/recall_model``.
DATA_DIR = "data"


@dataclass
class RecallConfig:
    """The associative-recall vocabulary and the tiny model trained on it."""

    num_keys: int = field(default=4, metadata={"help": "distinct keys per map"})
    num_values: int = field(default=4, metadata={"help": "distinct value tokens"})
    num_pairs: int = field(default=12, metadata={"help": "key/value pairs per training sequence"})
    hidden_size: int = field(default=64, metadata={"help": "model width"})
    num_layers: int = field(default=2, metadata={"help": "decoder layers"})
    pretrain_steps: int = field(default=2000, metadata={"help": "pretraining steps"})
    batch_size: int = field(default=64, metadata={"help": "pretraining batch size"})
    learning_rate: float = field(default=3e-3, metadata={"help": "pretraining AdamW lr"})
    seed: int = field(default=0, metadata={"help": "random seed"})

    @property
    def vocab_size(self) -> int:
        return 1 + self.num_keys + self.num_values


class RecallTask:
    """Sampling sequences and fixed maps for one :class:`RecallConfig`."""

    def __init__(self, config: RecallConfig) -> None:
        self.config = config

    def key_token(self, key: torch.Tensor) -> torch.Tensor:
        return key + 1

    def value_token(self, value: torch.Tensor) -> torch.Tensor:
        return value + 1 + self.config.num_keys

    def random_maps(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """``[batch, num_keys]`` random maps key -> value (values may repeat)."""
        return torch.randint(
            0, self.config.num_values, (batch, self.config.num_keys), generator=generator
        )

    def sequences(
        self, maps: torch.Tensor, num_pairs: int, generator: torch.Generator, bos: bool = True
    ) -> torch.Tensor:
        """``BOS k v k v ...`` for each map row; keys uniformly at random."""
        batch = maps.shape[0]
        keys = torch.randint(0, self.config.num_keys, (batch, num_pairs), generator=generator)
        values = maps.gather(1, keys)
        pairs = torch.stack([self.key_token(keys), self.value_token(values)], dim=2)
        tokens = pairs.reshape(batch, 2 * num_pairs)
        if bos:
            tokens = torch.cat([torch.full((batch, 1), BOS), tokens], dim=1)
        return tokens


def tiny_recall_model(config: RecallConfig):
    """A 2-layer GQA Llama (4 query heads, 2 KV heads) over the recall vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    model_config = LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=2 * config.hidden_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=BOS,
        eos_token_id=None,
        pad_token_id=None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(config.seed)
    return LlamaForCausalLM(model_config)


def _value_loss(model, tokens: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=tokens[:, :-1]).logits
    # Values sit at even positions >= 2 (BOS k v ...): predicted from the key just before them.
    targets = tokens[:, 1:].clone()
    targets[:, 0::2] = -100
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def pretrain_recall_model(config: RecallConfig, *, show_progress: bool = True):
    """Pretrain on fresh random maps per sequence so the model learns in-context lookup."""
    model = tiny_recall_model(config)
    task = RecallTask(config)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.0)
    model.train()
    for _ in progress(
        range(config.pretrain_steps), desc="pretrain recall", disable=not show_progress or None
    ):
        maps = task.random_maps(config.batch_size, generator)
        loss = _value_loss(model, task.sequences(maps, config.num_pairs, generator))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model


def save_recall_model(model, config: RecallConfig, directory: str | Path) -> Path:
    """Save a recall model's weights (safetensors) and its :class:`RecallConfig` with kernelkit.io."""
    state = {k: v.detach().float() for k, v in model.state_dict().items()}
    return save_artifact(directory, state, asdict(config), kind="recall_model")


def shipped_recall_model_path():
    """The package-data directory of the shipped pretrained recall model (a Traversable)."""
    return resources.files("reasoncache") / DATA_DIR / WEIGHTS_NAME


def load_pretrained_recall_model(path: str | Path | None = None):
    """The shipped pretrained recall model, or one saved at ``path`` by :func:`save_recall_model`.

    Returns ``(model, config)``; the config is read back from the artifact, so the task the model
    was trained on is reproduced exactly.
    """
    if path is None:
        with resources.as_file(shipped_recall_model_path()) as shipped:
            state, saved = load_artifact(shipped, kind="recall_model")
    else:
        state, saved = load_artifact(path, kind="recall_model")
    config = RecallConfig(**saved)
    model = tiny_recall_model(config)
    model.load_state_dict(state)
    model.eval()
    return model, config


@torch.no_grad()
def recall_accuracy(logits: torch.Tensor, tokens: torch.Tensor, start: int) -> float:
    """Accuracy of value predictions at query positions ``>= start`` (value tokens only)."""
    predictions = logits[:, :-1].argmax(-1)
    targets = tokens[:, 1:]
    positions = torch.arange(targets.shape[1])
    is_value = (positions % 2 == 1) & (positions + 1 >= start)
    return (predictions[:, is_value] == targets[:, is_value]).float().mean().item()


@torch.no_grad()
def icl_accuracy(
    model, task: RecallTask, mapping: torch.Tensor, demos: int, generator, trials: int
) -> float:
    """Accuracy on every key of ``mapping`` after ``demos`` in-context demonstrations of it.

    Each of ``trials`` rounds draws fresh demonstrations (keys at random, so with few demos some
    queried keys are unseen and only guessable); chance is ``1 / num_values``.
    """
    keys = torch.arange(task.config.num_keys).repeat(trials)
    maps = mapping.expand(len(keys), -1)
    context = task.sequences(maps, demos, generator) if demos else torch.full((len(keys), 1), BOS)
    tokens = torch.cat([context, task.key_token(keys)[:, None]], dim=1)
    predictions = model(input_ids=tokens).logits[:, -1].argmax(-1)
    return (predictions == task.value_token(mapping[keys])).float().mean().item()
