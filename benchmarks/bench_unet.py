"""Benchmark qcdtool's diffusion UNet against diffusers' UNet2DModel on the CPU.

diffusers is NOT a qcdtool dependency. It serves only as the reference
network here, so install it into the environment that runs this script:

    pip install diffusers

Both networks get the same layout: base width 32, channel multipliers
1, 2, 2, two residual blocks per level, self-attention at the lowest level
and in the bottleneck, GroupNorm with 8 groups, 2 input and 1 output
channels. That gives equal parameter counts, and the script checks that
they agree within 10%. Timings of the two networks are interleaved in one
process and reported as medians, so that drifts of the machine's speed
affect both alike. Peak memory is the largest growth of the memory that
torch's CPU allocator has handed out during one step, over what was
allocated before the step, read from the "[memory]" events of a torch
profiler trace. It counts activations, gradients and temporaries, but not
weights and optimizer state, which exist before the step. The resident set size of the process
proved useless for this on the machine measured, because it depended on
what earlier work had done to the system's memory.

Usage:

    python benchmarks/bench_unet.py            # 2 threads, full run (a few minutes)
    python benchmarks/bench_unet.py --quick    # fewer repetitions, smaller sampling test
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qcdtool.plugins.models.diffusion import (
    NoiseSchedule,
    UNet,
    UNetConfig,
    cosine_betas,
    ddim_sample,
    ddpm_sample,
)

NETWORKS = ("qcdtool", "diffusers")
TRAIN_BATCH = 128
SAMPLE_BATCH = 512
PARAMETER_TOLERANCE = 0.10

Forward = Callable[[Tensor, Tensor], Tensor]


@dataclass
class Network:
    module: nn.Module
    forward: Forward


def build_network(name: str, size: int) -> Network:
    """Build one of the two networks with the shared layout."""
    if name == "qcdtool":
        config = UNetConfig(
            in_channels=2,
            out_channels=1,
            base_channels=32,
            channel_mults=(1, 2, 2),
            num_res_blocks=2,
            attention_levels=(2,),
            mid_attention=True,
            norm_groups=8,
        )
        unet = UNet(config)
        return Network(unet, unet)

    from diffusers import UNet2DModel

    reference: nn.Module = UNet2DModel(  # type: ignore[no-untyped-call, assignment]
        sample_size=size,
        in_channels=2,
        out_channels=1,
        block_out_channels=(32, 64, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=64,
    )

    def forward(x: Tensor, t: Tensor) -> Tensor:
        out: Tensor = reference(x, t).sample
        return out

    return Network(reference, forward)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class TrainingTask:
    """One AdamW step on an MSE loss against a fixed random target."""

    def __init__(self, network: Network, size: int) -> None:
        generator = torch.Generator().manual_seed(size)
        self.network = network
        self.x = torch.randn(TRAIN_BATCH, 2, size, size, generator=generator)
        self.t = torch.randint(0, 1000, (TRAIN_BATCH,), generator=generator)
        self.target = torch.randn(TRAIN_BATCH, 1, size, size, generator=generator)
        self.optimizer = torch.optim.AdamW(network.module.parameters(), lr=1e-4)
        self.images = TRAIN_BATCH

    def run(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss = (self.network.forward(self.x, self.t) - self.target).square().mean()
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()


class SamplingPassTask:
    """One network pass without autograd, as one sampling step makes."""

    def __init__(self, network: Network, size: int) -> None:
        generator = torch.Generator().manual_seed(size + 1)
        self.network = network
        self.x = torch.randn(SAMPLE_BATCH, 2, size, size, generator=generator)
        self.t = torch.randint(0, 1000, (SAMPLE_BATCH,), generator=generator)
        self.images = SAMPLE_BATCH

    def run(self) -> None:
        with torch.no_grad():
            self.network.forward(self.x, self.t)


class Task(Protocol):
    images: int

    def run(self) -> None: ...


TASKS: dict[str, Callable[[Network, int], Task]] = {
    "training": TrainingTask,
    "sampling pass": SamplingPassTask,
}


def time_interleaved(size: int, task_name: str, repetitions: int) -> dict[str, float]:
    """Return the median images/s of each network, timing them in turn."""
    tasks: dict[str, Task] = {}
    for name in NETWORKS:
        torch.manual_seed(0)
        tasks[name] = TASKS[task_name](build_network(name, size), size)
        for _ in range(2):  # warm-up: first-call allocations and kernel selection
            tasks[name].run()
    rates: dict[str, list[float]] = {name: [] for name in NETWORKS}
    for _ in range(repetitions):
        for name in NETWORKS:
            start = time.perf_counter()
            tasks[name].run()
            rates[name].append(tasks[name].images / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def peak_memory(name: str, size: int, task_name: str) -> float:
    """Return the peak growth (MiB) of torch's CPU allocations during one step after a warm-up step."""
    torch.manual_seed(0)
    task = TASKS[task_name](build_network(name, size), size)
    task.run()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        task.run()
    with tempfile.TemporaryDirectory() as folder:
        trace_path = os.path.join(folder, "trace.json")
        profiler.export_chrome_trace(trace_path)
        with open(trace_path) as trace_file:
            events = json.load(trace_file)["traceEvents"]
    memory = [event["args"] for event in events if event.get("name") == "[memory]"]
    # "Total Allocated" is the running total after each allocation (positive
    # "Bytes") or release (negative), so the total before the step is the
    # first event's total minus its own bytes.
    start = memory[0]["Total Allocated"] - memory[0]["Bytes"]
    return float(max(event["Total Allocated"] for event in memory) - start) / 2**20


