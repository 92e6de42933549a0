"""``densenet-limits``: cut norms of matrices, training dense/sparse/unconstrained nets, compression."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch

from densenet_limits import __version__, bench, repro
from densenet_limits.compression import compress
from densenet_limits.hard_functions import sample_hard_family
from densenet_limits.networks import MLP, DenseMLP, SparseMLP, load_network
from densenet_limits.training import TrainConfig, accuracy, load_digits_split, r2_score, train
from kernelkit.cli import add_dataclass_arguments, add_repro_and_bench, dataclass_from_args, run
from kernelkit.cutnorm import cut_norm_exact, cut_norm_greedy, cut_norm_sdp

__all__ = ["CutNormJob", "TrainJob", "main"]


@dataclass
class CutNormJob:
    """Which estimator to run on a matrix read from .npy or .safetensors."""

    matrix: Path = field(metadata={"help": "a 2-D array in .npy or .safetensors (first tensor)"})
    method: Literal["exact", "greedy", "sdp"] = field(
        default="greedy", metadata={"help": "exact (smaller side <= 20), greedy or sdp"}
    )
    seed: int = field(default=0, metadata={"help": "seed for restarts and rounding"})


@dataclass
class TrainJob:
    """One network trained on the witness family or on load_digits, saved as safetensors."""

    out: Path = field(metadata={"help": "directory for the trained network"})
    model: Literal["dense", "sparse", "unconstrained"] = field(
        default="dense", metadata={"help": "network class"}
    )
    data: Literal["hard", "digits"] = field(
        default="hard", metadata={"help": "witness family f*(x) = mean|x_i - 1/2| or load_digits"}
    )
    dim: int = field(default=256, metadata={"help": "input dimension d0 (hard family only)"})
    width: int = field(default=512, metadata={"help": "hidden width"})
    bound: float = field(default=4.0, metadata={"help": "B: |W| <= B/fan_in, |b| <= B"})
    parametrization: Literal["tanh", "clamp"] = field(
        default="tanh", metadata={"help": "dense layers: tanh reparametrisation or clamp"}
    )
    checkpoint_every: int = field(
        default=500,
        metadata={
            "help": "write a resumable checkpoint to OUT/checkpoint every this many steps; "
            "a rerun with the same arguments resumes from it"
        },
    )


_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


def _first_safetensors_tensor(path: Path) -> torch.Tensor:
    """The first tensor of a .safetensors file (8-byte header length, JSON header, raw data)."""
    import numpy as np

    data = path.read_bytes()
    try:
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{str(path)!r} is not a readable safetensors file: {err}") from err
    entries = {name: spec for name, spec in header.items() if name != "__metadata__"}
    if not entries:
        raise ValueError(f"{str(path)!r} holds no tensors")
    name, spec = next(iter(entries.items()))
    if spec.get("dtype") not in _SAFETENSORS_DTYPES:
        raise ValueError(
            f"tensor {name!r} in {str(path)!r} has dtype {spec.get('dtype')!r}; "
            f"expected one of {sorted(_SAFETENSORS_DTYPES)}"
        )
    start, end = spec["data_offsets"]
    raw = data[8 + size + start : 8 + size + end]
    array = np.frombuffer(raw, dtype=_SAFETENSORS_DTYPES[spec["dtype"]]).reshape(spec["shape"])
    return torch.from_numpy(array.copy())


def _read_matrix(path: Path) -> torch.Tensor:
    if not path.is_file():
        raise FileNotFoundError(f"matrix file {str(path)!r} does not exist")
    if path.suffix == ".npy":
        import numpy as np

        return torch.from_numpy(np.load(path, allow_pickle=False))
    if path.suffix == ".safetensors":
        return _first_safetensors_tensor(path)
    raise ValueError(f"matrix must be a .npy or .safetensors file, got {str(path)!r}")


def _run_cutnorm(args: argparse.Namespace) -> int:
    job = dataclass_from_args(CutNormJob, args)
    matrix = _read_matrix(job.matrix)
    generator = torch.Generator().manual_seed(job.seed)
    if job.method == "exact":
        result = cut_norm_exact(matrix)
    elif job.method == "greedy":
        result = cut_norm_greedy(matrix, generator=generator)
    else:
        result = cut_norm_sdp(matrix, generator=generator)
    print(
        json.dumps(
            {
                "method": result.method,
                "shape": list(result.shape),
                "value": result.value,
                "normalized": result.normalized,
                "interval": [result.lower, result.upper],
                "rows": result.rows.nonzero().flatten().tolist(),
                "cols": result.cols.nonzero().flatten().tolist(),
            },
            indent=2,
        )
    )
    return 0


def _run_train(args: argparse.Namespace) -> int:
    job = dataclass_from_args(TrainJob, args)
    config = dataclass_from_args(TrainConfig, args)
    if job.data == "digits":
        x, y, x_test, y_test = load_digits_split()
        widths, task = [64, job.width, 10], "classification"
    else:
        generator = torch.Generator().manual_seed(config.seed)
        x, y = sample_hard_family(4096, job.dim, generator=generator)
        x_test, y_test = sample_hard_family(2048, job.dim, generator=generator)
        widths, task = [job.dim, job.width, 1], "regression"
    if job.model == "dense":
        model = DenseMLP(widths, job.bound, parametrization=job.parametrization, seed=config.seed)
    elif job.model == "sparse":
        model = SparseMLP(widths, job.bound, seed=config.seed)
    else:
        model = MLP(widths, seed=config.seed)
    train(
        model,
        x,
        y,
        config,
        task=task,
        show_progress=True,
        checkpoint_dir=job.out / "checkpoint",
        checkpoint_every=job.checkpoint_every,
    )
    score = (
        accuracy(model, x_test, y_test)
        if task == "classification"
        else r2_score(model, x_test, y_test)
    )
    model.save_pretrained(job.out)
    print(
        json.dumps(
            {
                "job": {k: str(v) for k, v in asdict(job).items()},
                "test_accuracy" if task == "classification" else "test_r2": score,
            },
            indent=2,
        )
    )
    return 0


def _run_compress(args: argparse.Namespace) -> int:
    model = load_network(args.model)
    # One count applies to every hidden layer; several give one count per layer.
    parts = args.parts[0] if len(args.parts) == 1 else args.parts
    result = compress(
        model,
        parts,
        method=args.method,
        samples=args.samples,
        seed=args.seed,
        input_parts=args.input_parts,
    )
    if args.out is not None:
        result.model.save_pretrained(args.out)
    print(
        json.dumps(
            {
                "parts_used": list(result.parts_used),
                "mean_error": result.mean_error,
                "max_error": result.max_error,
                "rms_error": result.rms_error,
                "relative_rms_error": result.relative_rms_error,
                "input_blocks": None
                if result.input_labels is None
                else result.input_labels.tolist(),
            },
            indent=2,
        )
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="densenet-limits", description=__doc__)
    parser.add_argument("--version", action="version", version=f"densenet-limits {__version__}")
    subparsers = parser.add_subparsers(required=True, metavar="command")

    cut = subparsers.add_parser("cutnorm", help="cut norm of a matrix (.npy or .safetensors)")
    add_dataclass_arguments(cut, CutNormJob)
    cut.set_defaults(handler=_run_cutnorm)

    fit = subparsers.add_parser("train", help="train a dense, sparse or unconstrained network")
    add_dataclass_arguments(fit, TrainJob)
    add_dataclass_arguments(fit, TrainConfig)
    fit.set_defaults(handler=_run_train)

    shrink = subparsers.add_parser("compress", help="merge hidden neurons of a saved network")
    shrink.add_argument("--model", type=Path, required=True, help="directory written by train")
    shrink.add_argument(
        "--parts", type=int, nargs="+", required=True, help="parts per hidden layer"
    )
    shrink.add_argument(
        "--method", choices=("weak_regularity", "kmeans"), default="weak_regularity"
    )
    shrink.add_argument(
        "--input-parts",
        type=int,
        default=None,
        help="also merge the input coordinates into this many blocks (first layer reads "
        "block averages); default: inputs untouched",
    )
    shrink.add_argument("--samples", type=int, default=2048, help="cube points for the error")
    shrink.add_argument("--seed", type=int, default=0)
    shrink.add_argument("--out", type=Path, default=None, help="save the compressed MLP here")
    shrink.set_defaults(handler=_run_compress)

    add_repro_and_bench(
        subparsers, package="densenet-limits", repro_run=repro.run, bench_run=bench.run
    )
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
