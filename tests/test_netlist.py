"""Netlist text: golden files line by line, determinism, and the circuit it describes."""

import math
import re

import numpy as np
import pytest
from conftest import REPO, random_case

from cosim.specs import ArraySpec
from cosim.spice import build_circuit, render_netlist
from cosim.spice.golden import GOLDEN_CASES, golden_netlist


# A number in netlist text: not part of a name such as r2_0 (its digits follow a word character).
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def _same_line(actual: str, expected: str, rel: float = 1e-13) -> bool:
    """Netlist lines equal as text, numbers to ``rel``: the golden files print conductances to 17
    digits, and numpy's exp/log (lognormal draws) may differ in the last bit between CPUs."""
    if _NUMBER.sub("#", actual) != _NUMBER.sub("#", expected):
        return False
    return all(math.isclose(float(a), float(e), rel_tol=rel, abs_tol=0.0)
               for a, e in zip(_NUMBER.findall(actual), _NUMBER.findall(expected)))


def test_golden_line_comparison_tolerates_the_last_bit_only():
    line = "bcell2_0 r2_0 c2_0 i=2.6462184514870632e-05*sinh(3*(v(r2_0)-v(c2_0)))/3"
    assert _same_line(line.replace("632e-05", "636e-05"), line)  # 1.5e-16 relative
    assert not _same_line(line.replace("4870632e-05", "4874632e-05"), line)  # 1.5e-13 relative
    assert not _same_line(line.replace("sinh(3*", "sinh(4*"), line)
    assert not _same_line(line.replace("r2_0 c2_0", "r2_1 c2_0"), line)


@pytest.mark.parametrize("case", GOLDEN_CASES, ids=lambda c: c.name)
def test_golden_netlist_matches_line_by_line(case):
    expected = (REPO / "netlists" / f"{case.name}.cir").read_text().splitlines()
    actual = golden_netlist(case).text.splitlines()
    for k, (e, a) in enumerate(zip(expected, actual)):
        assert _same_line(a, e), (f"{case.name}.cir line {k + 1} differs (regenerate with `cosim spice golden` "
                                  f"if intended):\n  {a}\n  {e}")
    assert len(actual) == len(expected)


def test_netlist_is_deterministic_and_hash_tracks_content(rng):
    g, v = random_case(rng, 5, 4, 2)
    spec = ArraySpec(5, 4)
    a = render_netlist(build_circuit(spec, g, v[0] != 0), v)
    b = render_netlist(build_circuit(spec, g.copy(), v[0] != 0), v.copy())
    assert a.text == b.text and a.sha256 == b.sha256 and len(a.sha256) == 64
    g2 = g.copy()
    g2[0, 0] *= 1 + 1e-15 * 4
    assert render_netlist(build_circuit(spec, g2, v[0] != 0), v).sha256 != a.sha256


def test_element_counts_and_norton_driver_values():
    spec = ArraySpec(3, 2, r_driver_ohm=4.0)
    g = np.full((3, 2), 1e-4)
    v = np.array([[0.2, 0.1, 0.0]])
    lines = render_netlist(build_circuit(spec, g, v[0] != 0), v).text.splitlines()
    names = [ln.split()[0] for ln in lines if ln and ln[0] not in "*."]
    assert sum(n.startswith("rcell") for n in names) == 6
    assert sum(n.startswith("rrow") for n in names) == 3 * 1
    assert sum(n.startswith("rcol") for n in names) == 2 * 2
    assert sum(n.startswith("rsense") for n in names) == 2
    drivers = {ln.split()[0]: ln.split() for ln in lines if ln.startswith("idrv")}
    assert set(drivers) == {"idrv0", "idrv1", "idrv2"}  # grounded: the 0 V row is driven too
    assert float(drivers["idrv0"][-1]) == 0.2 / 4.0 and drivers["idrv0"][1:3] == ["0", "r0_0"]
    assert lines[-2] == ".op" and lines[-1] == ".end"


def test_floating_1t1r_ideal_wires_and_virtual_ground():
    g = np.full((3, 2), 1e-4)
    v = np.array([[0.2, 0.0, 0.1]])
    floating = render_netlist(build_circuit(ArraySpec(3, 2, unselected="floating"), g, v[0] != 0), v).text
    assert "idrv1" not in floating and "rcell1_0" in floating  # row 1 floats but its cells remain
    t1r = render_netlist(build_circuit(ArraySpec(3, 2, cell="1T1R", r_access_ohm=500), g, v[0] != 0), v).text
    assert "rcell1_0" not in t1r and "racc0_0 r0_0 t0_0 500" in t1r and "rcol1_0" in t1r
    ideal = render_netlist(
        build_circuit(ArraySpec(3, 2, r_wire_row_ohm=0, r_wire_col_ohm=0, r_sense_ohm=0, r_driver_ohm=0), g, v[0] != 0),
        v,
    ).text
    assert "rrow" not in ideal and "rcol" not in ideal
    assert "vdrv0 r0 0 dc 0.20000000000000001" in ideal and "vsense1 c1 0 dc 0" in ideal
    assert "rcell2_1 r2 c1 10000" in ideal


def test_sweep_netlist_holds_every_vector(rng):
    g, v = random_case(rng, 2, 2, 5)
    text = render_netlist(build_circuit(ArraySpec(2, 2), g, v[0] != 0), v).text
    assert ".dc vidx 0 4 1" in text and "vidx idx 0 dc 0" in text
    assert text.count(f"{v[4, 1] / 2.5:.17g}") >= 2
