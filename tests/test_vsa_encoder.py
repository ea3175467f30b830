"""JSONEncoder: the encoding table, read-back, numbers, policies for awkward JSON."""

import json
import math

import numpy as np
import pytest

import vsa

DIM = 256


@pytest.fixture(scope="module")
def enc():
    return vsa.JSONEncoder(DIM, seed=11)


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def test_object_and_array_match_float64_reference(enc):
    x, y = enc.encode_values(["x"])[0], enc.encode_values(["y z"])[0]
    qa = vsa.make_role("k:a", DIM, 11).matrix().astype(np.float64)
    qb = vsa.make_role("k:b", DIM, 11).matrix().astype(np.float64)
    qs = vsa.make_role("s:seq", DIM, 11).matrix().astype(np.float64)

    got = enc.encode([{"a": "x", "b": ["x", "y z"]}])[0]
    array = _unit(qs @ x + qs @ qs @ y)
    np.testing.assert_allclose(got, _unit(qa @ x + qb @ array), atol=1e-5)


def test_string_is_token_bag_plus_whole_string():
    enc = vsa.JSONEncoder(DIM, seed=2)
    tok = vsa.atoms(["red", "car"], DIM, 2, "token")
    whole = vsa.atoms(["Red car"], DIM, 2, "string")[0]
    expected = _unit(_unit(tok.sum(0)) + whole)
    np.testing.assert_allclose(enc.encode(["Red car"])[0], expected, atol=1e-6)
    shared = vsa.similarity(*enc.encode(["red car", "red bike"]))
    assert 0.2 < shared < 0.6


def test_swapped_nesting_is_dissimilar(enc):
    a, b = enc.encode([{"a": {"b": "x"}}, {"b": {"a": "x"}}])
    assert abs(vsa.similarity(a, b)) < 0.1
    mapped = vsa.JSONEncoder(DIM, roles="sign").encode(
        [{"a": {"b": "x"}}, {"b": {"a": "x"}}]
    )
    assert vsa.similarity(*mapped) == pytest.approx(1.0)


def test_closer_numbers_are_more_similar():
    enc = vsa.JSONEncoder(DIM, ranges={"n": (0, 100)})
    v = enc.encode([{"n": n} for n in (50, 51, 55, 70, 100)])
    sims = vsa.similarity(v[0], v[1:])[0]
    assert np.all(np.diff(sims) < 0)
    codes = enc.encode_values([0, 30, 100], "n")
    np.testing.assert_allclose(
        vsa.similarity(codes[0], codes[1:])[0], [0.7, 0.0], atol=2 / DIM
    )


def test_unfitted_numbers_use_signed_log_scale():
    codes = vsa.JSONEncoder(DIM).encode_values([1.0, 2.0, 1000.0, -1000.0])
    sims = vsa.similarity(codes[0], codes[1:])[0]
    assert sims[0] > sims[1] > sims[2]


def test_read_back_accuracy_matches_capacity_formula():
    n_fields, n_values, dim = 9, 50, 64
    rng = np.random.default_rng(0)
    values = [f"v{i}" for i in range(n_values)]
    picks = rng.integers(0, n_values, size=(300, n_fields))
    records = [{f"f{j}": values[p] for j, p in enumerate(row)} for row in picks]
    enc = vsa.JSONEncoder(dim, seed=4, string_tokens=0.0)
    vectors = enc.encode(records)

    hits = 0
    for j in range(n_fields):
        found = enc.query(vectors, f"f{j}", candidates=values, k=1, threshold=-1)
        hits += sum(f[0][0] == values[p] for f, p in zip(found, picks[:, j]))
    accuracy = hits / picks.size
    expected = vsa.expected_accuracy(dim, n_fields, n_values)
    assert abs(accuracy - expected) < 0.05, (accuracy, expected)


def test_capacity_formula_gives_the_rule_of_thumb():
    assert vsa.capacity_dim(11, 1000) == pytest.approx(330, abs=3)
    assert vsa.expected_accuracy(330, 11, 1000) == pytest.approx(0.99, abs=0.002)


def test_fit_query_fields_and_positions():
    records = [
        {
            "name": f"n{i}",
            "address": {"city": ["Oslo", "Rome"][i % 2], "zip": 1000 + i},
            "children": [{"name": "ann"}, {"name": f"kid{i}"}],
            "ok": i % 3 == 0,
        }
        for i in range(40)
    ]
    enc = vsa.JSONEncoder(DIM, seed=5).fit(records)
    vectors = enc.encode(records)
    assert enc.fitted_ranges_["address.zip"] == (1000.0, 1039.0)
    assert enc.query(vectors[3], "address.city")[0][0] == "Rome"
    assert enc.query(vectors[3], "children[1].name")[0][0] == "kid3"
    assert enc.query(vectors[3], "children[0].name")[0][0] == "ann"
    assert enc.query(vectors[3], ("address", "zip"))[0][0] == 1003
    assert enc.query(vectors[3], "ok")[0][0] is True
    batch = enc.query(vectors[:2], "name", k=1)
    assert [b[0][0] for b in batch] == ["n0", "n1"]
    assert enc.query(vectors[3], "address.city", candidates=["Paris"]) == []


