"""Command-line plumbing shared by every package, and kernelkit's own ``kernelkit`` command.

Packages describe their configuration as dataclasses; :func:`add_dataclass_arguments` turns one
into argparse options (``--field-name``, typed, with the dataclass default and the field's
``help`` metadata) and :func:`dataclass_from_args` builds the dataclass back, so a configuration
on the command line and in Python are the same object. :func:`add_repro_and_bench` adds the two
subcommands every package has, and :func:`run` is every console script's ``main``: it parses the
command line, runs the chosen subcommand, turns a user error into one line on stderr (exit 2),
and lets only rank 0 of a multi-process job print.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "USER_ERRORS",
    "add_dataclass_arguments",
    "add_repro_and_bench",
    "dataclass_from_args",
    "is_main_process",
    "main",
    "run",
]

#: Exceptions a bad argument raises (a wrong value or type, a missing or unreadable file): the
#: console scripts report them as one line instead of a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError)


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {text!r}")


def _argument_type(annotation: Any) -> tuple[Callable[[str], Any], int | str | None]:
    """The argparse ``type`` and ``nargs`` for a field annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) != 1:
            raise TypeError(f"cannot build a CLI option for the union {annotation}")
        return _argument_type(members[0])
    if origin in (list, tuple, Sequence):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        inner, _ = _argument_type(args[0] if args else str)
        return inner, "+"
    if origin is typing.Literal:
        return type(typing.get_args(annotation)[0]), None
    if annotation is bool:
        return _parse_bool, None
    if annotation in (int, float, str, Path):
        return annotation, None
    raise TypeError(f"cannot build a CLI option for a field of type {annotation}")


def add_dataclass_arguments(
    parser: argparse.ArgumentParser, cls: type, *, prefix: str = ""
) -> None:
    """Add one ``--<prefix><field-name>`` option per field of the dataclass ``cls``."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"cls must be a dataclass type, got {cls!r}")
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        arg_type, nargs = _argument_type(hints[f.name])
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )
        kwargs: dict[str, Any] = {
            "type": arg_type,
            "dest": prefix.replace("-", "_") + f.name,
            "default": default,
            "help": f"{f.metadata.get('help', '')} (default: {default!r})".strip(),
        }
        if nargs is not None:
            kwargs["nargs"] = nargs
        if typing.get_origin(hints[f.name]) is typing.Literal:
            kwargs["choices"] = typing.get_args(hints[f.name])
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required:
            kwargs["required"] = True
            del kwargs["default"]
        group.add_argument(f"--{prefix}{f.name.replace('_', '-')}", **kwargs)


def dataclass_from_args(cls: type, namespace: argparse.Namespace, *, prefix: str = "") -> Any:
    """Build ``cls`` from options added by :func:`add_dataclass_arguments`."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        value = getattr(namespace, prefix.replace("-", "_") + f.name)
        if typing.get_origin(hints[f.name]) is tuple and value is not None:
            value = tuple(value)
        values[f.name] = value
    return cls(**values)


def add_repro_and_bench(
    subparsers: argparse._SubParsersAction,
    *,
    package: str,
    repro_run: Callable[..., Any],
    bench_run: Callable[..., Any],
) -> None:
    """Add ``repro`` (writes a report) and ``bench`` (prints ratios, optional JSON) subcommands."""
    repro = subparsers.add_parser("repro", help=f"check {package}'s headline claims at small scale")
    repro.add_argument(
        "--out", type=Path, default=Path("reports") / package, help="output directory"
    )
    repro.add_argument("--full", action="store_true", help="full mode (slower; may want a GPU)")
    repro.set_defaults(handler=lambda args: _run_repro(repro_run, args))

    bench = subparsers.add_parser("bench", help=f"time {package} against its baseline, as ratios")
    bench.add_argument("--full", action="store_true", help="full sizes (slower)")
    bench.add_argument(
        "--json", type=Path, default=None, help="also write the results as JSON here"
    )
    bench.add_argument(
        "--device", default=None, help="torch device (default: cuda if present, else cpu)"
    )
    bench.set_defaults(handler=lambda args: _run_bench(bench_run, args))


def _run_repro(repro_run: Callable[..., Any], args: argparse.Namespace) -> int:
    report = repro_run(args.out, quick=not args.full)
    print(report.summary())
    print(f"report: {args.out / 'report.md'}")
    return 0


def _run_bench(bench_run: Callable[..., Any], args: argparse.Namespace) -> int:
    from kernelkit.bench import comparisons_to_markdown

    results = bench_run(quick=not args.full, device=args.device)
    print(comparisons_to_markdown(results))
    if args.json is not None:
        from kernelkit.io import atomic_write_text

        atomic_write_text(args.json, json.dumps([r.to_dict() for r in results], indent=2))
    return 0


def is_main_process() -> bool:
    """Whether this process is rank 0 of its job (or not part of one).

    ``torchrun`` and ``accelerate launch`` set ``RANK`` in every process they start, before any
    process group exists, so this answers from the first line of a program.
    """
    return os.environ.get("RANK", "0") == "0"


def _add_debug_option(parser: argparse.ArgumentParser) -> None:
    help_text = "show the full traceback of an error instead of one line"
    parser.add_argument("--debug", action="store_true", help=help_text)
    # Also accepted after the subcommand; SUPPRESS keeps a subcommand that was not given the
    # option from resetting the top-level value.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                subparser.add_argument(
                    "--debug", action="store_true", default=argparse.SUPPRESS, help=help_text
                )


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and call the chosen subcommand's ``handler(args) -> int``.

    Adds ``--debug`` to ``parser`` and its subcommands. A :data:`USER_ERRORS` exception from the
    handler prints ``<prog>: error: <message>`` on stderr and returns 2, as argparse does for a
    malformed command line; with ``--debug`` it propagates with its traceback. In a job of several
    processes only rank 0 prints to stdout: the others compute the same result (or their share
    of it), so their copies are discarded.
    """
    _add_debug_option(parser)
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        if not is_main_process():
            devnull = stack.enter_context(open(os.devnull, "w"))
            stack.enter_context(contextlib.redirect_stdout(devnull))
        try:
            return args.handler(args)
        except USER_ERRORS as error:
            if args.debug:
                raise
            print(f"{parser.prog}: error: {error}", file=sys.stderr)
            return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``kernelkit repro`` and ``kernelkit bench``."""
    from kernelkit import __version__, bench, repro

    parser = argparse.ArgumentParser(
        prog="kernelkit", description="kernelkit's self-checks and benchmarks"
    )
    parser.add_argument("--version", action="version", version=f"kernelkit {__version__}")
    subparsers = parser.add_subparsers(required=True, metavar="command")
    add_repro_and_bench(subparsers, package="kernelkit", repro_run=repro.run, bench_run=bench.run)
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
