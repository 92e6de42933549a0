"""A torch-like API that traces projection graphs.

Every function accepts plain tensors or graph nodes. With plain tensors it simply computes the
result with torch (so one model definition serves for evaluation and for Adam training through
autograd); when any argument is a :class:`~pjax_torch.graph.Node` it returns a node and the call
becomes part of the traced graph. Tensors mixed with nodes become constants.

Shape changes (``reshape``, ``permute``, ``broadcast_to``, ``repeat``, ``concatenate``,
``stack``, ``index``, ``conv_patches``) become transforms whose adjoints sum copies, so a value
used many times (a weight broadcast over the batch, a token embedded twice, a pixel in
overlapping patches) is recovered as the mean of its copies.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from kernelkit.validation import check_finite, check_floating, check_int_in_range
from pjax_torch.graph import Constant, Node, Operation, Parameter, Transform
from pjax_torch.ops import get_operation
from pjax_torch.ops import quantize as quantize_op
from pjax_torch.ops._labels import check_logits_and_labels

__all__ = [
    "add",
    "apply_operation",
    "broadcast_to",
    "concatenate",
    "constant",
    "conv_patches",
    "cross_entropy",
    "dot",
    "identity",
    "index",
    "margin_loss",
    "matmul",
    "max",
    "max_pool2d",
    "maximum",
    "parameter",
    "permute",
    "quantize",
    "regression_target",
    "relu",
    "repeat",
    "reshape",
    "sign",
    "stack",
    "sum",
    "sum_relu",
    "transpose",
]

Value = torch.Tensor | Node


def broadcast_shape(*shapes: Sequence[int]) -> tuple[int, ...]:
    """The broadcast of ``shapes`` (numpy rules); ``ValueError`` if they do not broadcast.

    Written out because ``torch.broadcast_shapes`` imports sympy on first use (seconds).
    """
    ndim = builtins.max((len(s) for s in shapes), default=0)
    result = []
    for axis in range(-ndim, 0):
        sizes = {s[axis] for s in shapes if len(s) >= -axis} - {1}
        if len(sizes) > 1:
            raise ValueError(f"shapes {[tuple(s) for s in shapes]} do not broadcast together")
        result.append(sizes.pop() if sizes else 1)
    return tuple(result)


def _traced(*values: object) -> bool:
    return any(isinstance(v, Node) for v in values)


def _node(value: Value, name: str = "value") -> Node:
    if isinstance(value, Node):
        return value
    if isinstance(value, torch.Tensor):
        return Constant(value)
    raise TypeError(f"{name} must be a torch.Tensor or a graph Node, got {type(value).__name__}")


def _check_value(name: str, value: object, *, floating: bool = False) -> None:
    if not isinstance(value, torch.Tensor | Node):
        raise TypeError(
            f"{name} must be a torch.Tensor or a graph Node, got {type(value).__name__}"
        )
    if floating and isinstance(value, torch.Tensor):
        check_floating(name, value)


def parameter(value: torch.Tensor, name: str) -> Parameter:
    """A trainable leaf named ``name``."""
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise TypeError(f"parameter {name!r} must be a floating-point tensor, got {value!r:.80}")
    return Parameter(value, name)


def constant(value: torch.Tensor, name: str | None = None) -> Constant:
    """A data leaf (its own node, even if another constant holds equal values)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"constant must be a torch.Tensor, got {type(value).__name__}")
    return Constant(value, name)


def apply_operation(name: str, *inputs: Value, **kwargs) -> Value:
    """Apply the registered operation ``name``; raises ``UnknownOperationError`` if there is none."""
    spec = get_operation(name)
    if len(inputs) != spec.num_inputs:
        raise ValueError(f"operation {name!r} takes {spec.num_inputs} inputs, got {len(inputs)}")
    if not _traced(*inputs):
        return spec.forward(*inputs, **kwargs)
    return Operation(spec, [_node(v, f"input {i}") for i, v in enumerate(inputs)], kwargs)


# --- shape transforms ------------------------------------------------------------------------


def reshape(a: Value, shape: Sequence[int]) -> Value:
    _check_value("a", a)
    if not _traced(a):
        return a.reshape(shape)
    source_shape = a.shape
    return Transform(
        "reshape", [a], lambda x: x.reshape(shape), lambda g: (g.reshape(source_shape),)
    )


