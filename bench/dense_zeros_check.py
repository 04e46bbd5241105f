"""Benchmark: does a 75 % unstructured-pruned ResNet18 run at the dense model's speed on the CPU?

Unstructured pruning keeps the zeros in dense tensors, so dense kernels should take the same time.
This checks the two things that could make it slower: denormal floats (slow on x86) in the weights
or in any layer's activations, and the speed itself, timed in paired rounds that alternate the two
models so that the machine's drift hits both alike. 224x224, batch 1, seeded random weights.
Run from the repository root:

    .venv/bin/python -m bench.dense_zeros_check                     # 1 thread, 10 rounds
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torchvision
from torch import nn

from netzip_mlflow.compression.registry import compress

TINY = torch.finfo(torch.float32).tiny


def _denormals(tensor: torch.Tensor) -> int:
    magnitude = tensor.abs()
    return int(((magnitude > 0) & (magnitude < TINY)).sum())


def activation_denormals(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(denormal values, all values) over the outputs of every leaf module for one input."""
    counts = [0, 0]

    def hook(_module: nn.Module, _inputs: object, out: object) -> None:
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            counts[0] += _denormals(out)
            counts[1] += out.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    with torch.inference_mode():
        model(x)
    for handle in handles:
        handle.remove()
    return counts[0], counts[1]


def median_ms(model: nn.Module, x: torch.Tensor, calls: int) -> float:
    """Median of ``calls`` timed calls after 3 warm-up calls, milliseconds."""
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dense = torchvision.models.resnet18().eval()
    pruned = compress(
        copy.deepcopy(dense), "prune_unstructured", {"amount": 0.75, "importance": "l1"}, progress=False
    ).model.eval()
    x = torch.randn(1, 3, 224, 224)
    print(f"weight denormals in the pruned model: {sum(_denormals(p) for p in pruned.parameters())}")
    for name, model in (("dense", dense), ("pruned", pruned)):
        bad, total = activation_denormals(model, x)
        print(f"activation denormals, {name}: {bad} of {total}")
    pairs = [(median_ms(dense, x, args.calls), median_ms(pruned, x, args.calls)) for _ in range(args.rounds)]
    speedups = [d / p for d, p in pairs]
    print(f"{args.rounds} paired rounds, {args.calls} calls each, {args.threads} thread(s):")
    print(f"  dense median {statistics.median(d for d, _ in pairs):.1f} ms, "
          f"pruned median {statistics.median(p for _, p in pairs):.1f} ms")
    print(f"  speedup per round {[round(s, 2) for s in speedups]}; median {statistics.median(speedups):.3f}")


if __name__ == "__main__":
    main()
