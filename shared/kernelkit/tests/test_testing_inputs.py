"""The bad-input harness catches a sloppy function and passes a careful one."""

import math
import time
import types

import pytest
import torch
from hypothesis import strategies as st

from kernelkit.testing import (
    CallableArg,
    ChoiceArg,
    CountArg,
    GraphArg,
    IdsArg,
    PublicFunction,
    RealArg,
    TensorArg,
    assert_handles_bad_inputs,
    call_with_timeout,
    check_bad_inputs,
    tensors,
    uncovered_names,
)
from kernelkit.validation import (
    check_finite,
    check_floating,
    check_index_range,
    check_int_in_range,
    check_ndim,
    check_real_in_range,
)


def sloppy_top_rows(x, ids, k, scale):
    """Sum the rows ``ids`` of ``x`` and keep the ``k`` largest entries: no checks at all."""
    return x[ids].sum(0).topk(k).values * scale


def careful_top_rows(x, ids, k, scale):
    """The same, with every argument checked first."""
    check_floating("x", x, (torch.float32, torch.float64))
    check_ndim("x", x, 2)
    check_finite("x", x)
    check_index_range("ids", ids, x.shape[0])
    check_ndim("ids", ids, 1)
    check_int_in_range("k", k, 1, x.shape[1])
    check_real_in_range("scale", scale, 0.0)
    return x[ids].sum(0).topk(k).values * scale


def valid_rows():
    @st.composite
    def build(draw):
        rows, cols = draw(st.integers(1, 4)), draw(st.integers(1, 5))
        x = draw(tensors(shape=(rows, cols)))
        ids = torch.tensor(draw(st.lists(st.integers(0, rows - 1), min_size=1, max_size=4)))
        return {"x": x, "ids": ids, "k": draw(st.integers(1, cols)), "scale": 2.0}

    return build()


ROW_ARGS = {
    "x": TensorArg(ndim=2),
    "ids": IdsArg(high=lambda kw: kw["x"].shape[0], ndim=1),
    "k": CountArg(low=1, high=lambda kw: kw["x"].shape[1]),
    "scale": RealArg(low=0.0),
}


def test_sloppy_function_is_caught():
    sloppy = PublicFunction("sloppy_top_rows", sloppy_top_rows, valid_rows(), ROW_ARGS)
    tally = check_bad_inputs([sloppy])["sloppy_top_rows"]
    text = "\n".join(tally.failures)
    assert tally.unclear == len(tally.failures) > 0
    # The ways it goes wrong, each named: a wrapped id, a bare IndexError, NaN passed through,
    # a float id tensor and a NaN scale accepted.
    assert "ids = <id below range>: accepted without an error" in text
    assert "ids = <id at upper bound>: unclear crash IndexError" in text
    assert "x = <NaN>: accepted without an error" in text
    assert "scale = <NaN>: accepted without an error" in text
    assert "k = <count below minimum>" in text
    with pytest.raises(AssertionError, match="bad-input failures"):
        assert_handles_bad_inputs([sloppy])


def test_careful_function_passes_and_is_counted():
    careful = PublicFunction("careful_top_rows", careful_top_rows, valid_rows(), ROW_ARGS)
    total = assert_handles_bad_inputs([careful], examples=2)
    assert total.failures == [] and total.unclear == 0
    assert total.tried == total.clear_errors + total.correct_results > 30
    # float64 input and zero-size inputs may be handled; x of dtype float64 is one of them.
    assert total.correct_results > 0


def test_error_must_name_the_argument():
    def vague(x):
        if not bool(torch.isfinite(x).all()):
            raise ValueError("bad input")
        return x.sum()

    function = PublicFunction(
        "vague", vague, st.builds(lambda: {"x": torch.ones(3)}), {"x": TensorArg(ndim=1)}
    )
    failures = check_bad_inputs([function], examples=1)["vague"].failures
    assert any("ValueError does not name 'x': bad input" in f for f in failures)


def test_nan_propagation_is_allowed_only_when_declared():
    def cumsum(x):
        check_floating("x", x)
        check_ndim("x", x, 1)
        return torch.cumsum(x, 0)

    valid = st.builds(lambda: {"x": torch.arange(4.0)})
    strict = PublicFunction("cumsum", cumsum, valid, {"x": TensorArg(ndim=1)})
    declared = PublicFunction("cumsum", cumsum, valid, {"x": TensorArg(ndim=1, nan="propagate")})
    assert any("<NaN>" in f for f in check_bad_inputs([strict])["cumsum"].failures)
    assert check_bad_inputs([declared])["cumsum"].failures == []


