"""MBAT primitives: orthogonal roles, exact unbinding, atoms, bundling, similarity."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest
from scipy.linalg import hadamard

import vsa
from vsa.core import HADAMARD_ROUNDS


@pytest.mark.parametrize("kind", ["hadamard", "dense", "sign"])
@pytest.mark.parametrize("dim", [64, 256])
def test_roles_are_orthogonal(kind, dim):
    q = vsa.make_role("address", dim, seed=3, kind=kind).matrix().astype(np.float64)
    np.testing.assert_allclose(q.T @ q, np.eye(dim), atol=1e-5)


def test_hadamard_role_matches_float64_reference():
    dim = 64
    role = vsa.make_role("city", dim, seed=1)
    reference = np.eye(dim)
    for r in range(HADAMARD_ROUNDS):
        step = hadamard(dim) @ np.diag(role.signs[r].astype(np.float64)) / np.sqrt(dim)
        reference = step @ reference
    np.testing.assert_allclose(role.matrix(), reference, atol=1e-6)


@pytest.mark.parametrize("kind", ["hadamard", "dense", "sign"])
def test_unbind_undoes_bind(kind):
    x = np.random.default_rng(0).standard_normal((5, 128)).astype(np.float32)
    role = vsa.make_role("k", 128, kind=kind)
    np.testing.assert_allclose(vsa.unbind(role, vsa.bind(role, x)), x, atol=1e-5)
    np.testing.assert_allclose(vsa.unbind(role, vsa.bind(role, x[0])), x[0], atol=1e-5)


def test_binding_is_non_commutative_except_sign():
    x = vsa.atom("x", 256)
    a, b = vsa.make_role("a", 256), vsa.make_role("b", 256)
    ab, ba = vsa.bind(a, vsa.bind(b, x)), vsa.bind(b, vsa.bind(a, x))
    assert abs(vsa.similarity(ab, ba)) < 0.2
    sa, sb = vsa.make_role("a", 256, kind="sign"), vsa.make_role("b", 256, kind="sign")
    assert (
        vsa.similarity(vsa.bind(sa, vsa.bind(sb, x)), vsa.bind(sb, vsa.bind(sa, x)))
        == 1
    )


def test_non_power_of_two_dim_is_rejected_for_hadamard():
    with pytest.raises(ValueError, match="power of two.*got 100.*dim=64 or 128"):
        vsa.make_role("a", 100)
    with pytest.raises(ValueError, match="power of two"):
        vsa.JSONEncoder(dim=1000)
    assert vsa.make_role("a", 100, kind="dense").matrix().shape == (100, 100)


def test_bad_role_arguments():
    with pytest.raises(ValueError, match="kind must be one of"):
        vsa.make_role("a", 64, kind="gaussian")
    with pytest.raises(ValueError, match="dim must be an integer >= 2"):
        vsa.make_role("a", 1)
    with pytest.raises(ValueError, match=r"x must have shape \(dim,\) or \(m, dim\)"):
        vsa.bind(vsa.make_role("a", 64), np.zeros(32))


def test_atoms_are_unit_bipolar_and_distinct():
    a = vsa.atoms(["x", "y", "x"], 512, seed=5)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    assert set(np.unique(np.abs(a))) == {np.float32(1 / np.sqrt(512))}
    assert np.array_equal(a[0], a[2])
    assert abs(vsa.similarity(a[0], a[1])) < 0.2
    assert not np.array_equal(vsa.atom("x", 512, seed=6), a[0])


_PROBE = """
import hashlib, vsa
h = hashlib.sha256(vsa.atom("caf\\u00e9", 256, 7).tobytes())
h.update(vsa.make_role("k", 256, 7).matrix().tobytes())
h.update(vsa.JSONEncoder(256, 7).encode([{"a": [1, "x y"], "b": None}]).tobytes())
print(h.hexdigest())
"""


def test_same_seed_same_vectors_across_processes():
    there = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "1"},
    ).stdout
    h = hashlib.sha256(vsa.atom("caf\u00e9", 256, 7).tobytes())
    h.update(vsa.make_role("k", 256, 7).matrix().tobytes())
    h.update(vsa.JSONEncoder(256, 7).encode([{"a": [1, "x y"], "b": None}]).tobytes())
    assert there.strip() == h.hexdigest()


def test_bundle_tie_rule_is_plus_one():
    # C36: sums [0, -2, 2, 0]; ties go to +1.
    out = vsa.bundle([[1, -1, 1, -1], [-1, -1, 1, 1]], quantize=True)
    assert out.dtype == np.int8
    assert out.tolist() == [1, -1, 1, 1]


def test_bundle_normalises_and_weights():
    v = vsa.bundle([[3.0, 0.0], [0.0, 4.0]], weights=[1.0, 0.0])
    np.testing.assert_allclose(v, [1.0, 0.0])
    assert np.array_equal(vsa.bundle([[1.0, 1.0], [-1.0, -1.0]]), [0.0, 0.0])
    with pytest.raises(ValueError, match=r"weights must have shape \(2,\)"):
        vsa.bundle([[1.0], [2.0]], weights=[1.0])
    with pytest.raises(ValueError, match="non-empty 2-d"):
        vsa.bundle(np.zeros((0, 4)))


def test_integer_inputs_never_overflow():
    # C37: an int8 accumulator would give 10 000 mod 256 = 16.
    ones = np.ones(10_000, dtype=np.int8)
    assert vsa.similarity(ones, ones) == 1.0
    assert vsa.bundle(np.stack([ones] * 300), quantize=True).tolist() == [1] * 10_000
    big = np.full((2, 4), 2**62, dtype=np.int64)
    np.testing.assert_allclose(vsa.similarity(big, big), np.ones((2, 2)))


def test_similarity_zero_vectors_and_shapes():
    assert vsa.similarity(np.zeros(4), np.ones(4)) == 0.0
    sims = vsa.similarity(np.eye(3), np.zeros((2, 3)))
    assert sims.shape == (3, 2) and not np.isnan(sims).any()
    with pytest.raises(ValueError, match="same width"):
        vsa.similarity(np.ones(3), np.ones(4))


def test_item_memory_cleanup():
    names = [f"v{i}" for i in range(20)]
    memory = vsa.ItemMemory(256)
    memory.add(names, vsa.atoms(names, 256))
    noisy = vsa.atom("v7", 256) + 0.5 * vsa.atom("noise", 256)
    best = memory.cleanup(noisy, k=2)
    assert best[0][0] == "v7" and best[0][1] > 0.8 and len(best) == 2
    assert memory.cleanup(noisy, k=3, threshold=0.5) == best[:1]
    assert vsa.ItemMemory(8).cleanup(np.ones(8)) == []
    with pytest.raises(ValueError, match="got 1 labels but 2 vectors"):
        memory.add(["a"], np.ones((2, 256)))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        memory.cleanup(noisy, k=0)


def test_similarity_at_float64_limits_and_with_nan():
    big = np.full(8, 1e200)
    assert vsa.similarity(big, big) == pytest.approx(1.0)
    tiny = np.full(8, 1e-300)
    assert vsa.similarity(tiny, -tiny) == pytest.approx(-1.0)
    both = vsa.similarity(np.stack([big, tiny]), big)
    np.testing.assert_allclose(both, [[1.0], [1.0]])
    with pytest.raises(ValueError, match="a holds NaN or infinite values"):
        vsa.similarity(np.full(8, np.nan), np.ones(8))
    with pytest.raises(ValueError, match="b holds NaN or infinite values"):
        vsa.similarity(np.ones((2, 8)), np.full((3, 8), np.inf))


@pytest.mark.parametrize("args, match", [
    ((0, 10), "n_fields must be an integer >= 1, got 0"),
    ((10, 10, 1.0), "accuracy must be below 1, got 1.0"),
    ((10, 10, float("nan")), "accuracy must be a finite number > 0, got nan"),
    ((10**9, 10**9), "no dim up to 1048576 reaches accuracy 0.99"),
])
def test_capacity_dim_rejects_impossible_requests(args, match):
    with pytest.raises(ValueError, match=match):
        vsa.capacity_dim(*args)


def test_expected_accuracy_checks_dim():
    with pytest.raises(ValueError, match="dim must be an integer >= 1, got 0"):
        vsa.expected_accuracy(0, 2, 2)


def test_bundle_bind_and_memory_reject_nan_and_survive_huge_values():
    role = vsa.make_role("r", 8)
    for call in (lambda: vsa.bind(role, np.full(8, np.nan)),
                 lambda: vsa.unbind(role, np.full(8, 1e39)),
                 lambda: vsa.ItemMemory(8).add(["a"], np.full((1, 8), np.inf))):
        with pytest.raises(ValueError, match="NaN or infinite values"):
            call()
    with pytest.raises(ValueError, match="vectors hold NaN or infinite values"):
        vsa.bundle(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="weights hold NaN or infinite values"):
        vsa.bundle(np.ones((2, 2)), [1.0, np.nan])
    huge = vsa.bundle(np.array([[1e308, 1e308, 0, 0], [1e308, 0, 0, 0]]))
    np.testing.assert_allclose(huge, np.array([2, 1, 0, 0]) / np.sqrt(5), rtol=1e-6)
    weighted = vsa.bundle(np.array([[1e200, 1e200, 0, 0]]), weights=[1e200])
    np.testing.assert_allclose(weighted, np.array([1, 1, 0, 0]) / np.sqrt(2), rtol=1e-6)
    # the tie rule holds at any scale
    ties = np.array([[3e307, -3e307, 1, 0], [-3e307, 3e307, -1, 0]])
    np.testing.assert_array_equal(vsa.bundle(ties, quantize=True), [1, 1, 1, 1])
    memory = vsa.ItemMemory(4)
    memory.add(["big"], np.full((1, 4), 1e30, dtype=np.float32))
    assert memory.cleanup(np.ones(4))[0] == ("big", pytest.approx(1.0))
    assert vsa.atoms([], 8).shape == (0, 8)
