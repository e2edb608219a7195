"""How an attack step is compiled: inductor, with CUDA graphs on a GPU and one rewrite on the CPU.

A batched attack's double backward is full of grouped, strided transposed convolutions: ``vmap``
turns every attack's own direction in weight space into a group. oneDNN runs those 1.5-2x slower
than the same arithmetic posed as what it is, the input gradient of the forward convolution
(``convolution_backward`` asked for the input's gradient only): on one CPU thread, 16 groups of
12 channels, 16x16 to 32x32, 456 against 216 us; 8x8 to 16x16, 251 against 162 us. Ungrouped or
unstrided, the two forms cost the same, or the transposed one less. So the CPU compile runs
:class:`TransposedAsInputGradient` among inductor's graph passes (same sums, rounding aside); on
a GPU the compile is inductor's own.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files

aten = torch.ops.aten


def compile_step(transformed: Callable, device: torch.device | None) -> Callable:
    """``transformed`` through ``torch.compile`` with the whole graph and static shapes.

    On a GPU with CUDA graphs (``mode="reduce-overhead"``, one launch per step), on the CPU with the rewrite above.
    """
    if device is not None and device.type == "cuda":
        return torch.compile(transformed, fullgraph=True, dynamic=False, mode="reduce-overhead")
    return torch.compile(transformed, fullgraph=True, dynamic=False,
                         options={"post_grad_custom_post_pass": TransposedAsInputGradient()})


class TransposedAsInputGradient(CustomGraphPass):
    """An inductor graph pass.

    Every grouped, strided, unbiased 2-d transposed convolution becomes the input gradient of the convolution it
    transposes. Its ``uuid`` (this file's hash) keys torch's compile caches.
    """

    def __call__(self, graph: torch.fx.Graph) -> None:
        """Rewrite, in place, every grouped strided transposed convolution of ``graph`` as an input gradient."""
        for node in list(graph.find_nodes(op="call_function", target=aten.convolution.default)):
            x, weight, bias, stride, padding, dilation, transposed, _, groups = node.args
            output = node.meta["val"]
            if not transposed or groups == 1 or all(s == 1 for s in stride) or bias is not None or output.dim() != 4:
                continue
            with graph.inserting_before(node):  # the forward convolution's input: its shape only, no data
                scalar = graph.call_function(aten.empty.memory_format, ([],),
                                             {"dtype": output.dtype, "device": output.device})
                shape_only = graph.call_function(aten.expand.default, (scalar, list(output.shape)))
                gradients = graph.call_function(aten.convolution_backward.default, (
                    x, shape_only, weight, None, stride, padding, dilation, False, [0, 0], groups,
                    [True, False, False]))  # the input's gradient only
                input_gradient = graph.call_function(operator.getitem, (gradients, 0))
            node.replace_all_uses_with(input_gradient)
            graph.erase_node(node)

    def uuid(self) -> bytes:
        """This file's hash: a changed pass is a new compile, not a cached one."""
        return get_hash_for_files((__file__,))
