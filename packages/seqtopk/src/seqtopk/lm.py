"""A byte-level language model on the Python standard library's source (issue 20, section 2).

The realistic twin of the synthetic table task: text whose next byte is sometimes obvious (the
rest of a keyword, indentation) and sometimes hard (a new identifier), so per-token difficulty
varies without being designed in. Every byte is a token (``transformers.ByT5Tokenizer`` with no
extra ids: byte ``b`` is token ``b + 3``), so bits per token are bits per byte.

The corpus is a fixed, sorted list of top-level modules of the running interpreter's standard
library (``STDLIB_FILES``), split by file: every ``heldout_every``-th file of the list is held
out. Its SHA-256 is recorded with every result, because a different Python version ships
different sources.
"""

from __future__ import annotations

import hashlib
import math
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from kernelkit.utils import progress, seed_everything
from kernelkit.validation import check_int_in_range, check_ndim, check_tensor
from seqtopk.experiment import SmallMoEConfig, _route_as, _start_training, build_small_moe

__all__ = [
    "BYTE_OFFSET",
    "STDLIB_FILES",
    "ByteCorpus",
    "LMTrainConfig",
    "bits_per_byte",
    "byte_tokenizer",
    "encode_bytes",
    "evaluate_lm",
    "heldout_windows",
    "load_stdlib_corpus",
    "save_model",
    "train_lm",
]

# ByT5's ids 0, 1, 2 are <pad>, </s>, <unk>; byte b is id b + 3.
BYTE_OFFSET = 3
VOCAB_SIZE = 256 + BYTE_OFFSET

# Top-level modules that exist as single files from Python 3.9 to 3.13 (pathlib and zipfile
# became packages in 3.13 and 3.12, so they are not here). Sorted; the split is by position.
STDLIB_FILES = (
    "argparse.py",
    "ast.py",
    "base64.py",
    "bisect.py",
    "calendar.py",
    "cmd.py",
    "codecs.py",
    "colorsys.py",
    "configparser.py",
    "contextlib.py",
    "copy.py",
    "csv.py",
    "dataclasses.py",
    "datetime.py",
    "difflib.py",
    "enum.py",
    "fnmatch.py",
    "fractions.py",
    "functools.py",
    "gettext.py",
    "glob.py",
    "gzip.py",
    "heapq.py",
    "hmac.py",
    "inspect.py",
    "ipaddress.py",
    "linecache.py",
    "locale.py",
    "mimetypes.py",
    "numbers.py",
    "operator.py",
    "optparse.py",
    "pprint.py",
    "queue.py",
    "random.py",
    "secrets.py",
    "shlex.py",
    "shutil.py",
    "statistics.py",
    "string.py",
    "struct.py",
    "subprocess.py",
    "tarfile.py",
    "tempfile.py",
    "textwrap.py",
    "threading.py",
    "timeit.py",
    "tokenize.py",
    "trace.py",
    "traceback.py",
    "types.py",
    "typing.py",
    "uuid.py",
    "warnings.py",
    "weakref.py",
)


def byte_tokenizer():
    """The tokenizer saved with the byte-level models: ByT5's, 256 bytes plus 3 specials."""
    from transformers import ByT5Tokenizer

    return ByT5Tokenizer(extra_ids=0)


def encode_bytes(data: bytes) -> torch.Tensor:
    """Token ids of raw bytes (what ``byte_tokenizer()`` gives without special tokens)."""
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).long() + BYTE_OFFSET


@dataclass(frozen=True)
class ByteCorpus:
    """Token ids of the training and held-out files, each concatenated in list order."""

    train: torch.Tensor
    heldout: torch.Tensor
    train_files: tuple[str, ...]
    heldout_files: tuple[str, ...]
    sha256: str


def load_stdlib_corpus(
    files: tuple[str, ...] = STDLIB_FILES, heldout_every: int = 5, root: str | Path | None = None
) -> ByteCorpus:
    """Read ``files`` from ``root`` (default: this interpreter's standard library).

    ``files`` are taken in sorted order; file ``i`` is held out when ``i % heldout_every ==
    heldout_every - 1``, so both parts sample the whole list. A missing file raises instead of
    silently changing the corpus.
    """
    check_int_in_range("heldout_every", heldout_every, 2)
    if len(files) < heldout_every:
        raise ValueError(
            f"files must hold at least heldout_every={heldout_every} names, got {len(files)}"
        )
    base = Path(root) if root is not None else Path(sysconfig.get_paths()["stdlib"])
    digest = hashlib.sha256()
    parts: dict[bool, list[bytes]] = {False: [], True: []}
    names: dict[bool, list[str]] = {False: [], True: []}
    for index, name in enumerate(sorted(files)):
        path = base / name
        if not path.is_file():
            raise FileNotFoundError(f"corpus file {name!r} is not in {str(base)!r}")
        data = path.read_bytes()
        digest.update(name.encode() + b"\0" + data + b"\0")
        heldout = index % heldout_every == heldout_every - 1
        parts[heldout].append(data)
        names[heldout].append(name)
    return ByteCorpus(
        train=encode_bytes(b"".join(parts[False])),
        heldout=encode_bytes(b"".join(parts[True])),
        train_files=tuple(names[False]),
        heldout_files=tuple(names[True]),
        sha256=digest.hexdigest(),
    )


