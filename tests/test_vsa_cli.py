"""json2vec: encode / fit / query / similar round trips and bad input lines."""

import io
import json
import sys

import h5py
import numpy as np
import pytest

import vsa
from vsa import cli


def _records(n=30):
    return [
        {
            "name": f"item{i}",
            "city": ["Oslo", "Rome", "Lima"][i % 3],
            "size": i,
            "tags": ["a", f"t{i}"],
        }
        for i in range(n)
    ]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _records()), encoding="utf-8")
    return path


def _fit(corpus, tmp_path):
    enc = tmp_path / "enc.lvec"
    assert cli.main(["fit", str(corpus), "-o", str(enc), "--dim", "256"]) == 0
    return enc


def test_encode_then_query_round_trip(corpus, tmp_path, capsys):
    enc = _fit(corpus, tmp_path)
    out = tmp_path / "v.npy"
    assert cli.main(["encode", str(corpus), "-o", str(out), "--encoder", str(enc)]) == 0
    vectors = np.load(out)
    assert vectors.shape == (30, 256) and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, vsa.JSONEncoder.load(enc).encode(_records()))

    capsys.readouterr()
    assert (
        cli.main(["query", str(enc), str(out), "city", "--rows", "4,5", "-k", "1"]) == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["values"][0][0] for line in lines] == ["Rome", "Lima"]
    assert cli.main(["query", str(enc), str(out), "tags[1]", "--rows", "7"]) == 0
    assert json.loads(capsys.readouterr().out)["values"][0][0] == "t7"


def test_hdf5_output_and_stdin(corpus, tmp_path, monkeypatch):
    out = tmp_path / "v.hdf5"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(corpus.read_bytes())))
    assert cli.main(["encode", "-", "-o", str(out), "--dim", "128"]) == 0
    with h5py.File(out, "r") as f:
        stored = f["vectors"][:]
    np.testing.assert_array_equal(stored, vsa.JSONEncoder(128).encode(_records()))


def test_json_document_input(tmp_path):
    doc = tmp_path / "in.json"
    doc.write_text(json.dumps(_records(5)))
    out = tmp_path / "v.npy"
    assert cli.main(["encode", str(doc), "-o", str(out), "--dim", "64"]) == 0
    assert np.load(out).shape == (5, 64)


def test_similar_finds_the_source_line(corpus, tmp_path, capsys):
    enc = _fit(corpus, tmp_path)
    capsys.readouterr()
    query = json.dumps({"name": "item12", "city": "Oslo", "size": 12, "tags": ["a"]})
    assert (
        cli.main(["similar", str(enc), str(corpus), "--query", query, "-k", "3"]) == 0
    )
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["line"] == 13 and hits[0]["similarity"] > hits[1]["similarity"]


def _bad_corpus(tmp_path):
    lines = [json.dumps(r) for r in _records(6)]
    lines[2] = '{"name": oops}'
    lines[4] = "[" * 100_000
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_line_stops_and_keeps_earlier_rows(tmp_path, capsys):
    out = tmp_path / "v.npy"
    assert (
        cli.main(["encode", str(_bad_corpus(tmp_path)), "-o", str(out), "--dim", "64"])
        == 1
    )
    assert "bad.jsonl:3:10: Expecting value" in capsys.readouterr().err
    np.testing.assert_array_equal(np.load(out), vsa.JSONEncoder(64).encode(_records(2)))


