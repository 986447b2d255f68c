"""ngspice (Debian's, through PySpice) against the nodal solver, measured in one run.

Prints, per case: ngspice's wall time for the job (worker start excluded: the pool is warmed
first), its own reorder / factor / solve breakdown (``rusage all``), the nodal solver's time,
and their ratio; then the issue's targets with the measured figure beside each.

    python benchmarks/bench_spice.py            # full: 16..128, 100 vectors on 64x64
    python benchmarks/bench_spice.py --quick    # no 128x128, 20 vectors
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cosim.device import apply_faults, draw_fault_map, random_conductances
from cosim.specs import ArraySpec, DeviceSpec, FaultSpec
from cosim.spice import plan_netlists, validate_inputs
from cosim.spice.ngspice import init_ngspice, run_netlist
from cosim.spice.nodal import solve_nodal
from cosim.spice.workers import WorkerPool


def _case(n: int, batch: int, seed: int):
    rng = np.random.default_rng(seed)
    device = DeviceSpec()
    g = apply_faults(random_conductances((n, n), device, rng), draw_fault_map((n, n), FaultSpec(), rng), device)
    v = rng.uniform(0.0, 0.2, (batch, n))
    return validate_inputs(ArraySpec(n, n), g, v)


def _run(pool: WorkerPool, n: int, batch: int, split: int):
    spec = ArraySpec(n, n)
    g, v = _case(n, batch, seed=n)
    plan = plan_netlists(spec, g, v, split=split)
    t0 = time.perf_counter()
    results = pool.run([net for _, net, _ in plan])
    t_spice = time.perf_counter() - t0
    t0 = time.perf_counter()
    nodal = np.concatenate([solve_nodal(c, v[idx]) for idx, _, c in plan])
    t_nodal = time.perf_counter() - t0
    spice = np.concatenate([c.output_currents(r.values.T) for (_, _, c), r in zip(plan, results)])
    agree = float(np.max(np.abs(spice - nodal)) / np.max(np.abs(nodal)))
    return t_spice, t_nodal, results, agree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip 128x128 and use 20 vectors")
    args = parser.parse_args()
    sizes = [16, 32, 64] if args.quick else [16, 32, 64, 128]
    batch = 20 if args.quick else 100

    print(f"{'case':<22}{'ngspice s':>10}{'reorder':>9}{'factor':>8}{'solve':>7}{'fill-ins':>10}"
          f"{'iters':>7}{'nodal s':>9}{'ratio':>8}{'max rel diff':>14}")
    figures = {}
    with WorkerPool(init_ngspice, run_netlist, 2, 600, "ngspice") as pool:
        pool.run([plan_netlists(ArraySpec(2, 2), *_case(2, 1, 0))[0][1]] * 2)  # warm both workers
        for n in sizes:
            t_s, t_n, res, agree = _run(pool, n, 1, split=1)
            st = res[0].stats
            figures[f"op{n}"] = t_s
            print(f"{f'{n}x{n} operating point':<22}{t_s:>10.3f}{st.reorder_s:>9.3f}{st.factor_s:>8.3f}"
                  f"{st.solve_s:>7.3f}{st.fill_ins:>10d}{st.iterations:>7d}{t_n:>9.4f}{t_s / t_n:>8.1f}{agree:>14.1e}")
        for split in (1, 2):
            t_s, t_n, res, agree = _run(pool, 64, batch, split=split)
            reorder = sum(r.stats.reorder_s for r in res)
            factor = sum(r.stats.factor_s for r in res)
            solve = sum(r.stats.solve_s for r in res)
            iters = sum(r.stats.iterations for r in res)
            figures[f"sweep{split}"] = t_s
            label = f"64x64 {batch} vec, {split} job{'s' if split > 1 else ''}"
            print(f"{label:<22}{t_s:>10.3f}{reorder:>9.3f}{factor:>8.3f}{solve:>7.3f}{res[0].stats.fill_ins:>10d}"
                  f"{iters:>7d}{t_n:>9.4f}{t_s / t_n:>8.1f}{agree:>14.1e}")

    print("\nTargets (issue 2), Debian ngspice 39 without KLU, this machine:")
    rows = [("64x64 operating point", figures["op64"], 1.0)]
    best = min(figures["sweep1"], figures["sweep2"]) * (100 / batch)
    rows.append(("100 vectors on 64x64" + (" (scaled)" if batch != 100 else ""), best, 5.0))
    if "op128" in figures:
        rows.append(("128x128 operating point", figures["op128"], 10.0))
    for name, value, target in rows:
        verdict = "met" if value <= target else f"MISSED ({value / target:.1f}x over)"
        print(f"  {name:<34} {value:8.2f} s   target <= {target:g} s   {verdict}")


if __name__ == "__main__":
    main()
