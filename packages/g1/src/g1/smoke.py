"""A tiny offline policy for GRPO smoke runs: a random causal LM over a word-level tokenizer.

A random model over a byte-level vocabulary (ByT5's 384 ids) practically never writes the
seven bytes of ``\\boxed{`` followed by an answer and a ``}``, so every GRPO group has zero
reward variance and nothing is learned. Here ``\\boxed{`` is one token of a 20-token
vocabulary (digits, ``Yes``/``No``, a few prompt words, a space and an unknown token), as it
is a short run of tokens in the BPE vocabularies of real LLMs, so a random policy boxes an
answer in a few percent of its completions and the format reward has variance to learn from.
Built with the ``tokenizers`` library, no download.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from g1.instance import Instance
from g1.rewards import format_reward

__all__ = ["SMOKE_VOCABULARY", "format_rate", "save_smoke_policy", "smoke_tokenizer"]

_SPECIAL = ("<pad>", "<eos>", "<unk>")
SMOKE_VOCABULARY: tuple[str, ...] = (
    *_SPECIAL,
    "\\boxed{",
    "}",
    *"0123456789",
    "Yes",
    "No",
    "node",
    "edge",
    " ",
)
"""The token strings, in id order; every other word or character maps to ``<unk>``."""

# One piece per box opener, digit, word, whitespace character or other character.
_PIECES = r"\\boxed\{|\d|[A-Za-z]+|\s|[^\sA-Za-z\d]"


def smoke_tokenizer():
    """A ``PreTrainedTokenizerFast`` over :data:`SMOKE_VOCABULARY`, padding on the left.

    Pieces are decoded by concatenation, so ``["\\boxed{", "1", "2", "}"]`` reads
    ``\\boxed{12}``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocabulary = {token: index for index, token in enumerate(SMOKE_VOCABULARY)}
    backend = Tokenizer(models.WordLevel(vocabulary, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(_PIECES), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="<eos>",
        unk_token="<unk>",
        padding_side="left",
    )


def save_smoke_policy(directory: str | Path, *, seed: int = 0, model_type: str = "llama"):
    """Save a random 2-layer causal LM and :func:`smoke_tokenizer` to ``directory``.

    Returns ``(model, tokenizer)``; the directory loads with ``AutoModelForCausalLM`` and
    ``AutoTokenizer`` (or pass it to ``g1 train --model``).
    """
    from kernelkit.testing import tiny_causal_lm

    tokenizer = smoke_tokenizer()
    model, _ = tiny_causal_lm(
        model_type,
        seed=seed,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return model, tokenizer


def format_rate(
    model,
    tokenizer,
    instances: Sequence[Instance],
    *,
    samples: int = 8,
    max_new_tokens: int = 8,
    seed: int = 0,
) -> float:
    """Fraction of sampled completions that box an answer of the task's type (format reward > 0).

    ``samples`` completions per prompt, sampled as trl's GRPOTrainer does (temperature 1.0, no
    top-k or top-p), under a fixed seed, so the same model on the same prompts gives the same
    number. The global torch RNG is left as it was.
    """
    was_training = model.training
    model.eval()
    encoded = tokenizer(
        [instance.prompt for instance in instances], return_tensors="pt", padding=True
    ).to(model.device)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        output = model.generate(
            **encoded,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_new_tokens=max_new_tokens,
            num_return_sequences=samples,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    model.train(was_training)
    texts = tokenizer.batch_decode(
        output[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True
    )
    tasks = [instance.task for instance in instances for _ in range(samples)]
    scores = format_reward(None, texts, weight=1.0, task=tasks)
    return sum(scores) / len(scores)