def test_bad_lines_skipped_with_skip(tmp_path, capsys):
    out = tmp_path / "v.npy"
    assert (
        cli.main(
            [
                "encode",
                str(_bad_corpus(tmp_path)),
                "-o",
                str(out),
                "--dim",
                "64",
                "--on-error",
                "skip",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "bad.jsonl:3:10" in err and "bad.jsonl:5:1: nesting too deep" in err
    kept = [r for i, r in enumerate(_records(6)) if i not in (2, 4)]
    np.testing.assert_array_equal(np.load(out), vsa.JSONEncoder(64).encode(kept))


def test_record_errors_are_reported_with_line(tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n{"a": NaN}\n{"a": 2}\n')
    enc = tmp_path / "enc.lvec"
    vsa.JSONEncoder(64, nonfinite="error").save(enc)
    out = tmp_path / "v.npy"
    assert cli.main(["encode", str(path), "-o", str(out), "--encoder", str(enc)]) == 1
    assert "in.jsonl:2: record 1: non-finite number nan" in capsys.readouterr().err
    assert np.load(out).shape == (1, 64)


def test_usage_errors(corpus, tmp_path, capsys):
    assert cli.main(["encode", str(corpus), "-o", str(tmp_path / "v.txt")]) == 2
    assert "output must end in .npy, .hdf5 or .h5" in capsys.readouterr().err
    assert (
        cli.main(["encode", str(corpus), "-o", str(tmp_path / "v.npy"), "--dim", "100"])
        == 2
    )
    assert "power of two" in capsys.readouterr().err
    enc = _fit(corpus, tmp_path)
    np.save(tmp_path / "v.npy", np.zeros((2, 256), dtype=np.float32))
    assert (
        cli.main(["query", str(enc), str(tmp_path / "v.npy"), "city", "--rows", "5"])
        == 2
    )
    assert "--rows [5] out of range: the file has 2 vectors" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["fit", str(corpus), "-o", "x", "--weight", "nonumber"])


def test_progress_without_tqdm(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "_PROGRESS_BYTES", 0)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    out = tmp_path / "v.npy"
    assert cli.main(["encode", str(corpus), "-o", str(out), "--dim", "64"]) == 0
    monkeypatch.delitem(sys.modules, "tqdm")
    assert cli.main(["encode", str(corpus), "-o", str(out), "--dim", "64"]) == 0


def test_fit_skips_bad_records(tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n{"a": [1, 2, 3]}\n{"a": 5}\n')
    enc = tmp_path / "enc.lvec"
    assert (
        cli.main(
            [
                "fit",
                str(path),
                "-o",
                str(enc),
                "--dim",
                "64",
                "--on-error",
                "skip",
                "--range",
                "b=0:1",
            ]
        )
        == 0
    )
    assert vsa.JSONEncoder.load(enc).range_of("a") == (1.0, 5.0)
    fitted = vsa.JSONEncoder(64, max_array_length=2)
    skipped = []
    fitted.fit(
        [{"a": [1, 2, 3]}, {"a": [4]}],
        on_error="skip",
        on_skip=lambda i, e: skipped.append(i),
    )
    assert skipped == [0] and fitted.range_of("a[]") == (4.0, 4.0)
    with pytest.raises(vsa.RecordError, match="record 0: array of 3 items"):
        fitted.fit([{"a": [1, 2, 3]}])


def test_query_with_candidates_and_vector_file_errors(corpus, tmp_path, capsys):
    enc = _fit(corpus, tmp_path)
    out = tmp_path / "v.h5"
    assert cli.main(["encode", str(corpus), "-o", str(out), "--encoder", str(enc)]) == 0
    capsys.readouterr()
    argv = ["query", str(enc), str(out), "city", "--rows", "2", "-k", "2"]
    assert cli.main([*argv, "--candidates", '["Lima", "Paris"]']) == 0
    assert json.loads(capsys.readouterr().out)["values"][0][0] == "Lima"
    assert cli.main([*argv, "--candidates", '"Lima"']) == 2
    assert "--candidates must be a JSON array" in capsys.readouterr().err
    bad = tmp_path / "v.csv"
    bad.write_text("1,2")
    assert cli.main(["query", str(enc), str(bad), "city"]) == 2
    assert "vectors must be a .npy, .hdf5 or .h5 file" in capsys.readouterr().err
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros((1, 4))
    assert cli.main(["query", str(enc), str(tmp_path / "other.h5"), "city"]) == 2
    assert "has no dataset named 'vectors'" in capsys.readouterr().err


def test_json_document_from_stdin_and_progress_callback(monkeypatch, tmp_path):
    doc = json.dumps(_records(4)).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(doc)))
    out = tmp_path / "v.npy"
    argv = ["encode", "-", "--format", "json", "-o", str(out), "--dim", "64"]
    assert cli.main(argv) == 0
    assert np.load(out).shape == (4, 64)
    calls = []
    vsa.JSONEncoder(64).encode(_records(4), progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (4, 4)


def test_invalid_utf8_line_is_reported(tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n{"a": 2}\n')
    out = tmp_path / "v.npy"
    argv = ["encode", str(path), "-o", str(out), "--dim", "64", "--on-error", "skip"]
    assert cli.main(argv) == 1
    assert "in.jsonl:2:8: invalid UTF-8 (invalid start byte)" in capsys.readouterr().err
    np.testing.assert_array_equal(
        np.load(out), vsa.JSONEncoder(64).encode([{"a": 1}, {"a": 2}])
    )


def test_json_arguments_and_counts_are_checked(corpus, tmp_path, capsys):
    enc = _fit(corpus, tmp_path)
    out = tmp_path / "v.npy"
    assert cli.main(["encode", str(corpus), "-o", str(out), "--encoder", str(enc)]) == 0
    deep = "[" * 100_000
    similar = ["similar", str(enc), str(corpus), "--query"]
    cases = [
        ([*similar, deep], "--query is nested too deep for the JSON parser"),
        ([*similar, "{nope"], "--query is not valid JSON: Expecting property name"),
        ([*similar, '{"size": 1}', "-k", "0"], "--count must be >= 1, got 0"),
        (["query", str(enc), str(out), "city", "--candidates", deep],
         "--candidates is nested too deep"),
        (["query", str(enc), str(out), "city", "-k", "-1"], "--count must be >= 1"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert cli.main(argv) == 2
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("array, message", [
    (np.zeros(256, np.float32), "got dtype float32 and shape (256,)"),
    (np.zeros((2, 256), complex), "got dtype complex128 and shape (2, 256)"),
    (np.array([["a"]]), "got dtype <U1"),
])
def test_vector_files_that_are_not_real_matrices(corpus, tmp_path, capsys, array,
                                                 message):
    enc = _fit(corpus, tmp_path)
    path = tmp_path / "bad.npy"
    np.save(path, array)
    capsys.readouterr()
    assert cli.main(["query", str(enc), str(path), "city"]) == 2
    err = capsys.readouterr().err
    assert "bad.npy must hold a 2-d array of real numbers (n, dim)" in err
    assert message in err
    with h5py.File(tmp_path / "group.h5", "w") as f:
        f.create_group("vectors")
    assert cli.main(["query", str(enc), str(tmp_path / "group.h5"), "city"]) == 2
    assert "'vectors' is a group, expected an array" in capsys.readouterr().err


def test_utf8_byte_order_mark_is_ignored(tmp_path):
    records = [{"a": 1}, {"a": 2}]
    text = "".join(json.dumps(r) + "\n" for r in records).encode()
    for name in ("in.jsonl", "in.json"):
        path = tmp_path / name
        body = text if name.endswith("l") else json.dumps(records).encode()
        path.write_bytes(b"\xef\xbb\xbf" + body)
        out = tmp_path / "v.npy"
        assert cli.main(["encode", str(path), "-o", str(out), "--dim", "64"]) == 0
        np.testing.assert_array_equal(np.load(out), vsa.JSONEncoder(64).encode(records))


def test_integer_literals_beyond_the_digit_limit_follow_the_infinity_policy(tmp_path,
                                                                          capsys):
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": ' + "9" * 5000 + '}\n{"a": -' + "9" * 5000 + "}\n")
    out = tmp_path / "v.npy"
    assert cli.main(["encode", str(path), "-o", str(out), "--dim", "64"]) == 0
    np.testing.assert_array_equal(
        np.load(out), vsa.JSONEncoder(64).encode([{"a": 10**400}, {"a": -(10**400)}])
    )
    path.write_text('{"a": "x"}\n{"a": \n')
    assert cli.main(["encode", str(path), "-o", str(out), "--dim", "64"]) == 1
    err = capsys.readouterr().err
    assert "in.jsonl:2:7: Expecting value" in err and "nesting too deep" not in err
