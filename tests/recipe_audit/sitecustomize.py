"""Per-rank audit of a recipe run, loaded at start-up by every Python process of the run.

tests/test_recipes.py puts this directory on ``PYTHONPATH`` and sets ``RECIPE_AUDIT_DIR`` and
``RECIPE_WATCH_DIR``. In each process that torchrun started (the ones with ``RANK`` set) it
records the files opened for writing or reading and the renames under the watched directory
(through ``sys.addaudithook``, so it sees what the package's code does without touching it),
copies what reaches ``sys.stdout``, and at exit writes ``rank<N>.json`` with those and the size
of the process group the rank belonged to.
"""

import atexit
import json
import os
import sys

_AUDIT = os.environ.get("RECIPE_AUDIT_DIR")
_RANK = os.environ.get("RANK")

if _AUDIT and _RANK is not None:
    _watched = os.path.realpath(os.environ["RECIPE_WATCH_DIR"]) + os.sep
    _writes: set[str] = set()
    _reads: set[str] = set()
    _quiet = False
    _WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def _inside(path: object) -> str | None:
        if not isinstance(path, str | bytes | os.PathLike):
            return None  # a file descriptor
        full = os.path.abspath(os.fsdecode(path))
        return full[len(_watched) :] if full.startswith(_watched) else None

    def _hook(event: str, args: tuple) -> None:
        if _quiet:
            return
        if event == "open":
            relative = _inside(args[0])
            if relative is not None:
                mode, flags = args[1], args[2]
                writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                    isinstance(flags, int) and flags & _WRITE_FLAGS
                )
                (_writes if writing else _reads).add(relative)
        elif event == "os.rename":
            relative = _inside(args[1])
            if relative is not None:
                _writes.add(relative)
        elif event == "tempfile.mkstemp":
            relative = _inside(args[0])
            if relative is not None:
                _writes.add(relative)

    class _Tee:
        """sys.stdout that also keeps what was printed (a rank that discards its output by
        redirecting sys.stdout elsewhere bypasses it, as it should)."""

        def __init__(self, stream):
            self._stream = stream
            self.text: list[str] = []

        def write(self, text: str) -> int:
            self.text.append(text)
            return self._stream.write(text)

        def __getattr__(self, name: str):
            return getattr(self._stream, name)

    def _world_size() -> int | None:
        """The size of the process group this rank is in at exit (None: it never joined one)."""
        distributed = sys.modules.get("torch.distributed")
        if distributed is not None and distributed.is_available() and distributed.is_initialized():
            return distributed.get_world_size()
        return None

    _stdout = _Tee(sys.stdout)
    sys.stdout = _stdout

    def _finish() -> None:
        global _quiet
        _quiet = True
        record = {
            "rank": int(_RANK),
            "world_size": _world_size(),
            "writes": sorted(_writes),
            "reads": sorted(_reads),
            "stdout": "".join(_stdout.text),
        }
        path = os.path.join(_AUDIT, f"rank{_RANK}-pid{os.getpid()}.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=1)

    sys.addaudithook(_hook)
    atexit.register(_finish)