def permute(a: Value, dims: Sequence[int]) -> Value:
    _check_value("a", a)
    dims = tuple(d % a.ndim for d in dims)
    if sorted(dims) != list(range(a.ndim)):
        raise ValueError(f"dims must be a permutation of range({a.ndim}), got {dims}")
    if not _traced(a):
        return a.permute(dims)
    inverse = tuple(sorted(range(len(dims)), key=dims.__getitem__))
    return Transform("permute", [a], lambda x: x.permute(dims), lambda g: (g.permute(inverse),))


def transpose(a: Value, dim0: int = -2, dim1: int = -1) -> Value:
    dims = list(range(a.ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return permute(a, dims)


def broadcast_to(a: Value, shape: Sequence[int]) -> Value:
    """Broadcast like ``torch.expand``; the adjoint sums over the broadcast axes."""
    _check_value("a", a)
    shape = tuple(shape)
    try:
        reachable = broadcast_shape(tuple(a.shape), shape) == shape
    except ValueError:
        reachable = False
    if not reachable:
        raise ValueError(f"cannot broadcast shape {tuple(a.shape)} to {shape}")
    if not _traced(a):
        return a.expand(shape)
    if tuple(a.shape) == shape:
        return a
    source_shape = a.shape
    return Transform(
        "broadcast_to", [a], lambda x: x.expand(shape), lambda g: (g.sum_to_size(source_shape),)
    )


def repeat(a: Value, count: int, axis: int) -> Value:
    """Insert a new axis at ``axis`` holding ``count`` copies of ``a``."""
    _check_value("a", a)
    check_int_in_range("count", count, 1)
    shape = list(a.shape)
    position = axis % (a.ndim + 1)
    expanded = reshape(a, [*shape[:position], 1, *shape[position:]])
    return broadcast_to(expanded, [*shape[:position], count, *shape[position:]])


def concatenate(values: Sequence[Value], axis: int = -1) -> Value:
    values = list(values)
    if not values:
        raise ValueError("concatenate needs at least one value")
    for i, v in enumerate(values):
        _check_value(f"values[{i}]", v)
    if not _traced(*values):
        return torch.cat(values, axis)
    sizes = [v.shape[axis] for v in values]
    nodes = [_node(v) for v in values]
    return Transform(
        "concatenate",
        nodes,
        lambda *xs: torch.cat(xs, axis),
        lambda g: tuple(torch.split(g, sizes, axis)),
    )


def stack(values: Sequence[Value], axis: int = 0) -> Value:
    values = list(values)
    if not values:
        raise ValueError("stack needs at least one value")
    for i, v in enumerate(values):
        _check_value(f"values[{i}]", v)
        if v.shape != values[0].shape:
            raise ValueError(
                f"stack needs equal shapes, got {tuple(values[0].shape)} and {tuple(v.shape)} at {i}"
            )
    if not _traced(*values):
        return torch.stack(values, axis)
    nodes = [_node(v) for v in values]
    return Transform(
        "stack", nodes, lambda *xs: torch.stack(xs, axis), lambda g: tuple(torch.unbind(g, axis))
    )


def index(table: Value, indices: torch.Tensor) -> Value:
    """Rows of ``table`` (an embedding lookup); repeated indices are averaged on the way back."""
    _check_value("table", table)
    if table.ndim < 1:
        raise ValueError("table must have rows to index, got a 0-d tensor")
    if (
        not isinstance(indices, torch.Tensor)
        or indices.is_floating_point()
        or indices.dtype == torch.bool
    ):
        raise TypeError(f"indices must be an integer tensor, got {indices!r:.80}")
    rows = table.shape[0]
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= rows):
        raise ValueError(
            f"indices must lie in [0, {rows - 1}], got values in [{int(indices.min())}, {int(indices.max())}]"
        )
    if not _traced(table):
        return table[indices]
    table_shape = table.shape
    flat = indices.reshape(-1)

    def adjoint(g: torch.Tensor) -> tuple[torch.Tensor]:
        total = g.new_zeros(table_shape)
        return (total.index_add_(0, flat, g.reshape(-1, *table_shape[1:])),)

    return Transform("index", [table], lambda t: t[indices], adjoint)


def conv_patches(
    x: Value, kernel_size: int | tuple[int, int], stride: int = 1, padding: int = 0
) -> Value:
    """Patches of a ``(batch, channels, H, W)`` image as ``(batch, positions, channels·kh·kw)``.

    The adjoint folds the patches back, so a pixel in overlapping patches gets their mean.
    Padding entries are constant zeros.
    """
    _check_value("x", x, floating=True)
    if x.ndim != 4 or 0 in x.shape[1:]:
        raise ValueError(
            f"x must have shape (batch, channels, H, W) with non-empty C, H, W, got {tuple(x.shape)}"
        )
    size = tuple(x.shape[-2:])
    if isinstance(kernel_size, int) and not isinstance(kernel_size, bool):
        kernel = (kernel_size, kernel_size)
    elif isinstance(kernel_size, tuple) and len(kernel_size) == 2:
        kernel = kernel_size
    else:
        raise TypeError(f"kernel_size must be an int or a pair of ints, got {kernel_size!r}")
    check_int_in_range("stride", stride, 1)
    check_int_in_range("padding", padding, 0)
    for k, side in zip(kernel, size, strict=True):
        check_int_in_range("kernel_size", k, 1, side + 2 * padding)
    options = {"kernel_size": kernel_size, "stride": stride, "padding": padding}

    def forward(image: torch.Tensor) -> torch.Tensor:
        return F.unfold(image, **options).transpose(1, 2)

    if not _traced(x):
        return forward(x)
    return Transform(
        "conv_patches",
        [x],
        forward,
        lambda g: (F.fold(g.transpose(1, 2), output_size=size, **options),),
    )


# --- operations ------------------------------------------------------------------------------


def _broadcast(values: Sequence[Value]) -> list[Value]:
    for i, v in enumerate(values):
        _check_value(f"input {i}", v)
    shape = broadcast_shape(*(tuple(v.shape) for v in values))
    return [broadcast_to(v, shape) for v in values]


def identity(a: Value) -> Value:
    return apply_operation("identity", a)


def dot(a: Value, b: Value) -> Value:
    """Inner product over the last axis (after broadcasting the leading axes)."""
    _check_value("a", a, floating=True)
    _check_value("b", b, floating=True)
    if a.ndim < 1 or b.ndim < 1 or a.shape[-1] != b.shape[-1] or a.shape[-1] == 0:
        raise ValueError(
            f"a and b must have equal, non-empty last axes (dot), got shapes {tuple(a.shape)} "
            f"and {tuple(b.shape)}"
        )
    if a.shape[:-1] != b.shape[:-1]:
        try:
            broadcast_shape(tuple(a.shape[:-1]), tuple(b.shape[:-1]))
        except ValueError:
            raise ValueError(
                f"a and b must have leading axes that broadcast (dot), got shapes "
                f"{tuple(a.shape)} and {tuple(b.shape)}"
            ) from None
    a, b = _broadcast([a, b])
    return apply_operation("dot", a, b)


def matmul(x: Value, w: Value) -> Value:
    """``x @ w`` for ``x`` of shape ``(..., k)`` and ``w`` of shape ``(k, m)``: one dot node per
    output entry, each holding its own copy of a row of ``x`` and a column of ``w``."""
    _check_value("x", x, floating=True)
    _check_value("w", w, floating=True)
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[0]:
        raise ValueError(
            f"matmul needs x (..., k) and w (k, m), got shapes {tuple(x.shape)} and {tuple(w.shape)}"
        )
    if x.dtype != w.dtype:
        raise TypeError(f"x and w must share a dtype, got {x.dtype} and {w.dtype}")
    if not _traced(x, w):
        return x @ w
    m = w.shape[1]
    rows = repeat(x, m, -2)  # (..., m, k)
    columns = broadcast_to(transpose(w), tuple(rows.shape))
    return apply_operation("dot", rows, columns)


def _stack_last(values: Sequence[Value]) -> Value:
    values = _broadcast(list(values))
    return stack(values, -1)


def add(*values: Value) -> Value:
    """Elementwise sum of broadcastable values."""
    if len(values) < 2:
        raise ValueError(f"add needs at least two values, got {len(values)}")
    if not _traced(*values):
        return torch.stack(torch.broadcast_tensors(*values), 0).sum(0)
    return apply_operation("sum", _stack_last(values))


def _move_to_last(a: Value, axis: int) -> Value:
    axis = axis % a.ndim
    if axis == a.ndim - 1:
        return a
    dims = [d for d in range(a.ndim) if d != axis] + [axis]
    return permute(a, dims)


def sum(a: Value, axis: int | None = -1) -> Value:
    """Sum over ``axis`` (all entries when ``None``)."""
    _check_value("a", a)
    a = reshape(a, [-1]) if axis is None else _move_to_last(a, axis)
    return apply_operation("sum", a)


def sum_relu(*values: Value) -> Value:
    """``relu(v1 + v2 + ...)`` as one fused constraint (the reference code's ReLU with bias)."""
    if not values:
        raise ValueError("sum_relu needs at least one value")
    if not _traced(*values):
        return torch.relu(torch.stack(torch.broadcast_tensors(*values), 0).sum(0))
    stacked = _stack_last(values) if len(values) > 1 else reshape(values[0], [*values[0].shape, 1])
    return apply_operation("sum_relu", stacked)


def relu(a: Value) -> Value:
    return sum_relu(a)


def max(a: Value, axis: int = -1) -> Value:
    """Maximum over ``axis``."""
    _check_value("a", a)
    return apply_operation("max", _move_to_last(a, axis))


def maximum(a: Value, b: Value) -> Value:
    return apply_operation("max", _stack_last([a, b]))


def max_pool2d(x: Value, kernel_size: int) -> Value:
    """Non-overlapping max pooling of ``(batch, channels, H, W)`` with stride ``kernel_size``."""
    _check_value("x", x)
    if not _traced(x):
        return F.max_pool2d(x, kernel_size)
    batch, channels, height, width = x.shape
    patches = conv_patches(x, kernel_size, stride=kernel_size)  # (B, L, C·k·k)
    positions = patches.shape[1]
    grouped = reshape(patches, [batch, positions, channels, kernel_size * kernel_size])
    pooled = apply_operation("max", grouped)  # (B, L, C)
    out_h, out_w = height // kernel_size, width // kernel_size
    return reshape(permute(pooled, [0, 2, 1]), [batch, channels, out_h, out_w])


def quantize(
    a: Value, levels: int = 2, scale: float = 1.0, *, straight_through: bool = False
) -> Value:
    """Round to ``levels`` equally spaced values on [−scale, scale].

    On plain tensors ``straight_through=True`` passes gradients through unchanged (the STE
    baseline); traced, the quantiser is a constraint with an exact projection.
    """
    _check_value("a", a)
    quantize_op._check_levels(levels, scale)
    if not _traced(a):
        rounded = quantize_op.forward(a, levels=levels, scale=scale)
        return a + (rounded - a).detach() if straight_through else rounded
    return apply_operation("quantize", a, levels=levels, scale=scale)


def sign(a: Value, *, straight_through: bool = False) -> Value:
    """±1 by sign (``quantize`` with two levels)."""
    return quantize(a, 2, 1.0, straight_through=straight_through)


# --- output constraints ----------------------------------------------------------------------


def margin_loss(logits: Value, labels: torch.Tensor, margin: float = 1.0) -> Value:
    """Traced: the constraint true logit ≥ margin, others ≤ 0. On tensors: the mean squared
    violation of it (a hinge-squared loss)."""
    _check_value("logits", logits)
    check_logits_and_labels(logits.value if isinstance(logits, Node) else logits, labels)
    if not _traced(logits):
        is_true = F.one_hot(labels, logits.shape[-1]).bool()
        gap = torch.where(is_true, torch.relu(margin - logits), torch.relu(logits))
        return (gap**2).sum(-1).mean()
    return apply_operation("margin", logits, labels=labels, margin=float(margin))


def cross_entropy(logits: Value, labels: torch.Tensor, lam: float = 5.0) -> Value:
    """Traced: the cross-entropy prox with step ``lam``. On tensors: the mean cross-entropy."""
    _check_value("logits", logits)
    check_logits_and_labels(logits.value if isinstance(logits, Node) else logits, labels)
    if isinstance(lam, bool) or not isinstance(lam, int | float) or not 0 < lam < float("inf"):
        raise ValueError(f"lam must be a positive, finite number, got {lam!r}")
    if not _traced(logits):
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    return apply_operation("cross_entropy", logits, labels=labels, lam=float(lam))


def regression_target(values: Value, target: torch.Tensor) -> Value:
    """Traced: the constraint values = target. On tensors: the mean squared error, where NaN in
    ``values`` propagates as in ``torch.nn.functional.mse_loss``; a NaN target always raises."""
    _check_value("values", values, floating=True)
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    check_floating("target", target)
    if tuple(target.shape) != tuple(values.shape):
        raise ValueError(
            f"values and target must have the same shape, got {tuple(values.shape)} and "
            f"{tuple(target.shape)}"
        )
    check_finite("target", target)
    if not _traced(values):
        return F.mse_loss(values, target)
    return apply_operation("target", values, target=target)
