import math

import pytest

from sparserl.sparse import global_density, layer_densities, layer_nonzero_counts

# Hand-worked ERK example (shapes are (n_out, n_in)):
#   a: (2, 2)   size   4, raw (n_in+n_out)/(n_in*n_out) = 4/4    = 1.0
#   b: (10, 10) size 100, raw                           = 20/100 = 0.2
#   c: (5, 20)  size 100, raw                           = 25/100 = 0.25
# total 204, sparsity 0.5 -> target non-zeros N = round(0.5 * 204) = 102.
# Round 1: eps = 102 / (1.0*4 + 0.2*100 + 0.25*100) = 102/49 = 2.08 -> density of a = 2.08 > 1,
#          so a becomes dense (4 weights).
# Round 2: eps = (102 - 4) / (0.2*100 + 0.25*100) = 98/45 = 2.1778
#          b: 0.2 * 98/45 = 0.435556 (43.556 weights), c: 0.25 * 98/45 = 0.544444 (54.444)
#          none exceeds 1 -> done.
# Integer counts: floors 4 + 43 + 54 = 101, one missing -> largest remainder (.556, b) gets it:
#          a 4, b 44, c 54, total 102.
SHAPES = {"a": (2, 2), "b": (10, 10), "c": (5, 20)}


def test_erk_hand_example_with_dense_fallback():
    d = layer_densities(SHAPES, 0.5, "erk")
    assert d["a"] == 1.0
    assert math.isclose(d["b"], 0.2 * 98 / 45, rel_tol=1e-12)
    assert math.isclose(d["c"], 0.25 * 98 / 45, rel_tol=1e-12)
    assert layer_nonzero_counts(SHAPES, 0.5, "erk") == {"a": 4, "b": 44, "c": 54}


def test_erk_without_fallback_is_proportional():
    # sparsity 0.9: N = round(0.1 * 204) = 20; eps = 20/49; a: 20/49 = 0.408 (< 1, no fallback)
    d = layer_densities(SHAPES, 0.9, "erk")
    assert math.isclose(d["a"], 20 / 49) and math.isclose(d["b"], 0.2 * 20 / 49)
    counts = layer_nonzero_counts(SHAPES, 0.9, "erk")
    # exact 1.633, 8.163, 10.204 -> floors 1 + 8 + 10 = 19; +1 to a (remainder .633)
    assert counts == {"a": 2, "b": 8, "c": 10}


def test_uniform():
    assert layer_densities(SHAPES, 0.7, "uniform") == {n: 61 / 204 for n in SHAPES}
    # N = round(0.3 * 204) = 61; exact 1.196, 29.9, 29.9 -> floors 1+29+29 = 59; +1 to b and c
    assert layer_nonzero_counts(SHAPES, 0.7, "uniform") == {"a": 1, "b": 30, "c": 30}
    # tie in remainders is broken by layer order
    assert layer_nonzero_counts({"x": (3, 1), "y": (3, 1)}, 0.5, "uniform") == {"x": 2, "y": 1}


@pytest.mark.parametrize("method", ["erk", "uniform"])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.8, 0.9, 0.95, 0.99])
def test_global_target_met_exactly(method, sparsity):
    shapes = {"l0": (64, 11), "l1": (64, 64), "l2": (3, 64), "l3": (1, 7)}
    total = sum(o * i for o, i in shapes.values())
    counts = layer_nonzero_counts(shapes, sparsity, method)
    assert sum(counts.values()) == round((1 - sparsity) * total)
    assert all(1 <= counts[n] <= o * i for n, (o, i) in shapes.items())
    assert math.isclose(global_density(counts, shapes), round((1 - sparsity) * total) / total)
    d = layer_densities(shapes, sparsity, method)
    assert math.isclose(sum(d[n] * o * i for n, (o, i) in shapes.items()), round((1 - sparsity) * total))
    assert all(0 < v <= 1 for v in d.values())


def test_erk_iterative_fallback_several_layers():
    # tiny layers 1x1, 2x2 have huge raw density; both must become dense, rest re-solved
    shapes = {"t1": (1, 1), "t2": (2, 2), "big": (50, 50)}
    d = layer_densities(shapes, 0.5, "erk")
    assert d["t1"] == d["t2"] == 1.0
    n = round(0.5 * (1 + 4 + 2500))
    assert math.isclose(d["big"], (n - 5) / 2500)


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, float("nan"), "x"])
def test_bad_sparsity_raises(bad):
    with pytest.raises(ValueError, match="sparsity"):
        layer_densities(SHAPES, bad, "erk")


def test_bad_method_and_infeasible():
    with pytest.raises(ValueError, match="'magic'.*erk, uniform"):
        layer_nonzero_counts(SHAPES, 0.5, "magic")
    with pytest.raises(ValueError, match="0.9999.*one weight per layer"):
        layer_nonzero_counts({"a": (2, 2), "b": (30, 30), "c": (30, 30)}, 0.9999, "erk")


def test_layer_rounded_to_zero_gets_one_weight():
    # uniform 0.95: N = round(0.05 * 107) = 5; exact 0.05, 5.0, 0.35 -> t would get 0 and z 0
    counts = layer_nonzero_counts({"t": (1, 1), "big": (10, 10), "z": (1, 6)}, 0.95, "uniform")
    assert sum(counts.values()) == 5 and counts["t"] == 1 and counts["z"] == 1 and counts["big"] == 3
    with pytest.raises(ValueError, match="shape"):
        layer_densities({"a": (0, 3)}, 0.5)
