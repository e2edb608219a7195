"""The attack's optimisation step: compiled, batched and plain forms compute the same numbers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.fx.experimental.proxy_tensor import make_fx

from attacker.compiling import TransposedAsInputGradient
from attacker.objectives import cosine_distance, l2_distance, total_variation
from attacker.observation import Observation
from attacker.steps import COMPILE_MIN_ITERATIONS, CompileFailed, Step, compile_wanted
from attacker.victim import Victim
from fl_sim.config import RunConfig
from fl_sim.config.presets import FEDSGD
from fl_sim.data import load_dataset
from fl_sim.models import Architecture
from lab.offline import intercepted_updates

CPU = torch.device("cpu")


def _victim_and_targets(samples: list[list[int]], model: str = "lenet"):
    config = RunConfig.from_flat({**FEDSGD, "model.name": model})
    updates, _ = intercepted_updates(config, samples)
    observations = [Observation.from_update(update) for update in updates]
    dataset = load_dataset(config.data)
    architecture = Architecture.of(config, dataset.input_shape, dataset.num_classes)
    victim = Victim.from_arrays(architecture, observations[0].global_arrays, CPU)
    targets = [obs.gradient_estimate(victim.param_names) for obs in observations]
    return config, victim, observations, targets


def _assert_same(a, b) -> None:
    """Equal up to float32 rounding of reordered sums: relative to each array's norm."""
    (grads_a, value_a), (grads_b, value_b) = a, b
    assert torch.allclose(value_a, value_b, rtol=1e-5, atol=1e-6)
    for ga, gb in zip(grads_a, grads_b):
        assert ga.shape == gb.shape and (ga - gb).norm() <= 1e-5 * gb.norm() + 1e-6


def test_a_compiled_batched_ig_step_equals_the_uncompiled_one():
    _, victim, _, targets = _victim_and_targets([[1], [2]])

    def cost(x, labels, target, tv):
        return cosine_distance(victim.gradient(x, labels), target) + tv * total_variation(x)

    x = torch.rand(2, 1, *victim.input_shape, generator=torch.Generator().manual_seed(0))
    stacked = {n: torch.stack([t[n] for t in targets]) for n in targets[0]}
    compiled = Step(cost, batched=True, compiled=True, strict=True)
    laid_out = compiled.lay_out(stacked)  # the convolutions' target gradients channels-last, as the CPU step's
    assert all(torch.equal(laid_out[n], stacked[n]) for n in stacked)
    assert laid_out["features.2.weight"].stride()[2] == 1 and Step(cost, batched=True).lay_out(stacked) == stacked
    args = (torch.tensor([[1], [2]]), laid_out, torch.tensor([0.1, 0.01]))
    _assert_same(compiled(x, *args), Step(cost, batched=True)(x, *args))
    assert compiled.compiled and compiled.compile_seconds > 0 and "compiled" in compiled.describe()
    moved = x.flip(-1)  # a later iteration: same compiled code, new values
    _assert_same(compiled(moved, *args), Step(cost, batched=True)(moved, *args))


@pytest.mark.parametrize("groups, stride, rewritten", [(4, 2, True), (4, 1, False), (1, 2, False)])
def test_grouped_strided_transposed_convolutions_are_posed_as_input_gradients(groups, stride, rewritten):
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(1, 4 * groups, 8, 8, generator=generator)
    weight = torch.randn(4 * groups, 3, 5, 5, generator=generator)

    def transposed(x, weight):
        return F.conv_transpose2d(x, weight, stride=stride, padding=2, output_padding=stride - 1, groups=groups)

    graph = make_fx(transposed, tracing_mode="fake")(x, weight)  # aten operations, as inductor's passes see them
    TransposedAsInputGradient()(graph.graph)
    graph.recompile()
    targets = {node.target for node in graph.graph.nodes}
    assert (torch.ops.aten.convolution_backward.default in targets) == rewritten
    assert (torch.ops.aten.convolution.default in targets) != rewritten
    assert torch.allclose(graph(x, weight), transposed(x, weight), atol=1e-5)


def test_a_compiled_single_step_of_two_variables_equals_plain_autograd():
    _, victim, _, targets = _victim_and_targets([[3]], model="mlp")  # a small graph: a short compile

    def cost(image, label_logits, target):  # DLG's: image and soft label jointly
        return l2_distance(victim.gradient(image, F.softmax(label_logits, dim=-1)), target)

    generator = torch.Generator().manual_seed(1)
    inputs = (torch.randn(1, *victim.input_shape, generator=generator),
              torch.randn(1, victim.num_classes, generator=generator), targets[0])
    compiled = Step(cost, 2, compiled=True, strict=True)
    _assert_same(compiled(*inputs), Step(cost, 2)(*inputs))
    assert compiled.compiled


def _breaks_the_graph(x, w):
    if float((x * w).sum().detach()) > 0:  # a Python branch on a value: torch.compile(fullgraph=True) cannot trace it
        return (x * w).sum()
    return -(x * w).sum()


def test_a_step_that_cannot_compile_runs_uncompiled_and_says_so_unless_compile_is_on():
    x, w = torch.ones(3), torch.full((3,), 2.0)
    step = Step(_breaks_the_graph, compiled=True)
    _assert_same(step(x, w), Step(_breaks_the_graph)(x, w))
    assert not step.compiled and step.describe().startswith("torch.compile failed (")
    assert step.describe().endswith("ran uncompiled")
    with pytest.raises(CompileFailed, match="set attack.compile=auto or off"):
        Step(_breaks_the_graph, compiled=True, strict=True)(x, w)


@pytest.mark.parametrize("setting, iterations, deterministic, expected", [
    ("on", 1, False, True), ("off", 10**6, True, False), ("auto", COMPILE_MIN_ITERATIONS, True, True),
    ("auto", COMPILE_MIN_ITERATIONS - 1, True, False), ("auto", 10**6, False, False)])
def test_auto_compiles_long_attacks_of_deterministic_models(setting, iterations, deterministic, expected):
    assert compile_wanted(setting, iterations, deterministic, CPU) is expected


def test_a_victim_given_a_later_rounds_weights_computes_that_rounds_gradients():
    config, victim, observations, _ = _victim_and_targets([[4]])
    later = {name: value * 1.5 for name, value in observations[0].global_arrays.items()}
    params = victim.params["features.0.weight"]
    victim.load(later)
    fresh = Victim.from_arrays(Architecture.of(config, victim.input_shape, victim.num_classes), later, CPU)
    x, label = torch.rand(1, *victim.input_shape), torch.tensor([2])
    assert victim.params["features.0.weight"] is params  # the same tensors: steps built on them stay valid
    for name, g in victim.gradient(x, label).items():
        assert torch.allclose(g, fresh.gradient(x, label)[name])


def test_a_compiled_step_whose_later_call_fails_goes_on_uncompiled_from_the_same_point():
    x, w = torch.ones(3), torch.full((3,), 2.0)
    step = Step(_dot, compiled=True)
    step(x, w)
    assert step.compiled and step.compile_seconds > 0

    def replay_fails(*_):
        raise RuntimeError("a CUDA graph's output was overwritten\nmore detail")
    step._compiled = replay_fails  # what a failed CUDA-graph replay looks like from here
    _assert_same(step(x * 3, w), Step(_dot)(x * 3, w))
    assert not step.compiled
    assert step.describe() == ("the compiled step failed (RuntimeError: a CUDA graph's output was overwritten); "
                               "ran uncompiled")


def _dot(x, w):
    return (x * w).sum()
