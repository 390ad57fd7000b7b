"""``TensorCall``: a network's official call as a tensors-only ``nn.Module`` (what tracing and conversion need).

``fn(net, *tensors, **options)`` is the per-architecture call adapter: it knows the keyword arguments, flags and
which outputs of the official forward matter. ``options`` are fixed Python values (CodeFormer's fidelity ``w``);
they become constants of a converted graph, so they are part of its cache key.
"""

from __future__ import annotations

from typing import Any, Callable

import torch


class TensorCall(torch.nn.Module):
    """``forward(*tensors)`` returns ``fn(net, *tensors, **options)``: a tensor or a tuple of tensors."""

    def __init__(self, net: torch.nn.Module, fn: Callable[..., Any], **options: Any):
        super().__init__()
        self.net = net
        self.fn = fn
        self.options = dict(options)

    def forward(self, *tensors: torch.Tensor):
        return self.fn(self.net, *tensors, **self.options)

    def extra_repr(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"fn={getattr(self.fn, '__qualname__', self.fn)}" + (f", {opts}" if opts else "")
