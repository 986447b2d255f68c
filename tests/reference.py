"""An independent dense solver of the crossbar, written from DESIGN §2 for the tests only.

It numbers unknowns its own way (row node (i, j) → i*cols + j, column node (i, j) →
rows*cols + i*cols + j), writes KCL directly with Thevenin drivers, and shares no code with
cosim.spice. Valid for linear cells with all wire, driver and sense resistances > 0.
"""

from __future__ import annotations

import numpy as np


def dense_crossbar(g, v, r_row, r_col, r_drv, r_sense, floating=False, isolate=False, r_access=0.0):
    """Column currents (amperes) for one input vector v (rows,) on conductances g (rows, cols)."""
    rows, cols = g.shape
    n = 2 * rows * cols
    a = np.zeros((n, n))
    b = np.zeros(n)
    R = lambda i, j: i * cols + j  # noqa: E731
    C = lambda i, j: rows * cols + i * cols + j  # noqa: E731

    def conductor(p, q, cond):
        a[p, p] += cond
        if q is not None:
            a[q, q] += cond
            a[p, q] -= cond
            a[q, p] -= cond

    for i in range(rows):
        selected = v[i] != 0
        row_on = not (isolate and not selected)
        if selected or not floating:
            if row_on:  # driver V_i behind r_drv into row node (i, 0)
                a[R(i, 0), R(i, 0)] += 1 / r_drv
                b[R(i, 0)] += v[i] / r_drv
        for j in range(cols):
            if row_on and g[i, j] > 0:
                cell = 1.0 / (1.0 / g[i, j] + (r_access if isolate else 0.0))
                conductor(R(i, j), C(i, j), cell)
            if row_on and j + 1 < cols:
                conductor(R(i, j), R(i, j + 1), 1 / r_row)
            if i + 1 < rows:
                conductor(C(i, j), C(i + 1, j), 1 / r_col)
    for j in range(cols):
        conductor(C(rows - 1, j), None, 1 / r_sense)
    # Rows with no connection at all (isolated) leave a singular block: pin them to 0 V.
    for k in range(n):
        if a[k, k] == 0:
            a[k, k] = 1.0
    x = np.linalg.solve(a, b)
    return np.array([x[C(rows - 1, j)] / r_sense for j in range(cols)])
