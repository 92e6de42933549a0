"""Artifacts on disk: tensors in safetensors plus a JSON manifest, written atomically.

An artifact is a directory holding two files:

- ``tensors.safetensors``: the tensors (never a pickle);
- ``manifest.json``: the format version, a ``kind`` naming what the artifact is, the caller's
  JSON config, each tensor's shape and dtype, and the SHA-256 of the tensor file.

A pair is *consistent* when the manifest parses and the tensor file's checksum matches it. Each
file is written to a temporary name in the same directory and renamed into place, the manifest
last, so a save is complete the moment its manifest is renamed into place.

:func:`save_artifact` runs four steps:

1. remove temporary files that killed saves left behind (``.<name>.*.tmp``);
2. if the current pair is consistent, replace the backup pair (``*.previous``) by hard links to
   it (the old backup's manifest removed first, the new backup's manifest linked last); if it is
   inconsistent (an interrupted save), leave the backup alone;
3. rename the new tensor file into place, then the new manifest (the save is complete here);
4. remove the backup pair, manifest first.

The state machine. Call ``N`` the newest complete save. The current manifest is replaced only
by step 3's last rename, so it is always ``N``'s; the current tensor file is ``N``'s, or that of
a later save interrupted after its step-3 tensor rename. A consistent current pair is therefore
``N`` itself, and the invariant every interruption preserves is:

    if the current pair is inconsistent, the backup pair is consistent and holds ``N``.

Step 2 touches only the backup and runs only while the current pair is consistent, and it has
made ``N`` the backup before step 3 can make the current pair inconsistent; when it is skipped,
the current pair is already inconsistent and, by the invariant, the backup already holds ``N``.
Step 3's manifest rename makes the current pair consistent again (a new ``N``), after which
step 4 and the next save's step 1 cannot matter. So any sequence of saves, each killed at any
point, leaves ``N`` loadable: a resumed run loses at most the save it interrupted, never an
earlier one. (Keeping an existing complete backup instead of refreshing it from a consistent
current pair, as the first version of this scheme did, breaks step 2's argument: a second
interrupted save then fell back two saves.) This holds for a killed process (SIGKILL, an
exception, Ctrl-C); across a power failure it also relies on the file system keeping the
renames in order.

:func:`load_artifact` returns the current pair when it is consistent, otherwise the backup pair
(with a warning), and reports the artifact as corrupt, instead of returning wrong weights, when
neither is. Every malformed manifest (not UTF-8 or JSON, not an object, a field missing or of the
wrong JSON type, e.g. a ``config`` that is not an object) is an :class:`ArtifactError`. A
consistent pair that is not what the caller expects (wrong ``kind`` or shapes) raises at once:
the backup is never used to hide such a mismatch.
"""

from __future__ import annotations

import contextlib
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
        _unlink(Path(tmp))
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
    if not isinstance(kind, str):
        # load_artifact refuses a manifest whose kind is not a string: this save would complete
        # and never load.
        raise TypeError(f"kind must be a str, got {type(kind).__name__} ({kind!r})")
    try:
        config_json = json.loads(json.dumps(dict(config), allow_nan=False))
    except (TypeError, ValueError, RecursionError) as err:
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
    directory.mkdir(parents=True, exist_ok=True)
    pair = (directory / TENSORS_NAME, directory / MANIFEST_NAME)
    _remove_stale_temporaries(directory)
    if _is_consistent(directory, pair[1], pair[0]):
        _replace_backup(pair)
    atomic_write_bytes(pair[0], payload)
    atomic_write_text(pair[1], json.dumps(manifest, indent=2, sort_keys=True))
    # Manifest backup first: a lone tensor backup is an incomplete pair, never loaded.
    for path in reversed(pair):
        _unlink(_backup(path))
    return directory