def test_query_errors(enc):
    v = enc.encode([{"a": 1}])[0]
    with pytest.raises(ValueError, match="no candidate values for path 'a'"):
        enc.query(v, "a")
    with pytest.raises(ValueError, match="path 'a..b' is malformed"):
        enc.query(v, "a..b", candidates=[1])
    with pytest.raises(ValueError, match="vectors must have shape"):
        enc.query(v[:10], "a", candidates=[1])
    with pytest.raises(ValueError, match="NaN or infinite"):
        enc.query(np.full(DIM, np.nan), "a", candidates=[1])


def test_batch_invariance_and_determinism(enc):
    records = [{"a": i, "b": [str(i)] * (i % 4), "c": {"d": None}} for i in range(30)]
    together = enc.encode(records)
    alone = np.concatenate([enc.encode([r]) for r in records])
    np.testing.assert_allclose(together, alone, atol=1e-6)
    np.testing.assert_array_equal(together, vsa.JSONEncoder(DIM, 11).encode(records))


def test_weights_and_soft_mode():
    plain = vsa.JSONEncoder(DIM, weights={"noise": 0.0})
    a, b = plain.encode([{"id": "x", "noise": "p"}, {"id": "x", "noise": "q"}])
    assert vsa.similarity(a, b) == pytest.approx(1.0)
    hard = vsa.JSONEncoder(DIM).encode([{"a": "x"}, {"b": "x"}])
    soft = vsa.JSONEncoder(DIM, soft=1.0).encode([{"a": "x"}, {"b": "x"}])
    assert abs(vsa.similarity(*hard)) < 0.2
    assert vsa.similarity(*soft) > 0.4


def test_empty_containers_and_constants_are_distinct(enc):
    v = enc.encode([{}, [], None, True, False, "", 0])
    sims = vsa.similarity(v, v)
    assert np.all(np.abs(sims[~np.eye(7, dtype=bool)]) < 0.3)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)


def test_deep_nesting_encodes_iteratively(enc):
    # C32: 10 000 levels, far beyond Python's recursion limit.
    deep = "leaf"
    for _ in range(10_000):
        deep = {"a": deep}
    v = enc.encode([deep])[0]
    assert np.isfinite(v).all() and abs(np.linalg.norm(v) - 1) < 1e-4
    wrapped = [[[[["x"]]]]]
    inner = enc.unbind_path(enc.encode([wrapped])[0], "[0][0][0][0][0]")
    assert vsa.similarity(inner, enc.encode(["x"])[0]) > 0.99


def test_unicode_key_policy(enc):
    # C34: lone surrogates hash; NFC and NFD spellings are one key; escapes == literals.
    lone = enc.encode([{"\udcff": 1}, {"\udcff": 1}, {"\udcfe": 1}])
    assert np.array_equal(lone[0], lone[1]) and vsa.similarity(lone[0], lone[2]) < 0.5
    nfc, nfd = enc.encode([{"\u00e9": "caf\u00e9"}, {"e\u0301": "cafe\u0301"}])
    np.testing.assert_array_equal(nfc, nfd)
    escaped = json.loads('{"\\ud83d\\ude00": "\\ud83d\\ude00"}')
    np.testing.assert_array_equal(enc.encode([escaped]), enc.encode([{"😀": "😀"}]))
    both = enc.encode([{"\u00e9": 1, "e\u0301": 2}, {"\u00e9": 2}])
    np.testing.assert_array_equal(both[0], both[1])


def test_duplicate_keys_last_wins(enc):
    parsed = json.loads('{"a": 1, "a": "two"}')
    np.testing.assert_array_equal(enc.encode([parsed]), enc.encode([{"a": "two"}]))


