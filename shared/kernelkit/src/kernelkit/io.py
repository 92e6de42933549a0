"""Artifacts on disk: tensors in safetensors plus a JSON manifest, written atomically.

An artifact is a directory holding two files:

- ``tensors.safetensors``: the tensors (never a pickle);
- ``manifest.json``: the format version, a ``kind`` naming what the artifact is, the caller's
  JSON config, each tensor's shape and dtype, and the SHA-256 of the tensor file.

Each file is written to a temporary name in the same directory and renamed into place, the
manifest last. Before an artifact is overwritten, its two files are kept as a complete backup pair
(``*.previous``, hard links where the file system allows), removed once the new pair is in place.
A run interrupted at any point therefore leaves either a consistent artifact, or a new pair whose
manifest does not match its tensor file beside the complete backup: ``load_artifact`` then returns
the backup with a warning (a resumed run loses the interrupted save, never the checkpoint before
it), and reports the artifact as corrupt, instead of returning wrong weights, when no backup is
there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "BACKUP_SUFFIX",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "TENSORS_NAME",
    "ArtifactError",
    "atomic_write_bytes",
    "atomic_write_text",
    "load_artifact",
    "load_training_state",
    "save_artifact",
    "training_state_tensors",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
TENSORS_NAME = "tensors.safetensors"
BACKUP_SUFFIX = ".previous"


class ArtifactError(ValueError):
    """An artifact directory is missing, corrupt, truncated or of the wrong kind or version."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_artifact(
    directory: str | os.PathLike,
    tensors: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    *,
    kind: str = "artifact",
) -> Path:
    """Save ``tensors`` and the JSON-serialisable ``config`` into ``directory``; return its path.

    Tensors are made contiguous and moved to the CPU; ``config`` must survive ``json.dumps``.
    """
    from safetensors.torch import save

    if not isinstance(tensors, Mapping):
        raise TypeError(
            f"tensors must be a mapping of name to tensor, got {type(tensors).__name__}"
        )
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"tensors keys must be non-empty strings, got {name!r}")
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(
                f"tensors[{name!r}] must be a torch.Tensor, got {type(tensor).__name__}"
            )
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping, got {type(config).__name__}")
    try:
        config_json = json.loads(json.dumps(dict(config), allow_nan=False))
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"config must be JSON-serialisable (finite numbers, str keys): {err}"
        ) from err

    cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    payload = save(cpu) if cpu else save({})
    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config_json,
        "tensors": {
            name: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
            for name, t in cpu.items()
        },
        "sha256": _sha256(payload),
    }
    directory = Path(directory)
    pair = (directory / TENSORS_NAME, directory / MANIFEST_NAME)
    _keep_backup(pair)
    atomic_write_bytes(pair[0], payload)
    atomic_write_text(pair[1], json.dumps(manifest, indent=2, sort_keys=True))
    # Manifest backup first: a lone tensor backup is an incomplete pair, never loaded.
    for path in reversed(pair):
        _backup(path).unlink(missing_ok=True)
    return directory


def _backup(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)


def _keep_backup(pair: tuple[Path, Path]) -> None:
    """Keep the artifact about to be overwritten as a backup pair, unless a complete one exists.

    A complete backup pair left by an interrupted save is known good, while the current pair may
    be the interrupted (inconsistent) one, so the existing backup is kept rather than replaced.
    """
    if all(_backup(path).is_file() for path in pair) or not all(path.is_file() for path in pair):
        return
    for path in pair:  # tensors first: the manifest backup completes the pair
        backup = _backup(path)
        backup.unlink(missing_ok=True)
        try:
            os.link(path, backup)
        except OSError:  # a file system without hard links
            shutil.copyfile(path, backup)


