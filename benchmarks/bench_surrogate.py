"""Surrogate speed against the exact sparse solve, side by side in one run (issue 4: >= 20x).

A 64x64 tile (2.5 ohm wires, drivers and sense; faulty devices), two figures:
* a batch of input vectors: the surrogate's column currents vs the nodal solver's
  (one sparse factorisation and solve);
* the tile's effective conductance matrix (what the layer caches per chip): the surrogate on 64
  unit inputs vs the nodal solver's factorisation + 64 solves; once in float64, once as the layer
  runs it (SURROGATE_DTYPE, SURROGATE_TILES_PER_CALL tiles per call) over 16 tiles.

It then prints what that last figure makes of one Monte Carlo chip of each network on the IR-drop
array (``array_model = "surrogate"``): the layer computes every tile's G_eff once per chip, so a
chip costs its tile count times the time per tile, on top of the ideal array's cost.

    python benchmarks/bench_surrogate.py [--model device_models/default.h5] [--repeats 5] [--threads 1]

Run it on an idle machine: with the cores busy, torch's thread pool stalls on multi-threaded
kernels (8 vectors: 270 ms with 2 busy threads, 11 ms with one) and the sparse solve slows ~10x,
which distorts the ratios both ways.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from cosim.calibrate import SurrogateParams, surrogate_currents, surrogate_effective_conductance
from cosim.calibrate.store import read_model
from cosim.device import apply_faults, draw_fault_map, random_conductances
from cosim.layers import HardwareConfig
from cosim.layers.arrays import exact_effective_conductance
from cosim.layers.chip import SURROGATE_DTYPE, SURROGATE_TILES_PER_CALL
from cosim.models import ModelName, build_model
from cosim.specs import ArraySpec, DeviceSpec, FaultSpec, SolveOptions
from cosim.spice import solve_crossbar


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("device_models/default.h5"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default); scipy's "
                        "sparse solve is single-threaded")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = read_model(args.model).params if args.model.exists() else SurrogateParams()
    rng = np.random.default_rng(0)
    n = args.size
    spec = ArraySpec(n, n)
    device = DeviceSpec()
    g = apply_faults(random_conductances((n, n), device, rng), draw_fault_map((n, n), FaultSpec(), rng), device)
    print(f"{n}x{n} tile, 2.5 ohm parasitics, surrogate with {params.iterations} sweeps, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'task':<46}{'exact ms':>10}{'surrogate ms':>14}{'speed-up':>10}  target >= 20x")
    gt = torch.from_numpy(g)
    rows = []
    for batch in (1, 8):
        v = rng.uniform(0, 0.2, (batch, n))
        vt = torch.from_numpy(v)
        t_exact = median_time(lambda: solve_crossbar(spec, g, v, SolveOptions(solver="nodal")), args.repeats)
        with torch.no_grad():
            t_sur = median_time(lambda: surrogate_currents(gt, vt, spec, params), args.repeats)
        rows.append((f"MVM, {batch} input vector(s)", t_exact, t_sur))
    t_exact = median_time(lambda: exact_effective_conductance(g, spec), args.repeats)
    with torch.no_grad():
        t_sur = median_time(lambda: surrogate_effective_conductance(gt, spec, params), args.repeats)
    rows.append((f"effective conductance G_eff ({n} unit inputs)", t_exact, t_sur))
    # As the layer runs it: SURROGATE_TILES_PER_CALL tiles per call, in SURROGATE_DTYPE.
    k, per_call = 16, SURROGATE_TILES_PER_CALL
    tiles = np.stack([apply_faults(random_conductances((n, n), device, rng), draw_fault_map((n, n), FaultSpec(), rng),
                                   device) for _ in range(k)])
    t_exact = median_time(lambda: [exact_effective_conductance(t, spec) for t in tiles], args.repeats)
    tt = torch.from_numpy(tiles).to(SURROGATE_DTYPE)
    with torch.no_grad():
        t_sur = median_time(lambda: [surrogate_effective_conductance(tt[i : i + per_call], spec, params)
                                     for i in range(0, k, per_call)], args.repeats)
    rows.append((f"G_eff of {k} tiles as the layer runs it", t_exact, t_sur))
    for task, t_exact, t_sur in rows:
        ratio = t_exact / t_sur
        print(f"{task:<46}{t_exact * 1e3:>10.2f}{t_sur * 1e3:>14.2f}{ratio:>9.1f}x  {'ok' if ratio >= 20 else 'MISSED'}")
    per_tile = rows[-1][2] / k
    print(f"\nWhat one chip costs on the IR-drop array (every tile's G_eff once per chip, at "
          f"{per_tile * 1e3:.1f} ms a tile as measured above; default mapping, {n}x{n} tiles):")
    for name in ModelName:
        tiles = array_tiles(build_model(name, (1, 28, 28), 10), HardwareConfig(tile_rows=n, tile_cols=n))
        print(f"  {name.value:<9}{tiles:>7} tiles a chip  {tiles * per_tile:>8.1f} s a chip  "
              f"{tiles * per_tile * 100 / 3600:>6.2f} h for 100 chips")


def array_tiles(model: torch.nn.Module, hw: HardwareConfig) -> int:
    """Tiles one chip of ``model`` occupies: every Linear / Conv2d weight matrix (rows: inputs,
    ``in_channels·k·k`` for a convolution; columns: outputs) in tiles of ``hw.tile_rows`` ×
    ``hw.tile_cols``, times the arrays per weight (``hw.polarities · hw.slices``)."""
    total = 0
    for layer in model.modules():
        if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d)):
            n_out, n_in = layer.weight.shape[0], layer.weight[0].numel()
            total += -(-n_in // hw.tile_rows) * -(-n_out // hw.tile_cols)
    return total * hw.polarities * hw.slices

if __name__ == "__main__":
    main()
