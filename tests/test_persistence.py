"""The one-file format: round trips, and clear errors for bad files."""

import os

import numpy as np
import pytest

from leanvec.persistence import load_state, nest, save_state, unnest


@pytest.fixture
def saved(tmp_path):
    arrays = {"codes": np.arange(12, dtype=np.uint8).reshape(3, 4),
              "steps": np.array([0.5, 1.5], dtype=np.float16),
              "graph": np.full((2, 2), -1, dtype=np.int64)}
    path = save_state(tmp_path / "thing.lvec", "thing", {"dim": 4, "name": "x"}, arrays)
    return path, arrays


def test_round_trip(saved):
    path, arrays = saved
    kind, meta, back = load_state(path, "thing")
    assert kind == "thing" and meta == {"dim": 4, "name": "x"}
    for name, arr in arrays.items():
        assert back[name].dtype == arr.dtype
        np.testing.assert_array_equal(back[name], arr)


def test_nested_parts_round_trip(tmp_path):
    meta, arrays = {"top": 1}, {"own": np.zeros(2)}
    nest("part", meta, arrays, {"bits": 8}, {"mean": np.ones(3, np.float32)})
    save_state(tmp_path / "a.lvec", "index", meta, arrays)
    _, meta2, arrays2 = load_state(tmp_path / "a.lvec")
    part_meta, part_arrays = unnest("part", meta2, arrays2)
    assert part_meta == {"bits": 8} and list(part_arrays) == ["mean"]


@pytest.mark.parametrize("cut", [1, 40, 100])
def test_truncated_file(saved, cut):
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    with pytest.raises(ValueError, match="truncated or corrupt|not a leanvec file"):
        load_state(path)


def test_corrupt_byte(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_state(path)


def test_foreign_file_and_wrong_kind(saved, tmp_path):
    foreign = tmp_path / "x.npy"
    np.save(foreign, np.zeros(100))
    with pytest.raises(ValueError, match="not a leanvec file"):
        load_state(foreign)
    with pytest.raises(ValueError, match="holds a 'thing', expected 'index'"):
        load_state(saved[0], "index")


def test_newer_format_is_refused(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[8] = 99
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="format version 99"):
        load_state(path)


def test_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(TypeError, match="unsupported dtype"):
        save_state(tmp_path / "x.lvec", "k", {}, {"bad": np.array(["a"])})
    assert list(tmp_path.iterdir()) == []


def test_overwrite_is_atomic(saved):
    path, arrays = saved
    save_state(path, "thing", {"v": 2}, arrays)
    assert load_state(path)[1] == {"v": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["thing.lvec"]


def _forge(path, header: bytes, extra: bytes = b"", header_len=None):
    """A file with a valid checksum around an arbitrary header."""
    import hashlib
    import struct

    from leanvec.persistence import FORMAT_VERSION, MAGIC

    size = len(header) if header_len is None else header_len
    body = struct.pack("<8sIQ", MAGIC, FORMAT_VERSION, size) + header + extra
    path.write_bytes(body + hashlib.sha256(body).digest())
    return path


@pytest.mark.parametrize("header, extra, header_len", [
    (b"{nope", b"", None),
    (b"\xff\xfe", b"", None),
    (b"[1, 2]", b"", None),
    (b'{"meta": {}}', b"", None),
    (b"{}", b"", 10**12),
    ((b'{"kind": "x", "meta": {}, "arrays": [{"name": "w", "dtype": "zz", '
      b'"shape": [1]}]}'), b"\0" * 8, None),
    ((b'{"kind": "x", "meta": {}, "arrays": [{"name": "w", "dtype": "|O", '
      b'"shape": [1]}]}'), b"\0" * 8, None),
    ((b'{"kind": "x", "meta": {}, "arrays": [{"name": "w", "dtype": "<f8", '
      b'"shape": [-1]}]}'), b"", None),
    (b'{"kind": "x", "meta": {}, "arrays": []}', b"\0" * 8, None),
])
def test_forged_headers_raise_value_error(tmp_path, header, extra, header_len):
    path = _forge(tmp_path / "forged.lvec", header, extra, header_len)
    with pytest.raises(ValueError, match="forged.lvec is corrupt"):
        load_state(path)


def test_saved_files_get_the_usual_permissions(saved):
    path, _ = saved
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