def load_artifact(
    directory: str | os.PathLike,
    *,
    kind: str | None = None,
    expected_shapes: Mapping[str, tuple[int, ...]] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load an artifact written by :func:`save_artifact`; return ``(tensors, config)``.

    Raises :class:`ArtifactError` when a file is missing, the checksum or a tensor's shape or
    dtype disagrees with the manifest, the format version is not this one, ``kind`` does not
    match, or a tensor named in ``expected_shapes`` is absent or shaped differently, unless the
    backup pair kept by an interrupted :func:`save_artifact` loads cleanly (then it is returned,
    with a warning).
    """
    directory = Path(directory)
    manifest_path, tensors_path = directory / MANIFEST_NAME, directory / TENSORS_NAME
    try:
        return _load_pair(directory, manifest_path, tensors_path, kind, expected_shapes, device)
    except ArtifactError as error:
        backups = _backup(manifest_path), _backup(tensors_path)
        if not all(path.is_file() for path in backups):
            raise
        try:
            loaded = _load_pair(directory, *backups, kind, expected_shapes, device)
        except ArtifactError:
            raise error from None
        warnings.warn(
            f"artifact {str(directory)!r} is inconsistent ({error}); loaded the complete pair "
            "kept from before an interrupted save instead",
            stacklevel=2,
        )
        return loaded


def _load_pair(
    directory: Path,
    manifest_path: Path,
    tensors_path: Path,
    kind: str | None,
    expected_shapes: Mapping[str, tuple[int, ...]] | None,
    device: str | torch.device,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    for path in (manifest_path, tensors_path):
        if not path.is_file():
            raise ArtifactError(
                f"artifact {str(directory)!r} has no {path.name}; expected a directory written by save_artifact"
            )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactError(
            f"{manifest_path} is not valid JSON (corrupt or truncated): {err}"
        ) from err
    if (
        not isinstance(manifest, dict)
        or not {"format_version", "kind", "config", "tensors", "sha256"} <= manifest.keys()
    ):
        raise ArtifactError(
            f"{manifest_path} lacks the manifest fields format_version, kind, config, tensors, sha256"
        )
    if manifest["format_version"] != FORMAT_VERSION:
        raise ArtifactError(
            f"artifact {str(directory)!r} has format_version {manifest['format_version']!r}; this kernelkit reads {FORMAT_VERSION}"
        )
    if kind is not None and manifest["kind"] != kind:
        raise ArtifactError(
            f"artifact {str(directory)!r} is a {manifest['kind']!r}, expected a {kind!r}"
        )

    payload = tensors_path.read_bytes()
    if _sha256(payload) != manifest["sha256"]:
        raise ArtifactError(
            f"{tensors_path} does not match its manifest checksum (corrupt, truncated or replaced)"
        )
    try:
        tensors = load(payload)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise ArtifactError(f"{tensors_path} is not a readable safetensors file: {err}") from err

    declared = manifest["tensors"]
    if set(declared) != set(tensors):
        raise ArtifactError(
            f"artifact {str(directory)!r}: manifest lists tensors {sorted(declared)}, file holds {sorted(tensors)}"
        )
    for name, tensor in tensors.items():
        spec = declared[name]
        if (
            list(tensor.shape) != spec["shape"]
            or str(tensor.dtype).removeprefix("torch.") != spec["dtype"]
        ):
            raise ArtifactError(
                f"tensor {name!r} is {tuple(tensor.shape)} {tensor.dtype}; manifest says {tuple(spec['shape'])} {spec['dtype']}"
            )
    for name, shape in (expected_shapes or {}).items():
        if name not in tensors:
            raise ArtifactError(
                f"artifact {str(directory)!r} has no tensor {name!r}; it holds {sorted(tensors)}"
            )
        if tuple(tensors[name].shape) != tuple(shape):
            raise ArtifactError(
                f"tensor {name!r} has shape {tuple(tensors[name].shape)}, expected {tuple(shape)}"
            )
    return {name: t.to(device) for name, t in tensors.items()}, manifest["config"]


MODEL_PREFIX = "model."
OPTIMIZER_PREFIX = "optim."


def training_state_tensors(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, torch.Tensor]:
    """The tensors a resumable checkpoint needs: the model's state and the optimiser's moments.

    Model entries are named ``model.<state-dict key>``; optimiser entries
    ``optim.<parameter index>.<state key>`` (e.g. AdamW's ``exp_avg``, ``exp_avg_sq`` and
    ``step``). Empty optimiser slots (``None``, as SGD keeps without momentum) are left out.
    Hyperparameters are not stored here: the caller rebuilds the optimiser from its config, so a
    resumed run keeps its learning-rate schedule. Pass the result to :func:`save_artifact`.
    """
    tensors = {f"{MODEL_PREFIX}{name}": value for name, value in model.state_dict().items()}
    if optimizer is not None:
        for index, state in optimizer.state_dict()["state"].items():
            for key, value in state.items():
                if value is not None:
                    tensors[f"{OPTIMIZER_PREFIX}{index}.{key}"] = torch.as_tensor(value)
    return tensors


def load_training_state(
    tensors: Mapping[str, torch.Tensor],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Restore what :func:`training_state_tensors` saved into ``model`` (and ``optimizer``).

    The optimiser must be freshly built over the same parameters in the same order. Raises
    :class:`ArtifactError` when the model's state does not fit, or when the saved moments name a
    parameter the optimiser does not have.
    """
    model_state = {
        name.removeprefix(MODEL_PREFIX): value
        for name, value in tensors.items()
        if name.startswith(MODEL_PREFIX)
    }
    try:
        model.load_state_dict(model_state)
    except RuntimeError as err:
        raise ArtifactError(f"the checkpoint's model state does not fit the model: {err}") from err
    if optimizer is None:
        return
    state_dict = optimizer.state_dict()
    known = {index for group in state_dict["param_groups"] for index in group["params"]}
    restored: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if not name.startswith(OPTIMIZER_PREFIX):
            continue
        index_text, _, key = name.removeprefix(OPTIMIZER_PREFIX).partition(".")
        if not index_text.isdigit() or not key or int(index_text) not in known:
            raise ArtifactError(
                f"checkpoint tensor {name!r} names no parameter of the optimiser "
                f"(it has {len(known)} parameters); was it built over the same model?"
            )
        restored.setdefault(int(index_text), {})[key] = value
    state_dict["state"] = restored
    optimizer.load_state_dict(state_dict)
