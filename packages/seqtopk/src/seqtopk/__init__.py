"""SeqTopK: route mixture-of-experts tokens by sequence, not by token."""

from importlib.metadata import version

from seqtopk.online import OnlineRoutingState, online_select, online_select_reference
from seqtopk.patching import (
    SUPPORTED_MODEL_TYPES,
    is_patched,
    load_balancing_loss,
    patch,
    unpatch,
)
from seqtopk.selection import (
    numba_available,
    resolve_bounds,
    routing_weights,
    select_experts,
    select_experts_reference,
    selection_to_indices,
)

__version__ = version("seqtopk")

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "OnlineRoutingState",
    "__version__",
    "is_patched",
    "load_balancing_loss",
    "numba_available",
    "online_select",
    "online_select_reference",
    "patch",
    "resolve_bounds",
    "routing_weights",
    "select_experts",
    "select_experts_reference",
    "selection_to_indices",
    "unpatch",
]