def test_number_policies(enc):
    # C35: no NaN anywhere; each special value has its own vector.
    values = [
        math.nan,
        math.inf,
        -math.inf,
        1e308,
        -1e308,
        json.loads("1e400"),
        2**53,
        2**53 + 1,
        True,
        1,
        1.0,
        10**400,
        -(10**400),
    ]
    v = enc.encode([{"x": value} for value in values])
    assert np.isfinite(v).all()
    same = lambda i, j: np.array_equal(v[i], v[j])
    assert same(1, 5) and same(1, 11) and same(2, 12)  # 1e400, 10**400 -> inf
    assert same(6, 7)  # float64 precision
    assert same(9, 10) and not same(8, 9)  # 1 == 1.0, true != 1
    assert len({v[i].tobytes() for i in (0, 1, 2, 3, 4)}) == 5

    fitted = vsa.JSONEncoder(DIM).fit([{"x": 1e308}, {"x": -1e308}])
    codes = fitted.encode([{"x": 0.0}, {"x": 1e308}])
    assert np.isfinite(codes).all()
    strict = vsa.JSONEncoder(DIM, nonfinite="error")
    with pytest.raises(vsa.RecordError, match=r"record 1: non-finite number nan at x"):
        strict.encode([{"x": 1}, {"x": math.nan}])


def test_huge_arrays(enc):
    long = list(range(3000))
    v = vsa.JSONEncoder(DIM, ranges={"xs[]": (0, 3000)}).encode([{"xs": long}])
    assert np.isfinite(v).all()
    small = vsa.JSONEncoder(DIM, max_array_length=10)
    with pytest.raises(
        vsa.RecordError,
        match=r"array of 11 items at xs exceeds "
        r"max_array_length=10",
    ):
        small.encode([{"xs": list(range(11))}])


def test_array_positions_read_back(enc):
    items = [f"w{i}" for i in range(8)]
    v = enc.encode([items])[0]
    for i in (0, 3, 7):
        assert enc.query(v, f"[{i}]", candidates=items, k=1)[0][0] == items[i]


def test_bad_records_and_parameters(enc):
    with pytest.raises(vsa.RecordError, match=r"record 0: unsupported type set at a"):
        enc.encode([{"a": {1, 2}}])
    with pytest.raises(vsa.RecordError, match="object keys must be strings"):
        enc.encode([{1: "x"}])
    with pytest.raises(ValueError, match="roles must be one of"):
        vsa.JSONEncoder(DIM, roles="gauss")
    with pytest.raises(
        ValueError, match=r"ranges\['a'\] must be finite with low <= high"
    ):
        vsa.JSONEncoder(DIM, ranges={"a": (2, 1)})
    with pytest.raises(TypeError, match="soft must be a number"):
        vsa.JSONEncoder(DIM, soft="1")
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip'"):
        list(enc.encode_iter([1], on_error="ignore"))
    assert enc.encode([]).shape == (0, DIM)
    with pytest.raises(TypeError, match="got a single dict; wrap one record"):
        enc.encode({"a": 1})
    with pytest.raises(TypeError, match="got a single str"):
        enc.fit("abc")


def test_encode_iter_skips_bad_records(enc):
    skipped = []
    chunks = enc.encode_iter(
        [{"a": 1}, {"a": {1}}, {"a": 2}],
        on_error="skip",
        on_skip=lambda i, e: skipped.append(i),
    )
    out = np.concatenate(list(chunks))
    assert skipped == [1]
    np.testing.assert_array_equal(out, enc.encode([{"a": 1}, {"a": 2}]))


def test_save_and_load_round_trip(tmp_path):
    records = [{"s": f"v{i}", "n": i, "\udcff": True} for i in range(10)]
    enc = vsa.JSONEncoder(
        DIM, seed=9, soft=0.5, weights={"s": 2.0}, ranges={"n": (0, 20)}
    ).fit(records)
    enc.save(tmp_path / "enc.lvec")
    back = vsa.JSONEncoder.load(tmp_path / "enc.lvec")
    np.testing.assert_array_equal(back.encode(records), enc.encode(records))
    assert back.memory_ == enc.memory_ and back.range_of("n") == (0.0, 20.0)
    (tmp_path / "bad.lvec").write_bytes(b"not an encoder")
    with pytest.raises(ValueError, match="not a leanvec file"):
        vsa.JSONEncoder.load(tmp_path / "bad.lvec")


def test_numpy_scalars_encode_like_python_values(enc):
    mixed = {"a": np.int64(3), "b": np.float32(2.5), "c": np.bool_(True)}
    plain = {"a": 3, "b": 2.5, "c": True}
    np.testing.assert_array_equal(enc.encode([mixed]), enc.encode([plain]))


def test_circular_record_is_an_error_but_shared_parts_are_fine():
    enc = vsa.JSONEncoder(64)
    loop = {"name": "x"}
    loop["self"] = [1, loop]
    with pytest.raises(vsa.RecordError, match=r"circular reference at self\[\]"):
        enc.encode([loop])
    shared = [1, 2]
    np.testing.assert_array_equal(enc.encode([{"a": shared, "b": shared}]),
                                  enc.encode([{"a": [1, 2], "b": [1, 2]}]))
