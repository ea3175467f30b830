"""LVQ: encode/decode error bounds, kernels against float64 decoded vectors, errors."""

import numpy as np
import pytest

from leanvec import LVQ
from leanvec._kernels import lvq as K
from leanvec._kernels.topk import finish_heaps
from leanvec.lvq import LVQCodes, pack_codes, unpack_codes

LEVELS = [(8, 0), (4, 0), (4, 8), (8, 8), (4, 4)]


def _data(rng, n=300, dim=37):
    return (rng.standard_normal((n, dim)) * rng.uniform(0.1, 3.0, (n, 1))).astype(
        np.float32)


@pytest.mark.parametrize("bits,residual_bits", LEVELS)
def test_error_within_half_a_step(rng, bits, residual_bits):
    x = _data(rng)
    lvq = LVQ(bits, residual_bits).fit(x)
    codes = lvq.encode(x)
    steps, _ = lvq.kernel_constants(codes)
    bound = steps / 2 if not residual_bits else steps / ((1 << residual_bits) - 1) / 2
    err = np.abs(x.astype(np.float64) - lvq.decode(codes))
    assert np.all(err <= bound[:, None] * (1 + 1e-2) + 1e-6)


@pytest.mark.parametrize("bits,residual_bits", LEVELS)
def test_documented_dtypes_and_shapes(rng, bits, residual_bits):
    x = _data(rng, 20, 9)
    codes = LVQ(bits, residual_bits).fit(x).encode(x)
    assert codes.codes.dtype == np.uint8
    assert codes.codes.shape == (20, -(-bits * 9 // 8))
    assert codes.steps.dtype == np.float16 and codes.biases.dtype == np.float16
    if residual_bits:
        assert codes.residual.shape == (20, -(-residual_bits * 9 // 8))
    else:
        assert codes.residual is None


def test_four_bit_packing_round_trip_and_nibble_order(rng):
    codes = rng.integers(0, 16, (5, 7)).astype(np.uint8)
    packed = pack_codes(codes, 4)
    assert packed.shape == (5, 4)
    assert packed[0, 0] == codes[0, 0] | (codes[0, 1] << 4)
    np.testing.assert_array_equal(unpack_codes(packed, 4, 7), codes)


def _decoded64(lvq, codes):
    return lvq.decode(codes).astype(np.float64)


@pytest.mark.parametrize("bits,residual_bits", LEVELS)
def test_kernels_match_decoded_vectors(rng, bits, residual_bits):
    x = _data(rng, 40, 33)
    q = rng.standard_normal(33).astype(np.float32)
    lvq = LVQ(bits, residual_bits).fit(x)
    codes = lvq.encode(x)
    steps, biases = lvq.kernel_constants(codes)
    xhat = _decoded64(lvq, codes)
    centred_q = q - lvq.mean
    offset = float(q.astype(np.float64) @ lvq.mean)
    for i in range(len(codes)):
        if residual_bits:
            ip = K.lvq_residual_ip(q, codes.codes[i], codes.residual[i], steps[i],
                                   biases[i], bits, residual_bits)
            l2 = K.lvq_residual_l2(centred_q, codes.codes[i], codes.residual[i],
                                   steps[i], biases[i], bits, residual_bits)
        else:
            ip_fn, l2_fn = (K.lvq8_ip, K.lvq8_l2) if bits == 8 else (
                K.lvq4_ip, K.lvq4_l2)
            ip = ip_fn(q, codes.codes[i], steps[i], biases[i])
            l2 = l2_fn(centred_q, codes.codes[i], steps[i], biases[i])
        np.testing.assert_allclose(offset + ip, q @ xhat[i], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(l2, ((q - xhat[i]) ** 2).sum(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("bits,residual_bits", [(8, 0), (4, 8)])
def test_batch_scan_matches_decoded_ranking(rng, bits, residual_bits):
    x = _data(rng, 200, 16)
    queries = rng.standard_normal((7, 16)).astype(np.float32)
    lvq = LVQ(bits, residual_bits).fit(x)
    codes = lvq.encode(x)
    steps, biases = lvq.kernel_constants(codes)
    residual = codes.residual if residual_bits else np.empty((200, 0), np.uint8)
    heap_d = np.full((7, 5), np.inf, np.float32)
    heap_i = np.full((7, 5), K.NO_ID, np.int64)
    offsets = (queries @ lvq.mean).astype(np.float32)
    K.lvq_scan(queries, offsets, codes.codes, residual, steps, biases, bits,
               residual_bits, K.KIND_IP, heap_d, heap_i)
    K.heap_sort_inplace(heap_d[0], heap_i[0])
    ref = -(queries[0].astype(np.float64) @ _decoded64(lvq, codes).T)
    np.testing.assert_array_equal(heap_i[0], np.argsort(ref, kind="stable")[:5])
    np.testing.assert_allclose(heap_d[0], np.sort(ref)[:5], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dim", [1, 16, 300])
def test_filtered_ip_scan_equals_the_plain_scan(rng, dim):
    x = _data(rng, 500, dim)
    queries = rng.standard_normal((6, dim)).astype(np.float32)
    queries[1] = 0.0  # a zero query: every bound collapses to the offset
    queries[2] *= np.float32(1e30)  # a scale far from the data's
    queries[3, 0] = np.float32(1e4)  # one dominant coordinate: coarse int16 rounding
    lvq = LVQ(8).fit(x)
    codes = lvq.encode(x)
    steps, biases = lvq.kernel_constants(codes)
    offsets = (queries @ lvq.mean).astype(np.float32)
    results = []
    for filtered in (False, True, "split"):
        heap_d = np.full((6, 9), np.inf, np.float32)
        heap_i = np.full((6, 9), K.NO_ID, np.int64)
        if filtered:
            K.lvq8_ip_scan(queries, offsets, codes.codes, steps, biases, heap_d,
                           heap_i, filtered == "split")
        else:
            K.lvq_scan(queries, offsets, codes.codes, np.empty((500, 0), np.uint8),
                       steps, biases, 8, 0, K.KIND_IP, heap_d, heap_i)
        finish_heaps(heap_d, heap_i)
        results.append((heap_d, heap_i))
    for found in results[1:]:
        np.testing.assert_array_equal(found[1], results[0][1])
        np.testing.assert_allclose(found[0], results[0][0], rtol=1e-6, atol=1e-6)
    ref = -(queries[0].astype(np.float64) @ _decoded64(lvq, codes).T)
    np.testing.assert_allclose(results[1][0][0], np.sort(ref)[:9], rtol=1e-5,
                               atol=1e-4)


@pytest.mark.parametrize("bits,residual_bits", LEVELS)
def test_decoded_rows_are_the_centred_reconstructions(rng, bits, residual_bits):
    x = _data(rng, 40, 9)
    lvq = LVQ(bits, residual_bits).fit(x)
    codes = lvq.encode(x)
    steps, biases = lvq.kernel_constants(codes)
    residual = codes.residual if residual_bits else np.empty((40, 0), np.uint8)
    out = np.empty((25, 9), np.float32)
    K.lvq_decode_rows(codes.codes, residual, steps, biases, bits, residual_bits, 10,
                      out)
    ref = _decoded64(lvq, codes)[10:35] - lvq.mean
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_candidate_distances_and_sorting(rng):
    x = _data(rng, 50, 8)
    queries = (x[:3] - 0.01).astype(np.float32)
    lvq = LVQ(8).fit(x)
    codes = lvq.encode(x)
    steps, biases = lvq.kernel_constants(codes)
    cand = np.array([[0, 5, -1], [1, 2, 3], [9, 2, 1]], dtype=np.int64)
    out = np.empty((3, 3), np.float32)
    centred = np.ascontiguousarray(queries - lvq.mean)
    K.lvq_candidate_distances(centred, np.zeros(3, np.float32), codes.codes,
                              np.empty((50, 0), np.uint8), steps, biases, 8, 0,
                              K.KIND_L2, cand, out)
    assert out[0, 2] == np.inf
    ref = ((queries[1] - _decoded64(lvq, codes)[[1, 2, 3]]) ** 2).sum(1)
    np.testing.assert_allclose(out[1], ref, rtol=1e-5, atol=1e-5)
    ids, dist = np.empty((3, 4), np.int64), np.empty((3, 4), np.float32)
    K.sort_candidates(out, cand, 4, dist, ids)
    assert ids[0, 0] == 0 and ids[0, 2] == -1 and ids[0, 3] == -1
    assert np.isinf(dist[0, 3])


def test_constant_vector_gets_step_one_and_dimension_one(rng):
    # both rows are constant once the mean (2, 3, 4) is subtracted
    x = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]], dtype=np.float32)
    lvq = LVQ(8).fit(x)
    codes = lvq.encode(x)
    steps, _ = lvq.kernel_constants(codes)
    np.testing.assert_array_equal(steps, [lvq.scale, lvq.scale])
    np.testing.assert_array_equal(lvq.decode(codes), x)
    # a constant row float16 cannot hold: a tiny step codes the rounding error
    odd = np.array([[0.1, 0.1], [0.0, 0.0]], dtype=np.float32)
    lvq = LVQ(8).fit(odd)
    codes = lvq.encode(odd)
    assert 0 < codes.steps[0] < 1e-3
    np.testing.assert_allclose(lvq.decode(codes), odd, atol=1e-6)

    one = rng.standard_normal((10, 1)).astype(np.float32)
    lvq1 = LVQ(4).fit(one)
    np.testing.assert_allclose(lvq1.decode(lvq1.encode(one)), one, atol=4e-3)


def test_large_values_scale_instead_of_overflowing():
    # C12: values far beyond float16's range keep their order and stay finite
    x = np.array([[0.1], [0.9], [1.9]], dtype=np.float32) * 1e5
    lvq = LVQ(8).fit(x)
    codes = lvq.encode(x)
    assert np.isfinite(codes.steps).all() and np.isfinite(codes.biases).all()
    decoded = lvq.decode(codes)[:, 0]
    assert np.all(np.diff(decoded) > 0)
    np.testing.assert_allclose(decoded, x[:, 0], rtol=1e-5)


def test_far_out_of_range_vectors_are_rejected():
    lvq = LVQ(8).fit(np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32))
    with pytest.raises(ValueError, match="too far from the fitted data"):
        lvq.encode(np.array([[1e9, 0.0]]))


def test_non_finite_rows_are_rejected(rng):
    x = _data(rng, 10, 4)
    x[6, 2] = np.nan
    with pytest.raises(ValueError, match="row 6"):
        LVQ(8).fit(x)
    lvq = LVQ(8).fit(_data(rng, 10, 4))
    with pytest.raises(ValueError, match="row 0"):
        lvq.encode(np.array([[np.inf, 0, 0, 0]]))


def test_bad_parameters_and_unfitted_use(rng):
    with pytest.raises(ValueError, match="bits must be one of"):
        LVQ(bits=2)
    with pytest.raises(ValueError, match="residual_bits must be one of"):
        LVQ(residual_bits=3)
    with pytest.raises(ValueError, match="not fitted"):
        LVQ().encode(np.ones((2, 3)))
    lvq = LVQ(8).fit(_data(rng, 10, 4))
    with pytest.raises(ValueError, match="4 are expected"):
        lvq.encode(np.ones((2, 3)))


def test_codes_from_another_quantizer_are_rejected(rng):
    x8, x5 = _data(rng, 10, 8), _data(rng, 10, 5)
    lvq = LVQ(8).fit(x8)
    with pytest.raises(ValueError, match=r"expects \(10, 8\)"):
        lvq.decode(LVQ(8).fit(x5).encode(x5))
    with pytest.raises(ValueError, match=r"expects \(10, 8\)"):
        lvq.decode(LVQ(4).fit(x8).encode(x8))
    with pytest.raises(ValueError, match="codes.residual has shape"):
        lvq.decode(LVQ(8, 8).fit(x8).encode(x8))
    with pytest.raises(TypeError, match="must be LVQCodes"):
        lvq.decode(np.zeros((10, 8), np.uint8))


@pytest.mark.parametrize("bits,residual_bits", [(8, 0), (4, 8)])
def test_save_load_round_trip(rng, tmp_path, bits, residual_bits):
    x = _data(rng, 30, 6)
    lvq = LVQ(bits, residual_bits).fit(x * 1000)
    lvq.save(tmp_path / "q.lvec")
    loaded = LVQ.load(tmp_path / "q.lvec")
    codes = lvq.encode(x)
    np.testing.assert_array_equal(loaded.decode(codes), lvq.decode(codes))
    meta, arrays = codes.to_state()
    again = LVQCodes.from_state(meta, arrays).take([3, 1])
    np.testing.assert_array_equal(lvq.decode(again), lvq.decode(codes)[[3, 1]])


def test_load_rejects_a_foreign_kind(rng, tmp_path):
    from leanvec.persistence import save_state

    save_state(tmp_path / "x.lvec", "leanvec.PQ", {}, {})
    with pytest.raises(ValueError, match="expected 'leanvec.LVQ'"):
        LVQ.load(tmp_path / "x.lvec")