def sample_windows(
    data: torch.Tensor, batch: int, length: int, gen: torch.Generator
) -> torch.Tensor:
    """``batch`` windows of ``length`` tokens at uniformly random offsets of ``data``."""
    starts = torch.randint(0, data.numel() - length + 1, (batch,), generator=gen)
    return data[starts[:, None] + torch.arange(length)]


def heldout_windows(data: torch.Tensor, count: int, length: int) -> torch.Tensor:
    """``count`` windows of ``length`` tokens at evenly spaced offsets (deterministic)."""
    check_int_in_range("count", count, 1)
    check_int_in_range("length", length, 2)
    if data.numel() < length:
        raise ValueError(f"data holds {data.numel()} tokens, fewer than length={length}")
    starts = torch.linspace(0, data.numel() - length, count).long()
    return data[starts[:, None] + torch.arange(length)]


@torch.no_grad()
def bits_per_byte(model, windows: torch.Tensor, batch_size: int = 32) -> float:
    """Mean next-byte cross-entropy in bits over every position but each window's first.

    Each window is one independent sequence (routing and attention see only its own bytes).
    """
    windows = check_tensor("windows", windows)
    check_ndim("windows", windows, 2)
    check_int_in_range("batch_size", batch_size, 1)
    if windows.shape[1] < 2:
        raise ValueError(f"windows must have at least 2 columns, got shape {tuple(windows.shape)}")
    nats, count = 0.0, 0
    for start in range(0, windows.shape[0], batch_size):
        batch = windows[start : start + batch_size]
        logits = model(batch).logits[:, :-1].float()
        losses = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), batch[:, 1:], reduction="sum"
        )
        nats += float(losses)
        count += batch[:, 1:].numel()
    return nats / count / math.log(2)


@dataclass(frozen=True)
class LMTrainConfig:
    """One training (or fine-tuning) run of a byte-level model."""

    routing: Literal["topk", "seqtopk"]
    k: int
    steps: int
    batch_size: int = 16
    seq_len: int = 128
    lr: float = 3e-3
    seed: int = 0
    min_per_token: int = 0
    max_per_token: int = 0


def train_lm(
    corpus: ByteCorpus,
    config: LMTrainConfig,
    model=None,
    model_config: SmallMoEConfig | None = None,
    first_step: int = 0,
):
    """Train ``model`` (a fresh OLMoE from ``model_config`` when None) on random windows.

    AdamW, cosine decay from ``config.lr`` to 0 over ``config.steps``, offline routing as
    ``config.routing``. Step ``s`` draws its windows from a generator seeded with
    ``(seed, first_step + s)``: a fine-tuning run passes the pretraining's step count so it sees
    fresh windows, and runs of one seed see the same windows whatever their routing. Returns
    ``(model, losses)``, the model left routed as trained and in eval mode.
    """
    check_int_in_range("config.steps", config.steps, 1)
    check_int_in_range("first_step", first_step, 0)
    if model is None:
        model = build_small_moe(
            model_config or SmallMoEConfig(), VOCAB_SIZE, config.k, seed=config.seed
        )
    optimizer = _start_training(model, config)
    losses = []
    for step in progress(range(config.steps), desc=f"byte LM {config.routing} K={config.k}"):
        rate = config.lr * 0.5 * (1 + math.cos(math.pi * step / config.steps))
        for group in optimizer.param_groups:
            group["lr"] = rate
        gen = seed_everything((config.seed * 1_000_003 + first_step + step + 1) % 2**32)
        tokens = sample_windows(corpus.train, config.batch_size, config.seq_len, gen)
        out = model(tokens, labels=tokens, output_router_logits=True)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(out.loss.detach()))
    model.eval()
    return model, losses


def evaluate_lm(
    model,
    windows: torch.Tensor,
    *,
    routing: Literal["topk", "seqtopk"],
    k: int,
    min_per_token: int = 1,
    max_per_token: int = 0,
    mode: Literal["offline", "online"] = "online",
    batch_size: int = 32,
) -> float:
    """Held-out bits per byte of ``model`` routed with TopK or SeqTopK (``mode``: online is
    causal, what decoding computes; offline lets a byte's experts depend on later bytes)."""
    _route_as(model, routing, k, min_per_token, max_per_token, mode, "k")
    model.eval()
    return bits_per_byte(model, windows, batch_size)


def save_model(model, directory: str | Path) -> Path:
    """``save_pretrained`` of the unpatched model with the byte tokenizer (a model directory
    ``seqtopk finetune`` and ``seqtopk eval`` read)."""
    from seqtopk.patching import is_patched, unpatch

    if is_patched(model):
        unpatch(model)
    directory = Path(directory)
    model.save_pretrained(directory)
    byte_tokenizer().save_pretrained(directory)
    return directory