@dataclass
class SamplerTiming:
    """Wall time of one sampling run and the median time of its steps, in seconds."""

    wall: float
    median_step: float
    steps: int

    @property
    def typical(self) -> float:
        """Run time estimated as steps x median step time, robust against stalls of a shared machine."""
        return self.steps * self.median_step


def time_sampler(run: Callable[[Callable[[int, int], None]], None], steps: int) -> SamplerTiming:
    """Time ``run(progress)`` and each of its steps through the progress callback."""
    stamps = [time.perf_counter()]
    run(lambda done, total: stamps.append(time.perf_counter()))
    durations = [later - earlier for earlier, later in itertools.pairwise(stamps)]
    return SamplerTiming(wall=stamps[-1] - stamps[0], median_step=statistics.median(durations), steps=steps)


def time_samplers(size: int, batch: int, ddim_steps: int) -> tuple[SamplerTiming, SamplerTiming]:
    """Time DDIM with ``ddim_steps`` steps and 1000-step DDPM with qcdtool's UNet."""
    torch.manual_seed(0)
    unet = build_network("qcdtool", size).module.eval()
    schedule = NoiseSchedule.from_betas(cosine_betas(1000))
    condition = torch.randn(batch, 1, size, size)

    def eps_model(x_t: Tensor, t: Tensor) -> Tensor:
        out: Tensor = unet(torch.cat([x_t, condition], dim=1), t)
        return out

    x_T = torch.randn(batch, 1, size, size)

    def run_ddim(progress: Callable[[int, int], None]) -> None:
        ddim_sample(eps_model, schedule, x_T, steps=ddim_steps, progress=progress)

    def run_ddpm(progress: Callable[[int, int], None]) -> None:
        ddpm_sample(eps_model, schedule, x_T, generator=torch.Generator().manual_seed(0), progress=progress)

    ddim = time_sampler(run_ddim, ddim_steps)
    ddpm = time_sampler(run_ddpm, schedule.num_steps)
    return ddim, ddpm


def machine_description() -> str:
    model = platform.processor() or "unknown processor"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import diffusers

    return (
        f"{model}, {os.cpu_count()} logical cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, diffusers {diffusers.__version__}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and a smaller sampler test")
    args = parser.parse_args()

    if importlib.util.find_spec("diffusers") is None:
        print(
            "diffusers is not installed. It is the reference network of this benchmark and not a "
            "qcdtool dependency. Install it with 'pip install diffusers' and run again.",
            file=sys.stderr,
        )
        return 2

    torch.set_num_threads(args.threads)
    repetitions = 3 if args.quick else 9
    sizes = (16, 32)

    print(f"Machine: {machine_description()}, torch threads: {args.threads}")
    print(f"Load average at start (1, 5, 15 min): {os.getloadavg()}\n")

    # 1. Equal parameter counts.
    counts = {name: parameter_count(build_network(name, 16).module) for name in NETWORKS}
    difference = abs(counts["qcdtool"] - counts["diffusers"]) / counts["diffusers"]
    print(
        f"Parameters: qcdtool {counts['qcdtool']:,}, diffusers {counts['diffusers']:,} "
        f"({difference:.1%} apart)\n"
    )
    if difference > PARAMETER_TOLERANCE:
        print(
            f"parameter counts differ by more than {PARAMETER_TOLERANCE:.0%}, so the comparison is void",
            file=sys.stderr,
        )
        return 1

    # 2. Throughput and peak memory.
    print(
        "| size | task | qcdtool img/s | diffusers img/s | qcdtool / diffusers "
        "| peak MiB qcdtool | peak MiB diffusers |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for size in sizes:
        for task_name in TASKS:
            rates = time_interleaved(size, task_name, repetitions)
            memory = {name: peak_memory(name, size, task_name) for name in NETWORKS}
            ratio = rates["qcdtool"] / rates["diffusers"]
            batch = TRAIN_BATCH if task_name == "training" else SAMPLE_BATCH
            print(
                f"| {size}x{size} | {task_name} (batch {batch}) | {rates['qcdtool']:.0f} | "
                f"{rates['diffusers']:.0f} | {ratio:.2f} | {memory['qcdtool']:.0f} "
                f"| {memory['diffusers']:.0f} |",
                flush=True,
            )

    # 3. DDIM against 1000-step DDPM with qcdtool's UNet.
    batch = 8 if args.quick else 32
    ddim, ddpm = time_samplers(16, batch, ddim_steps=50)
    print(f"\nSampling {batch} images of 16x16 with qcdtool's UNet (steps x median step time; wall time):")
    for label, timing in (("DDIM, 50 steps", ddim), ("DDPM, 1000 steps", ddpm)):
        print(
            f"  {label}: {timing.typical:.1f} s ({batch / timing.typical:.2f} img/s); "
            f"wall {timing.wall:.1f} s"
        )
    print(f"  DDIM is {ddpm.typical / ddim.typical:.1f}x faster")
    print(f"Load average at end (1, 5, 15 min): {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
