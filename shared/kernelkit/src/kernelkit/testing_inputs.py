"""A bad-input harness: every public function either rejects a bad input clearly or handles it.

A package declares its public functions as :class:`PublicFunction` entries: how to call it, a
hypothesis strategy of valid keyword arguments, and what each argument is (a float tensor, an
id tensor, a count, a real number, a choice, a callable, a graph). From those declarations the
harness derives bad variants: wrong ndim, wrong dtype, NaN and ±inf, zero-size dimensions, ids
out of range, counts too small or too large, ``None`` for a required argument. Each variant is
called once per drawn example and the outcome is one of

- **clear error**: a ``ValueError`` or ``TypeError`` whose message names the argument (for a
  variant that may be valid on its own, such as an empty batch, naming another declared argument
  it clashes with will do);
- **correct result**: the call returns and the result passes the postcondition (by default:
  every floating tensor and float in it is finite, and for variants that keep the shape, the
  result has the shape and the floating-ness of the result for the valid input);
- **failure**: any other exception (an *unclear crash*), a ``ValueError``/``TypeError`` that does
  not name the argument, a result that fails the postcondition or a value accepted that has no
  correct result (an id out of range, a count below its minimum: a *silent wrong result*), or a
  call that runs past its time limit.

Some variants have no correct result and must raise (ids out of range, a wrong ndim, an id
tensor of floats, ``None``, counts out of range, NaN where the argument says ``nan="raise"``);
the others (a float64 tensor where float32 was declared, an empty batch) may be accepted if the
result is right. An argument declared ``nan="propagate"`` documents that NaN flows through to the
output, like ``torch.cumsum``; the result may then hold NaN, and must still have the right shape.

Each call is bounded in time: in the main thread by ``SIGALRM`` (``signal.setitimer``), which
interrupts Python code but lets a running C kernel finish first; elsewhere (no signals off the
main thread) the call runs in a daemon thread that is abandoned when it overruns. A timed-out
call counts as a failure.

Draws are derandomised (``derandomize=True``, no example database), so the counts in a
:class:`Tally` are the same on every run; ``examples`` sets how many valid inputs each variant is
tried on. Hypothesis is imported inside the functions that need it, like the rest of
:mod:`kernelkit.testing`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import signal
import threading
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "CallableArg",
    "ChoiceArg",
    "CountArg",
    "GraphArg",
    "IdsArg",
    "PublicFunction",
    "RealArg",
    "Tally",
    "TensorArg",
    "assert_handles_bad_inputs",
    "call_with_timeout",
    "check_bad_inputs",
    "uncovered_names",
]


class CallTimeout(BaseException):
    """Raised inside a call that ran past its limit. A ``BaseException``, so that a function's
    own ``except Exception`` does not swallow it."""


# --------------------------------------------------------------------------------------------
# Argument declarations


@dataclass(frozen=True)
class TensorArg:
    """A floating tensor argument.

    ``dtypes`` are the dtypes the function supports (others are tried as bad variants: int64,
    bool, float16, float64); ``ndim`` the accepted numbers of dimensions (``None``: any, so no
    ndim variants); ``nan`` is ``"raise"`` (NaN must give a clear error) or ``"propagate"``
    (the documented policy is that it flows through to the result); ``inf`` likewise for ±inf
    (default: as ``nan``); ``empty`` whether to try zero-size dimensions; ``optional`` whether
    ``None`` is a valid value. ``min_ndim`` (with ``ndim=None``) says "at least this many
    dimensions": one fewer is tried, and must raise.
    """

    dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64)
    ndim: int | tuple[int, ...] | None = None
    min_ndim: int | None = None
    nan: str = "raise"
    inf: str | None = None
    empty: bool = True
    optional: bool = False

    def __post_init__(self) -> None:
        for name in ("nan", "inf"):
            policy = getattr(self, name)
            if policy not in ("raise", "propagate") and not (name == "inf" and policy is None):
                raise ValueError(f"{name} must be 'raise' or 'propagate', got {policy!r}")


@dataclass(frozen=True)
class IdsArg:
    """An integer tensor of ids (token ids, node indices, labels) in ``[low, high)``.

    ``high`` may be a callable of the drawn keyword arguments (say, the number of nodes), or
    ``None`` when there is no upper limit (group labels of any size). Ids below ``low`` or at
    ``high``, float or bool id tensors and ``None`` must all raise; a wrong ``ndim`` must raise
    when ``ndim`` is given. ``float_ok`` is for labels that may come as whole-number floats
    (0./1. outcomes): float and bool tensors may then be handled, and a NaN among the float
    labels must raise.
    """

    high: int | Callable[[Mapping[str, Any]], int] | None
    low: int = 0
    ndim: int | tuple[int, ...] | None = None
    empty: bool = True
    optional: bool = False
    float_ok: bool = False


@dataclass(frozen=True)
class CountArg:
    """An int argument (a ``k``, a number of rounds, parts, slots) in ``[low, high]``.

    ``low`` and ``high`` may be callables of the drawn keyword arguments (a bound that depends on
    another count); ``None`` means no upper limit
    (then no too-large variant is tried: an honest large count may simply take long).
    """

    low: int | Callable[[Mapping[str, Any]], int] = 1
    high: int | Callable[[Mapping[str, Any]], int] | None = None
    optional: bool = False


@dataclass(frozen=True)
class RealArg:
    """A Python float argument (a temperature, a probability, a margin) in ``[low, high]``.

    NaN must raise; ``inf`` must raise unless ``allow_inf``; values just outside the bounds must
    raise.
    """

    low: float | None = None
    high: float | None = None
    allow_inf: bool = False
    optional: bool = False


@dataclass(frozen=True)
class ChoiceArg:
    """A string naming one of several options: an unknown name must raise."""

    optional: bool = False


@dataclass(frozen=True)
class CallableArg:
    """A function argument (an aggregator, an operator): ``None`` or a non-callable must raise."""

    optional: bool = False


@dataclass(frozen=True)
class GraphArg:
    """A networkx graph: ``None`` and a non-graph must raise; a graph without nodes may be
    handled or rejected."""

    empty: bool = True
    optional: bool = False


ArgSpec = TensorArg | IdsArg | CountArg | RealArg | ChoiceArg | CallableArg | GraphArg


@dataclass(frozen=True)
class PublicFunction:
    """One public function (or method, or callable object) as the harness sees it.

    ``name`` is the public name in the package's ``__all__`` (``"Class.method"`` for a method of
    a public class); ``call`` is called with the drawn keyword arguments (an adapter lambda when
    the public signature takes a container, such as a list of graphs built from drawn tensors);
    ``valid`` is a hypothesis strategy of keyword-argument dicts, or a zero-argument factory of
    one; ``args`` declares the arguments to vary, by name. ``postcondition(result, kwargs)``
    raises ``AssertionError`` when a result is wrong; it runs after the default check (finite,
    shape). ``examples`` overrides the harness-wide number of drawn inputs per variant (one for
    a function that trains). ``allow_inf=True`` lets results hold ±inf (never NaN), for
    functions where infinity is a meaningful value (a vacuous bound).
    """

    name: str
    call: Callable[..., Any]
    valid: Any
    args: Mapping[str, ArgSpec]
    postcondition: Callable[[Any, Mapping[str, Any]], None] | None = None
    timeout: float = 30.0
    examples: int | None = None
    allow_inf: bool = False


# --------------------------------------------------------------------------------------------
# Variants


@dataclass(frozen=True)
class _Variant:
    arg: str
    label: str
    must_raise: bool
    keeps_shape: bool
    # (value, draw, kwargs) -> bad value
    make: Callable[[Any, Callable, Mapping[str, Any]], Any]
    allows_nonfinite: bool = False


# Returned by a variant that does not apply to the drawn value (NaN in an empty tensor); the
# example is then skipped, not counted.
_NOT_APPLICABLE = object()


def _resolve(bound, kwargs: Mapping[str, Any]):
    return bound(kwargs) if callable(bound) else bound


def _ndims(ndim) -> tuple[int, ...] | None:
    if ndim is None:
        return None
    return (ndim,) if isinstance(ndim, int) else tuple(ndim)


def _with_ndim(x: torch.Tensor, target: int) -> torch.Tensor:
    if target > x.ndim:
        return x.reshape((1,) * (target - x.ndim) + tuple(x.shape)).repeat(
            (2,) + (1,) * (target - 1)
        )
    if target == 0:
        return x.reshape(-1)[0].clone() if x.numel() else _NOT_APPLICABLE
    return x.reshape(*x.shape[: target - 1], -1).clone()


def _ndim_variants(arg: str, ndims: tuple[int, ...] | None) -> list[_Variant]:
    if ndims is None:
        return []
    out = []
    for target in sorted({min(ndims) - 1, max(ndims) + 1}):
        if target < 0 or target in ndims:
            continue
        out.append(
            _Variant(arg, f"ndim {target}", True, False, lambda x, d, k, t=target: _with_ndim(x, t))
        )
    return out


def _poke(x: torch.Tensor, draw, value: float) -> torch.Tensor:
    from hypothesis import strategies as st

    if x.numel() == 0:
        return _NOT_APPLICABLE
    y = x.clone().contiguous()
    y.view(-1)[draw(st.integers(0, y.numel() - 1))] = value
    return y


class _EachOf(list):
    """Several bad values from one variant, each called and counted on its own."""


def _empty(x: torch.Tensor) -> torch.Tensor | _EachOf:
    # Every dimension in turn, not a drawn one: emptying the batch may be handled where emptying
    # the features must raise, so a drawn choice would make the counts depend on the draw.
    if x.ndim == 0:
        return x.reshape(-1)[:0]
    return _EachOf(x.narrow(dim, 0, 0).clone() for dim in range(x.ndim))


def _tensor_variants(arg: str, spec: TensorArg) -> list[_Variant]:
    out = _ndim_variants(arg, _ndims(spec.ndim))
    if spec.ndim is None and spec.min_ndim:
        out.append(
            _Variant(
                arg,
                f"ndim {spec.min_ndim - 1}",
                True,
                False,
                lambda x, d, k: _with_ndim(x, spec.min_ndim - 1),
            )
        )
    for dtype in (torch.int64, torch.bool, torch.float16, torch.float64):
        if dtype in spec.dtypes:
            continue
        make = (lambda x, d, k: x > 0) if dtype == torch.bool else lambda x, d, k, t=dtype: x.to(t)
        out.append(_Variant(arg, f"dtype {str(dtype).removeprefix('torch.')}", False, True, make))
    non_finite = (("NaN", math.nan), ("+inf", math.inf), ("-inf", -math.inf))
    if not any(dtype.is_floating_point for dtype in spec.dtypes):
        non_finite = ()  # a bool or integer tensor cannot hold NaN
    for label, value in non_finite:
        policy = spec.nan if label == "NaN" else (spec.inf or spec.nan)
        propagate = policy == "propagate"
        out.append(
            _Variant(
                arg,
                label,
                not propagate,
                True,
                lambda x, d, k, v=value: _poke(x, d, v),
                allows_nonfinite=propagate,
            )
        )
    if spec.empty:
        out.append(_Variant(arg, "zero-size dim", False, False, lambda x, d, k: _empty(x)))
    return out


def _ids_variants(arg: str, spec: IdsArg) -> list[_Variant]:
    out = _ndim_variants(arg, _ndims(spec.ndim))
    out.append(
        _Variant(arg, "id below range", True, True, lambda x, d, k: _poke(x, d, spec.low - 1))
    )
    if spec.high is not None:
        out.append(
            _Variant(
                arg,
                "id at upper bound",
                True,
                True,
                lambda x, d, k: _poke(x, d, _resolve(spec.high, k)),
            )
        )
    strict = not spec.float_ok
    out.append(_Variant(arg, "dtype float32", strict, True, lambda x, d, k: x.to(torch.float32)))
    out.append(_Variant(arg, "dtype bool", strict, True, lambda x, d, k: x > 0))
    if spec.float_ok:
        out.append(
            _Variant(
                arg, "NaN", True, True, lambda x, d, k: _poke(x.to(torch.float32), d, math.nan)
            )
        )
    if spec.empty:
        out.append(_Variant(arg, "zero-size dim", False, False, lambda x, d, k: _empty(x)))
    return out


def _count_variants(arg: str, spec: CountArg) -> list[_Variant]:
    def low(kwargs):
        return _resolve(spec.low, kwargs)

    out = [
        _Variant(arg, "count below minimum", True, False, lambda x, d, k: low(k) - 1),
        _Variant(arg, "count -5", True, False, lambda x, d, k: min(-5, low(k) - 1)),
        _Variant(
            arg,
            "count as float",
            True,
            False,
            lambda x, d, k: (low(k) if x is None else float(x)) + 0.5,
        ),
    ]
    if spec.high is not None:
        out.append(
            _Variant(
                arg, "count above maximum", True, False, lambda x, d, k: _resolve(spec.high, k) + 1
            )
        )
    return out


def _real_variants(arg: str, spec: RealArg) -> list[_Variant]:
    out = [_Variant(arg, "NaN", True, False, lambda x, d, k: math.nan)]
    if not spec.allow_inf:
        out.append(_Variant(arg, "+inf", True, False, lambda x, d, k: math.inf))
    if spec.low is not None:
        below = spec.low - max(1.0, abs(spec.low))
        out.append(_Variant(arg, "below range", True, False, lambda x, d, k: below))
    if spec.high is not None:
        above = spec.high + max(1.0, abs(spec.high))
        out.append(_Variant(arg, "above range", True, False, lambda x, d, k: above))
    return out


def _graph_variants(arg: str, spec: GraphArg) -> list[_Variant]:
    out = [_Variant(arg, "not a graph", True, False, lambda x, d, k: [(0, 1)])]
    if spec.empty:
        out.append(_Variant(arg, "no nodes", False, False, lambda x, d, k: type(x)()))
    return out


def variants(function: PublicFunction) -> list[_Variant]:
    """The bad variants the harness derives for ``function``, in a fixed order."""
    out: list[_Variant] = []
    for arg, spec in function.args.items():
        if isinstance(spec, TensorArg):
            out += _tensor_variants(arg, spec)
        elif isinstance(spec, IdsArg):
            out += _ids_variants(arg, spec)
        elif isinstance(spec, CountArg):
            out += _count_variants(arg, spec)
        elif isinstance(spec, RealArg):
            out += _real_variants(arg, spec)
        elif isinstance(spec, ChoiceArg):
            out.append(
                _Variant(arg, "unknown choice", True, False, lambda x, d, k: "no-such-option")
            )
        elif isinstance(spec, CallableArg):
            out.append(_Variant(arg, "not callable", True, False, lambda x, d, k: 3))
        elif isinstance(spec, GraphArg):
            out += _graph_variants(arg, spec)
        else:
            raise TypeError(f"args[{arg!r}] must be an argument declaration, got {spec!r}")
        if not spec.optional:
            out.append(_Variant(arg, "None", True, False, lambda x, d, k: None))
    return out


# --------------------------------------------------------------------------------------------
# Calling and judging


def call_with_timeout(fn: Callable[..., Any], kwargs: Mapping[str, Any], seconds: float) -> Any:
    """``fn(**kwargs)``, raising :class:`CallTimeout` when it runs longer than ``seconds``.

    In the main thread a ``SIGALRM`` timer interrupts the call at the next Python bytecode;
    elsewhere the call runs in a daemon thread which is left behind if it overruns.
    """
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):

        def on_alarm(signum, frame):
            raise CallTimeout(f"call ran past {seconds} s")

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return fn(**kwargs)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    box: dict[str, Any] = {}

    def target():
        try:
            box["result"] = fn(**kwargs)
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise CallTimeout(f"call ran past {seconds} s")
    if "error" in box:
        raise box["error"]
    return box.get("result")


def _leaves(value: Any, path: str = "result", depth: int = 0):
    """Tensors and floats inside a result, with where they sit (tuples, dicts, dataclasses)."""
    if depth > 6:
        return
    if isinstance(value, torch.Tensor):
        yield path, value
    elif isinstance(value, bool | int | str | bytes) or value is None:
        return
    elif isinstance(value, float):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{path}[{key!r}]", depth + 1)
    elif isinstance(value, tuple | list):
        for i, item in enumerate(value[:64]):
            yield from _leaves(item, f"{path}[{i}]", depth + 1)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _leaves(getattr(value, f.name), f"{path}.{f.name}", depth + 1)


def _finite(value, allow_inf: bool = False) -> bool:
    if isinstance(value, float):
        return not math.isnan(value) if allow_inf else math.isfinite(value)
    if value.is_floating_point() or value.is_complex():
        return bool((~torch.isnan(value) if allow_inf else torch.isfinite(value)).all())
    return True


def _default_postcondition(
    result, baseline, variant: _Variant | None, allow_inf: bool = False
) -> None:
    leaves = dict(_leaves(result))
    if variant is None or not variant.allows_nonfinite:
        for path, leaf in leaves.items():
            assert _finite(leaf, allow_inf), f"{path} is not finite"
    if variant is None or not variant.keeps_shape:
        return
    expected = dict(_leaves(baseline))
    assert leaves.keys() == expected.keys(), (
        f"result has parts {sorted(leaves)}, the valid input gave {sorted(expected)}"
    )
    for path, leaf in leaves.items():
        want = expected[path]
        if isinstance(leaf, torch.Tensor) and isinstance(want, torch.Tensor):
            assert leaf.shape == want.shape, (
                f"{path} has shape {tuple(leaf.shape)}, expected {tuple(want.shape)}"
            )
            assert leaf.is_floating_point() == want.is_floating_point(), (
                f"{path} has dtype {leaf.dtype}; the valid input gave {want.dtype}"
            )
        else:
            assert type(leaf) is type(want), f"{path} is a {type(leaf).__name__}"


def _names(message: str, arg: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(arg)}(?![A-Za-z0-9_])", message) is not None


@dataclass
class Tally:
    """Outcomes of the calls the harness made: counts, and one line per failure."""

    tried: int = 0
    clear_errors: int = 0
    correct_results: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.tried += other.tried
        self.clear_errors += other.clear_errors
        self.correct_results += other.correct_results
        self.failures += other.failures

    @property
    def unclear(self) -> int:
        return self.tried - self.clear_errors - self.correct_results


def _judge(function: PublicFunction, variant: _Variant, kwargs, baseline) -> str | None:
    """``"error"``, ``"result"``, or a failure message."""
    where = f"{function.name}: {variant.arg} = <{variant.label}>"
    try:
        result = call_with_timeout(function.call, kwargs, function.timeout)
    except CallTimeout:
        return f"{where}: ran past {function.timeout} s"
    except (ValueError, TypeError) as exc:
        # A variant that may be valid on its own (an empty batch) can clash with another
        # argument; the error may then name that one.
        named = [variant.arg] if variant.must_raise else list(function.args)
        if any(_names(str(exc), arg) for arg in named):
            return "error"
        return f"{where}: {type(exc).__name__} does not name {variant.arg!r}: {exc}"
    except Exception as exc:
        return f"{where}: unclear crash {type(exc).__name__}: {str(exc)[:300]}"
    if variant.must_raise:
        return f"{where}: accepted without an error (returned {_summary(result)})"
    try:
        _default_postcondition(result, baseline, variant, function.allow_inf)
        if function.postcondition is not None:
            function.postcondition(result, kwargs)
    except AssertionError as exc:
        return f"{where}: silent wrong result: {exc}"
    return "result"


def _summary(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor {tuple(value.shape)} {value.dtype}"
    return type(value).__name__


def _strategy(valid):
    from hypothesis import strategies as st

    if isinstance(valid, st.SearchStrategy):
        return valid
    return st.builds(valid)


def check_bad_inputs(
    functions: Sequence[PublicFunction], *, examples: int = 2, only: str | None = None
) -> dict[str, Tally]:
    """Call every bad variant of every function on ``examples`` drawn valid inputs.

    Returns one :class:`Tally` per function name. The drawn valid inputs are called as they are
    too (for the first variant, and for every variant whose result is compared with theirs); a
    valid input that fails counts as a failure (of the function or of its declaration).
    ``only`` restricts the run to one function name (for debugging a declaration).
    """
    tallies: dict[str, Tally] = {}
    for function in functions:
        if only is not None and function.name != only:
            continue
        tally = tallies.setdefault(function.name, Tally())
        strategy = _strategy(function.valid)
        for i, variant in enumerate(variants(function)):
            _run_variant(function, variant, strategy, tally, function.examples or examples, i == 0)
    return tallies


def _run_variant(
    function, variant, strategy, tally: Tally, examples: int, check_valid: bool
) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data):
        kwargs = dict(data.draw(strategy, label="valid"))
        baseline = None
        if check_valid or variant.keeps_shape:
            try:
                baseline = call_with_timeout(function.call, dict(kwargs), function.timeout)
                _default_postcondition(baseline, None, None, function.allow_inf)
                if function.postcondition is not None:
                    function.postcondition(baseline, kwargs)
            except (Exception, CallTimeout) as exc:
                tally.failures.append(
                    f"{function.name}: the valid input failed: {type(exc).__name__}: {exc}"
                )
                return
        made = variant.make(kwargs[variant.arg], data.draw, kwargs)
        if made is _NOT_APPLICABLE:
            return
        for value in made if isinstance(made, _EachOf) else [made]:
            tally.tried += 1
            outcome = _judge(function, variant, {**kwargs, variant.arg: value}, baseline)
            if outcome == "error":
                tally.clear_errors += 1
            elif outcome == "result":
                tally.correct_results += 1
            else:
                tally.failures.append(outcome)

    run()


def assert_handles_bad_inputs(functions: Sequence[PublicFunction], *, examples: int = 2) -> Tally:
    """Run :func:`check_bad_inputs` and fail with every failure listed; returns the total."""
    total = Tally()
    for tally in check_bad_inputs(functions, examples=examples).values():
        total.add(tally)
    if total.failures:
        unique = list(dict.fromkeys(total.failures))
        listing = "\n  ".join(unique[:60])
        more = f"\n  ... and {len(unique) - 60} more" if len(unique) > 60 else ""
        raise AssertionError(f"{len(total.failures)} bad-input failures:\n  {listing}{more}")
    return total


def uncovered_names(
    module: types.ModuleType, functions: Sequence[PublicFunction], exempt: Mapping[str, str]
) -> list[str]:
    """Problems with a package's declarations, as sentences (empty when complete).

    Every name in ``module.__all__`` must be registered (by its name, or as ``Name.method``) or
    exempt with a non-empty reason; registered and exempt names must exist in ``__all__``.
    """
    public = set(module.__all__)
    registered = {f.name.split(".")[0] for f in functions}
    problems = []
    for name in sorted(public - registered - set(exempt)):
        problems.append(f"{module.__name__}.{name} is public but neither registered nor exempt")
    for name in sorted((registered | set(exempt)) - public):
        problems.append(f"{name} is registered or exempt but not in {module.__name__}.__all__")
    for name in sorted(registered & set(exempt)):
        problems.append(f"{name} is both registered and exempt")
    for name, reason in exempt.items():
        if not reason.strip():
            problems.append(f"{name} is exempt without a reason")
    return problems