def test_integer_result_from_float_function_is_a_silent_wrong_result():
    def rotate(x):  # keeps the dtype it was given, so ints come back truncated
        check_ndim("x", x, 2)
        if x.is_floating_point():
            check_finite("x", x)
        return x @ torch.tensor([[0.0, -1.0], [1.0, 0.0]]).to(x.dtype)

    function = PublicFunction(
        "rotate", rotate, st.builds(lambda: {"x": torch.ones(3, 2)}), {"x": TensorArg(ndim=2)}
    )
    failures = check_bad_inputs([function], examples=1)["rotate"].failures
    assert any("dtype int64>: silent wrong result" in f for f in failures)


def test_other_argument_kinds():
    import networkx as nx

    def nodes(graph, agg, method):
        if not isinstance(graph, nx.Graph):
            raise TypeError(f"graph must be a networkx graph, got {type(graph).__name__}")
        if not callable(agg):
            raise TypeError(f"agg must be callable, got {agg!r}")
        if method not in ("sum", "max"):
            raise ValueError(f"method must be 'sum' or 'max', got {method!r}")
        return float(agg([1.0] * graph.number_of_nodes() + [0.0]))

    function = PublicFunction(
        "nodes",
        nodes,
        st.builds(lambda: {"graph": nx.path_graph(3), "agg": sum, "method": "sum"}),
        {"graph": GraphArg(), "agg": CallableArg(), "method": ChoiceArg()},
    )
    total = assert_handles_bad_inputs([function], examples=1)
    assert total.tried == 7 and total.correct_results == 1  # the graph without nodes


def test_calls_are_bounded_in_time():
    def spin(n):  # never returns for n < 1
        while n < 1:
            pass
        return float(n)

    start = time.perf_counter()
    function = PublicFunction(
        "spin", spin, st.builds(lambda: {"n": 1}), {"n": CountArg()}, timeout=0.2
    )
    failures = check_bad_inputs([function], examples=1)["spin"].failures
    assert failures[:2] == [
        "spin: n = <count below minimum>: ran past 0.2 s",
        "spin: n = <count -5>: ran past 0.2 s",
    ]
    assert time.perf_counter() - start < 20
    assert call_with_timeout(lambda a: a + 1, {"a": 1}, 1.0) == 2


def test_timeout_off_the_main_thread():
    import threading

    box = {}

    def worker():
        try:
            call_with_timeout(lambda: time.sleep(5), {}, 0.1)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(10)
    assert type(box["error"]).__name__ == "CallTimeout"


def test_coverage_finds_unregistered_and_stale_names():
    module = types.ModuleType("toy")
    module.__all__ = ["f", "g", "Config", "h"]
    function = PublicFunction("f", careful_top_rows, valid_rows(), ROW_ARGS)
    method = PublicFunction("Config.apply", careful_top_rows, valid_rows(), ROW_ARGS)
    problems = uncovered_names(module, [function, method], {"g": "a constant", "gone": "old"})
    assert problems == [
        "toy.h is public but neither registered nor exempt",
        "gone is registered or exempt but not in toy.__all__",
    ]
    assert uncovered_names(module, [function], {"g": " ", "Config": "x", "h": "y"}) == [
        "g is exempt without a reason"
    ]


def test_shared_validators():
    with pytest.raises(ValueError, match=r"ids must hold ids in \[0, 3\); found -1"):
        check_index_range("ids", torch.tensor([0, -1]), 3)
    with pytest.raises(TypeError, match=r"ids must have an integer dtype, got torch\.float32"):
        check_index_range("ids", torch.tensor([0.0]), 3)
    with pytest.raises(TypeError, match=r"ids must have an integer dtype, got torch\.bool"):
        check_index_range("ids", torch.tensor([True]), 3)
    assert check_index_range("ids", torch.zeros(0, dtype=torch.long), 0).numel() == 0
    with pytest.raises(ValueError, match="t must be a finite number, got nan"):
        check_real_in_range("t", math.nan)
    with pytest.raises(ValueError, match=r"t must lie in \[0.0, 1.0\], got 2.0"):
        check_real_in_range("t", 2, 0.0, 1.0)
    with pytest.raises(TypeError, match="t must be a real number, got bool"):
        check_real_in_range("t", True)
    assert check_real_in_range("t", math.inf, allow_inf=True) == math.inf