def _backup(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _remove_stale_temporaries(directory: Path) -> None:
    """Remove the temporary files of saves that were killed before their rename."""
    for name in (TENSORS_NAME, MANIFEST_NAME):
        for stale in directory.glob(f".{name}.*.tmp"):
            _unlink(stale)


def _replace_backup(pair: tuple[Path, Path]) -> None:
    """Make the consistent current pair the backup pair, replacing the (older) backup.

    The old backup's manifest goes first and the new backup's manifest comes last, so an
    interruption leaves at worst an incomplete backup beside a consistent current pair.
    """
    for path in reversed(pair):
        _unlink(_backup(path))
    for path in pair:
        try:
            os.link(path, _backup(path))
        except OSError:  # a file system without hard links
            shutil.copyfile(path, _backup(path))


def _is_consistent(directory: Path, manifest_path: Path, tensors_path: Path) -> bool:
    try:
        _read_consistent_pair(directory, manifest_path, tensors_path)
    except ArtifactError:
        return False
    return True


def load_artifact(
    directory: str | os.PathLike,
    *,
    kind: str | None = None,
    expected_shapes: Mapping[str, tuple[int, ...]] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load an artifact written by :func:`save_artifact`; return ``(tensors, config)``.

    Raises :class:`ArtifactError` when the artifact is inconsistent (a file missing, a malformed
    manifest, a checksum, shape or dtype that disagrees with the manifest, another format
    version) and no consistent backup pair is there (an interrupted :func:`save_artifact` leaves
    one; it is then returned with a warning), and when the consistent artifact is not what the
    caller expects: ``kind`` does not match, or a tensor named in ``expected_shapes`` is absent or
    shaped differently.
    """
    directory = Path(directory)
    manifest_path, tensors_path = directory / MANIFEST_NAME, directory / TENSORS_NAME
    try:
        manifest, tensors = _read_consistent_pair(directory, manifest_path, tensors_path)
    except ArtifactError as error:
        backups = _backup(manifest_path), _backup(tensors_path)
        if not all(path.is_file() for path in backups):
            raise
        try:
            manifest, tensors = _read_consistent_pair(directory, *backups)
        except ArtifactError:
            raise error from None
        warnings.warn(
            f"artifact {str(directory)!r} is inconsistent ({error}); loaded the complete pair "
            "kept from before an interrupted save instead",
            stacklevel=2,
        )
    _check_expectations(directory, manifest, tensors, kind, expected_shapes)
    return {name: t.to(device) for name, t in tensors.items()}, manifest["config"]


def _read_consistent_pair(
    directory: Path, manifest_path: Path, tensors_path: Path
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a manifest and its tensor file; raise :class:`ArtifactError` unless they agree."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    for path in (manifest_path, tensors_path):
        if not path.is_file():
            raise ArtifactError(
                f"artifact {str(directory)!r} has no {path.name}; expected a directory written by save_artifact"
            )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        # RecursionError: a manifest of deeply nested brackets, which the JSON parser gives up on.
        raise ArtifactError(
            f"{manifest_path} is not valid JSON (corrupt or truncated): {err}"
        ) from err
    _check_manifest_fields(manifest_path, manifest)
    if manifest["format_version"] != FORMAT_VERSION:
        raise ArtifactError(
            f"artifact {str(directory)!r} has format_version {manifest['format_version']!r}; this kernelkit reads {FORMAT_VERSION}"
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
    return manifest, tensors


_MANIFEST_FIELDS = {
    "format_version": int,
    "kind": str,
    "config": dict,
    "tensors": dict,
    "sha256": str,
}


def _check_manifest_fields(path: Path, manifest: Any) -> None:
    """Every field present with its JSON type, each tensor spec a shape list and a dtype name."""
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path} must hold a JSON object, got {type(manifest).__name__}")
    missing = sorted(set(_MANIFEST_FIELDS) - manifest.keys())
    if missing:
        raise ArtifactError(f"{path} lacks the manifest fields {', '.join(missing)}")
    for field, expected in _MANIFEST_FIELDS.items():
        value = manifest[field]
        if isinstance(value, bool) or not isinstance(value, expected):
            raise ArtifactError(
                f"{path}: manifest field {field!r} must be a JSON {expected.__name__}, got "
                f"{type(value).__name__} ({value!r:.60})"
            )
    for name, spec in manifest["tensors"].items():
        shape = spec.get("shape") if isinstance(spec, dict) else None
        dtype = spec.get("dtype") if isinstance(spec, dict) else None
        valid_shape = isinstance(shape, list) and all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
        )
        if not valid_shape or not isinstance(dtype, str):
            raise ArtifactError(
                f"{path}: tensor {name!r} must be described as {{'shape': [non-negative ints], "
                f"'dtype': str}}, got {spec!r:.80}"
            )


def _check_expectations(
    directory: Path,
    manifest: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    kind: str | None,
    expected_shapes: Mapping[str, tuple[int, ...]] | None,
) -> None:
    if kind is not None and manifest["kind"] != kind:
        raise ArtifactError(
            f"artifact {str(directory)!r} is a {manifest['kind']!r}, expected a {kind!r}"
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
