"""How an attack step is compiled: inductor, with CUDA graphs on a GPU and one rewrite on the CPU.

A batched attack's double backward is full of grouped, strided transposed convolutions: ``vmap``
turns every attack's own direction in weight space into a group. oneDNN runs those 1.5-2x slower
than the same arithmetic posed as what it is, the input gradient of the forward convolution
(``convolution_backward`` asked for the input's gradient only): on one CPU thread, 16 groups of
12 channels, 16x16 to 32x32, 456 against 216 us; 8x8 to 16x16, 251 against 162 us. Ungrouped or
unstrided, the two forms cost the same, or the transposed one less. So the CPU compile takes
inductor's decompositions plus :func:`_transposed_as_input_gradient`, which poses those
convolutions the fast way (same sums, rounding aside); on a GPU the compile is inductor's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch._functorch import config as functorch_config

aten = torch.ops.aten


def compile_step(transformed: Callable, device: torch.device | None) -> Callable:
    """``transformed`` through ``torch.compile`` with the whole graph and static shapes: on a GPU with CUDA
    graphs (``mode="reduce-overhead"``, one launch per step), on the CPU with the rewrite above."""
    if device is not None and device.type == "cuda":
        return torch.compile(transformed, fullgraph=True, dynamic=False, mode="reduce-overhead")
    return torch.compile(transformed, fullgraph=True, dynamic=False, backend=_cpu_inductor)


def _cpu_inductor(graph: torch.fx.GraphModule, example_inputs: Sequence[torch.Tensor]):
    """inductor with :func:`_transposed_as_input_gradient` among its decompositions.

    AOTAutograd's cache does not key on the decompositions (it would hand back a step compiled
    without the rewrite), so it is off for this compile; inductor's own cache, keyed on the
    decomposed graph, still serves later processes. (inductor is imported here: it takes a second.)
    """
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.decomposition import select_decomp_table

    decompositions = {**select_decomp_table(), aten.convolution.default: _transposed_as_input_gradient}
    with functorch_config.patch(enable_autograd_cache=False):
        return compile_fx(graph, example_inputs, decompositions=decompositions)


def _transposed_as_input_gradient(x, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    """A grouped, strided, unbiased 2-d transposed convolution as the input gradient of the convolution it
    transposes; any other convolution is left as it is (``NotImplemented``)."""
    if not transposed or groups == 1 or all(s == 1 for s in stride) or bias is not None or x.dim() != 4:
        return NotImplemented
    kernel = weight.shape[2:]
    size = [(x.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (kernel[i] - 1) + output_padding[i] + 1
            for i in range(2)]
    shape_only = x.new_empty(()).expand(x.shape[0], weight.shape[1] * groups, *size)  # the input's shape, no data
    return aten.convolution_backward(x, shape_only, weight, None, stride, padding, dilation, False, [0, 0], groups,
                                     [True, False, False])[0]
