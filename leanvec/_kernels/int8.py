"""Bounded 8-bit screening for exact search.

Every database row is kept a second time as 8-bit codes (a per-row offset and
step, as in LVQ-8), every query is rounded to signed 8-bit with one scale. The
products of the two are computed with the processor's 8-bit dot-product
instruction (AVX-512 VNNI: 64 multiply-adds per instruction, four times the
float32 rate), and the rounding error of each product is bounded:

    <q, x> - <q~, x~> = <q - q~, x> + <q~, x - x~>
    |<q, x> - <q~, x~>| <= |q - q~| |x| + |q~| |x - x~|

A row can be among a query's k best only when its upper bound reaches the k-th
largest lower bound seen so far, which leaves a few dozen rows per query out of
tens of thousands; those are scored exactly by the caller. The result is exact:
the screen only drops rows that cannot be in the top k.

The instruction is reached through an LLVM intrinsic, so the kernels exist only
where the processor has AVX-512 VNNI and numba's LLVM spells the intrinsic the
way this module does (:func:`available`); elsewhere exact search keeps its BLAS
path.

Two layouts of the codes: 16-row blocks with four dimensions interleaved
(:func:`pack_codes`, for :func:`screen`'s register tiles), or plain row order
where the processor has AMX (:mod:`leanvec._kernels.amx`): :func:`screen_tiles`
then takes the products of 48 queries with 128 rows from AMX tiles, and
:func:`screen_rows` serves a few queries, one at a time, through :func:`dot4`.
All three keep the same bounds, heaps and candidates.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import FASTMATH
from .amx import GROUP, QUERY_TILES, ROW_TILE, rows_tile
from .topk import heap_push

# Queries and 16-row blocks of the database in one register tile: 8 x 3 = 24
# accumulators of 16 int32 lanes, three code loads per four dimensions.
TILE_QUERIES = 8
TILE_BLOCKS = 3
BLOCK_ROWS = 16
TILE_ROWS = TILE_BLOCKS * BLOCK_ROWS
# Widest rows (bytes) whose int32 sums of byte products (at most 255 * 128 each)
# cannot overflow.
MAX_WIDTH = (2**31 - 1) // (255 * 128)
# Relative allowance for float32 rounding in the bounds (the error terms
# themselves are about 1e-2 of the norms, so this costs nothing in pruning).
ROUNDING = 2.0**-18


def available() -> bool:
    """True when the 8-bit kernels can run on this machine with VNNI instructions.

    ``LEANVEC_INT8=0`` in the environment turns them off (exact search then
    uses float32 products, graph search float32 arithmetic on its codes).
    """
    if os.environ.get("LEANVEC_INT8", "1") == "0":
        return False
    return _has_vnni()


@functools.cache
def _has_vnni() -> bool:
    """The processor has AVX-512 VNNI and numba compiles for it with an LLVM that
    spells the intrinsic as this module does."""
    try:
        import llvmlite.binding as llvm
        from numba import config
    except ImportError:  # pragma: no cover - numba always brings llvmlite
        return False
    # The intrinsic takes byte vectors from LLVM 22 on (earlier: int32 vectors).
    if llvm.llvm_version_info[0] < 22:
        return False
    if config.CPU_NAME not in (None, "host") or config.CPU_FEATURES:
        return False  # compiling for another processor than this one
    features = llvm.get_host_cpu_features()
    return bool(features.get("avx512vnni") and features.get("avx512bw"))


@intrinsic
def _dot_tile(typingctx, codes, qcodes, block, q0, out):
    """out[i, 16 j + r] = <qcodes[q0 + i], row r of block (block + j)> in int32,
    for TILE_QUERIES queries and TILE_BLOCKS blocks of 16 packed rows.

    ``codes`` is (n_blocks, d4, 64) uint8: block b, dimensions 4s..4s+3 of its
    16 rows in bytes [64 s, 64 s + 64), four bytes per row. ``qcodes`` is
    (n_queries, 4 d4) int8, ``out`` (TILE_QUERIES, TILE_ROWS) int32.
    """
    if not (isinstance(codes, types.Array) and isinstance(qcodes, types.Array)
            and isinstance(out, types.Array)):
        return None
    sig = types.void(codes, qcodes, block, q0, out)

    def codegen(context, builder, signature, args):
        code_arr = context.make_array(signature.args[0])(context, builder, args[0])
        query_arr = context.make_array(signature.args[1])(context, builder, args[1])
        out_arr = context.make_array(signature.args[4])(context, builder, args[4])
        i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
        lanes = ir.VectorType(i32, 16)
        bytes64 = ir.VectorType(i8, 64)
        block_v = context.cast(builder, args[2], signature.args[2], types.int64)
        q0_v = context.cast(builder, args[3], signature.args[3], types.int64)
        d4 = builder.extract_value(code_arr.shape, 1)
        code_base = builder.bitcast(code_arr.data, i8.as_pointer())
        query_base = builder.bitcast(query_arr.data, i8.as_pointer())
        out_base = builder.bitcast(out_arr.data, i32.as_pointer())
        block_bytes = builder.mul(d4, i64(64))
        query_bytes = builder.mul(d4, i64(4))
        code_ptr = [builder.gep(code_base, [builder.mul(builder.add(block_v, i64(j)),
                                                         block_bytes)])
                    for j in range(TILE_BLOCKS)]
        query_ptr = [builder.gep(query_base, [builder.mul(builder.add(q0_v, i64(i)),
                                                           query_bytes)])
                     for i in range(TILE_QUERIES)]
        fnty = ir.FunctionType(lanes, [lanes, bytes64, bytes64])
        vpdpbusd = cgutils.get_or_insert_function(builder.module, fnty,
                                                  "llvm.x86.avx512.vpdpbusd.512")
        entry = builder.block
        loop = builder.function.append_basic_block("int8_tile_loop")
        done = builder.function.append_basic_block("int8_tile_done")
        builder.branch(loop)
        builder.position_at_end(loop)
        step = builder.phi(i64)
        step.add_incoming(i64(0), entry)
        zero = ir.Constant(lanes, None)
        acc = []
        for _ in range(TILE_QUERIES):
            row = []
            for _ in range(TILE_BLOCKS):
                phi = builder.phi(lanes)
                phi.add_incoming(zero, entry)
                row.append(phi)
            acc.append(row)
        loaded = []
        for j in range(TILE_BLOCKS):
            ptr = builder.gep(code_ptr[j], [builder.mul(step, i64(64))])
            loaded.append(builder.load(builder.bitcast(ptr, bytes64.as_pointer()), align=1))
        new = []
        undef = ir.Constant(lanes, ir.Undefined)
        for i in range(TILE_QUERIES):
            ptr = builder.gep(query_ptr[i], [builder.mul(step, i64(4))])
            word = builder.load(builder.bitcast(ptr, i32.as_pointer()), align=1)
            splat = builder.shuffle_vector(builder.insert_element(undef, word, i32(0)),
                                           undef, ir.Constant(lanes, None))
            splat = builder.bitcast(splat, bytes64)
            new.append([builder.call(vpdpbusd, [acc[i][j], loaded[j], splat])
                        for j in range(TILE_BLOCKS)])
        next_step = builder.add(step, i64(1))
        latch = builder.block
        step.add_incoming(next_step, latch)
        for i in range(TILE_QUERIES):
            for j in range(TILE_BLOCKS):
                acc[i][j].add_incoming(new[i][j], latch)
        builder.cbranch(builder.icmp_signed("<", next_step, d4), loop, done)
        builder.position_at_end(done)
        for i in range(TILE_QUERIES):
            for j in range(TILE_BLOCKS):
                ptr = builder.gep(out_base, [i64((i * TILE_BLOCKS + j) * BLOCK_ROWS)])
                builder.store(new[i][j], builder.bitcast(ptr, lanes.as_pointer()), align=4)
        return context.get_dummy_value()

    return sig, codegen


def _dot4_intrinsic(nibbles: bool):
    """Build :func:`dot4` (byte codes) or :func:`dot4_nibbles` (two 4-bit codes a
    byte, even coordinates in the low nibble)."""

    @intrinsic
    def kernel(typingctx, codes, i0, i1, i2, i3, qcodes, n_bytes):
        if not (isinstance(codes, types.Array) and isinstance(qcodes, types.Array)):
            return None
        sig = types.UniTuple(types.int32, 4)(codes, i0, i1, i2, i3, qcodes, n_bytes)
        vnni = _has_vnni()

        def codegen(context, builder, signature, args):
            return _dot4_codegen(context, builder, signature, args, vnni, nibbles)

        return sig, codegen

    return kernel


def _dot4_codegen(context, builder, signature, args, vnni, nibbles):
    code_arr = context.make_array(signature.args[0])(context, builder, args[0])
    query_arr = context.make_array(signature.args[5])(context, builder, args[5])
    bit, i8, i32, i64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
    bytes64 = ir.VectorType(i8, 64)
    mask_type = ir.VectorType(bit, 64)
    acc_type = ir.VectorType(i32, 16 if vnni else 64)
    row_bytes = builder.extract_value(code_arr.shape, 1)
    code_base = builder.bitcast(code_arr.data, i8.as_pointer())
    query_base = builder.bitcast(query_arr.data, i8.as_pointer())
    rows = [builder.gep(code_base, [builder.mul(
        context.cast(builder, args[1 + r], signature.args[1 + r], types.int64),
        row_bytes)]) for r in range(4)]
    total = context.cast(builder, args[6], signature.args[6], types.int64)
    odd_base = builder.gep(query_base, [total])  # nibbles: odd coordinates
    chunks = builder.sdiv(total, i64(64))
    rest = builder.sub(total, builder.mul(chunks, i64(64)))
    if vnni:
        fnty = ir.FunctionType(acc_type, [acc_type, bytes64, bytes64])
        vpdpbusd = cgutils.get_or_insert_function(builder.module, fnty,
                                                  "llvm.x86.avx512.vpdpbusd.512")
    masked_load = cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(bytes64, [bytes64.as_pointer(), i32, mask_type, bytes64]),
        "llvm.masked.load.v64i8.p0")
    low_bits = ir.Constant(bytes64, [15] * 64)
    four = ir.Constant(bytes64, [4] * 64)

    def multiply_add(acc, query, codes):
        if vnni:
            return builder.call(vpdpbusd, [acc, codes, query])
        return builder.add(acc, builder.mul(builder.zext(codes, acc_type),
                                            builder.sext(query, acc_type)))

    def step_in(acc, load, offset):
        """Add one step's products for the four rows; ``load(ptr)`` reads 64 bytes."""
        query = load(builder.gep(query_base, [offset]))
        if nibbles:
            odd = load(builder.gep(odd_base, [offset]))
        out = []
        for r in range(4):
            code = load(builder.gep(rows[r], [offset]))
            if nibbles:
                low = builder.and_(code, low_bits)
                high = builder.lshr(code, four)
                out.append(multiply_add(multiply_add(acc[r], query, low), odd, high))
            else:
                out.append(multiply_add(acc[r], query, code))
        return out

    def plain_load(ptr):
        return builder.load(builder.bitcast(ptr, bytes64.as_pointer()), align=1)

    entry = builder.block
    loop = builder.function.append_basic_block("dot4_loop")
    tail = builder.function.append_basic_block("dot4_tail")
    partial = builder.function.append_basic_block("dot4_partial")
    done = builder.function.append_basic_block("dot4_done")
    zero = ir.Constant(acc_type, None)
    builder.cbranch(builder.icmp_signed(">", chunks, i64(0)), loop, tail)

    builder.position_at_end(loop)
    step = builder.phi(i64)
    step.add_incoming(i64(0), entry)
    acc = []
    for _ in range(4):
        phi = builder.phi(acc_type)
        phi.add_incoming(zero, entry)
        acc.append(phi)
    new = step_in(acc, plain_load, builder.mul(step, i64(64)))
    next_step = builder.add(step, i64(1))
    latch = builder.block
    step.add_incoming(next_step, latch)
    for r in range(4):
        acc[r].add_incoming(new[r], latch)
    builder.cbranch(builder.icmp_signed("<", next_step, chunks), loop, tail)

    builder.position_at_end(tail)
    after = []
    for r in range(4):  # every phi first
        phi = builder.phi(acc_type)
        phi.add_incoming(zero, entry)
        phi.add_incoming(new[r], latch)
        after.append(phi)
    builder.cbranch(builder.icmp_signed(">", rest, i64(0)), partial, done)

    builder.position_at_end(partial)
    wide = ir.VectorType(i64, 64)
    limit = builder.insert_element(ir.Constant(wide, ir.Undefined), rest, i32(0))
    limit = builder.shuffle_vector(limit, ir.Constant(wide, ir.Undefined),
                                   ir.Constant(ir.VectorType(i32, 64), None))
    mask = builder.icmp_signed("<", ir.Constant(wide, list(range(64))), limit)
    nothing = ir.Constant(bytes64, None)

    def masked(ptr):
        return builder.call(masked_load, [builder.bitcast(ptr, bytes64.as_pointer()),
                                          i32(1), mask, nothing])

    ended = step_in(after, masked, builder.mul(chunks, i64(64)))
    builder.branch(done)

    builder.position_at_end(done)
    reduce = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(i32, [acc_type]),
        f"llvm.vector.reduce.add.v{acc_type.count}i32")
    finals = []
    for r in range(4):
        phi = builder.phi(acc_type)
        phi.add_incoming(after[r], tail)
        phi.add_incoming(ended[r], partial)
        finals.append(phi)
    sums = [builder.call(reduce, [final]) for final in finals]
    return context.make_tuple(builder, signature.return_type, sums)


dot4 = _dot4_intrinsic(nibbles=False)
dot4.__doc__ = """dot4(codes, i0, i1, i2, i3, qcodes, n_bytes) -> 4-tuple of int32.

Dot products of rows i0..i3 of ``codes`` (2-d uint8, C order) with ``qcodes``
(1-d int8) over their first ``n_bytes`` bytes. 64 bytes a step, the last
partial step through masked loads (no byte past ``n_bytes`` is read); four
independent accumulator chains (one per row). With AVX-512 VNNI one
``vpdpbusd`` per row and step; on other processors plain vector IR (widen,
multiply, add) that LLVM lowers to what the processor has, so callers compile
everywhere."""

dot4_nibbles = _dot4_intrinsic(nibbles=True)
dot4_nibbles.__doc__ = """dot4_nibbles(codes, i0, i1, i2, i3, qcodes, n_bytes) -> 4-tuple.

As :func:`dot4` for rows of two 4-bit codes a byte (even coordinates in the
low nibble): ``qcodes`` holds 2 * ``n_bytes`` int8, the query's even
coordinates then its odd ones."""


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _append(cand_ids, cand_up, counts, overflow, q, row, up, limit):
    """Add (row, up) to query q's candidates; when full, drop those whose upper
    bound fell below ``limit``, and flag the query when that frees too little."""
    c = counts[q]
    cap = cand_ids.shape[1]
    if c == cap:
        kept = 0
        for t in range(c):
            if cand_up[q, t] >= limit:
                cand_ids[q, kept] = cand_ids[q, t]
                cand_up[q, kept] = cand_up[q, t]
                kept += 1
        c = kept
        if c > cap - cap // 4:
            overflow[q] = True
            counts[q] = c
            return
    cand_ids[q, c] = row
    cand_up[q, c] = up
    counts[q] = c + 1


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _offer(q, row, dot, a1, a2, e1, e2, limit, offset, step, bias, norm, resid, slack,
           heap_d, heap_i, cand_ids, cand_up, counts, overflow):
    """Bound query q's score of ``row`` from its integer product ``dot``; when the
    upper bound reaches ``limit``, push the lower bound and keep the row as a
    candidate. Returns the query's new limit (its k-th lower bound)."""
    err = e1 * norm[row] + e2 * resid[row] + slack[row]
    up = a1 * offset[row] + a2 * step[row] * np.float32(dot) + bias[row] + err
    if up < limit:
        return limit
    heap_push(heap_d[q], heap_i[q], -(up - np.float32(2.0) * err), row)
    _append(cand_ids, cand_up, counts, overflow, q, row, up, limit)
    return -heap_d[q, 0]


@njit(cache=True, nogil=True, inline="always")
def row_dots(codes, r0, rows, qcodes, dots):
    """``dots[r] = <qcodes, codes[r0 + r]>`` (int32) for ``rows`` rows, four at a
    time through :func:`dot4`."""
    width = codes.shape[1]
    for r in range(0, rows, 4):
        i0 = r0 + r
        i1 = r0 + min(r + 1, rows - 1)
        i2 = r0 + min(r + 2, rows - 1)
        i3 = r0 + min(r + 3, rows - 1)
        d0, d1, d2, d3 = dot4(codes, i0, i1, i2, i3, qcodes, width)
        dots[r] = d0
        if r + 1 < rows:
            dots[r + 1] = d1
        if r + 2 < rows:
            dots[r + 2] = d2
        if r + 3 < rows:
            dots[r + 3] = d3


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _reaching(dots, offset, step, bias, norm, resid, a1, a2, e1, e2, limit):
    """How many rows' upper bounds reach ``limit`` (one branch-free count over
    contiguous slices: the loop vectorizes)."""
    hits = 0
    for r in range(dots.shape[0]):
        up = (a1 * offset[r] + a2 * step[r] * np.float32(dots[r]) + bias[r]
              + e1 * norm[r] + e2 * resid[r])
        if up >= limit:
            hits += 1
    return hits


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def screen(codes, offset, step, bias, bias_up, norm, resid, slack, n, qcodes, qsum,
           qscale, qerr, qnorm, b0, b1, heap_d, heap_i, cand_ids, cand_up, counts,
           overflow):
    """Screen database blocks [b0, b1) (a multiple of TILE_BLOCKS apart) for every
    query; ``n`` real rows (the rest of the last tile is padding).

    Approximate score of (q, row): qsum[q] offset[row] + qscale[q] step[row] dot
    + bias[row], with dot the int8 product; its error is at most
    qerr[q] norm[row] + qnorm[q] resid[row] + slack[row] (``bias_up`` is bias +
    slack, the upper bound's constant). ``heap_d``/``heap_i``
    (n_queries, k) hold the negated k best lower bounds per query (a max-heap of
    "distances"); rows whose upper bound reaches the k-th lower bound are
    appended to ``cand_ids``/``cand_up``. Queries count in multiples of
    TILE_QUERIES (padding rows of ``qcodes`` are zero).
    """
    n_groups = qcodes.shape[0] // TILE_QUERIES
    for g in prange(n_groups):
        dots = np.empty((TILE_QUERIES, TILE_ROWS), dtype=np.int32)
        q0 = g * TILE_QUERIES
        for b in range(b0, b1, TILE_BLOCKS):
            _dot_tile(codes, qcodes, b, q0, dots)
            r0 = b * BLOCK_ROWS
            for i in range(TILE_QUERIES):
                q = q0 + i
                if overflow[q]:
                    continue
                limit = -heap_d[q, 0]
                a1 = qsum[q]
                a2 = qscale[q]
                e1 = qerr[q]
                e2 = qnorm[q]
                r1 = r0 + TILE_ROWS
                if _reaching(dots[i], offset[r0:r1], step[r0:r1], bias_up[r0:r1],
                             norm[r0:r1], resid[r0:r1], a1, a2, e1, e2, limit) == 0:
                    continue
                for r in range(TILE_ROWS):
                    row = r0 + r
                    if row >= n:
                        break
                    limit = _offer(q, row, dots[i, r], a1, a2, e1, e2, limit, offset,
                                   step, bias, norm, resid, slack, heap_d, heap_i,
                                   cand_ids, cand_up, counts, overflow)
                    if overflow[q]:
                        break


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _tile_reaching(dots, a1, a2, e1, e2, limits, offset, step, bias_up, norm, resid,
                   ups):
    """Upper bounds of one row's scores for each query of a group into ``ups``;
    returns how many reach their query's limit (a float count: the loop then
    vectorizes eight lanes wide)."""
    hits = np.float32(0.0)
    for i in range(dots.shape[0]):
        up = (a1[i] * offset + a2[i] * step * np.float32(dots[i]) + bias_up
              + e1[i] * norm + e2[i] * resid)
        ups[i] = up
        hits += np.float32(1.0) if up >= limits[i] else np.float32(0.0)
    return hits


ROWS_STEP = 256  # rows whose products screen_rows forms before filtering


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def screen_rows(codes, offset, step, bias, bias_up, norm, resid, slack, n, qcodes,
                qsum, qscale, qerr, qnorm, heap_d, heap_i, cand_ids, cand_up, counts,
                overflow):
    """:func:`screen` for a few queries over codes in row order (the layout of
    :func:`screen_tiles`): each query on its own, four rows at a time through
    :func:`dot4`. Same bounds, heaps and candidates."""
    for q in prange(qcodes.shape[0]):
        if overflow[q]:
            continue
        a1 = qsum[q]
        a2 = qscale[q]
        e1 = qerr[q]
        e2 = qnorm[q]
        limit = -heap_d[q, 0]
        dots = np.empty(ROWS_STEP, dtype=np.int32)
        for r0 in range(0, n, ROWS_STEP):
            rows = min(ROWS_STEP, n - r0)
            row_dots(codes, r0, rows, qcodes[q], dots)
            r1 = r0 + rows
            if _reaching(dots[:rows], offset[r0:r1], step[r0:r1], bias_up[r0:r1],
                         norm[r0:r1], resid[r0:r1], a1, a2, e1, e2, limit) == 0:
                continue
            for r in range(rows):
                limit = _offer(q, r0 + r, dots[r], a1, a2, e1, e2, limit, offset, step,
                               bias, norm, resid, slack, heap_d, heap_i, cand_ids,
                               cand_up, counts, overflow)
                if overflow[q]:
                    break
            if overflow[q]:
                break


_TILES = 8  # tiles of 16 rows whose products screen_tiles forms a call


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def screen_tiles(fn, codes, offset, step, bias, bias_up, norm, resid, slack, n,
                 qpacked, qsum, qscale, qerr, qnorm, r0, r1, heap_d, heap_i, cand_ids,
                 cand_up, counts, overflow):
    """:func:`screen` on AMX: rows [r0, r1) of ``codes`` ((rows, width) uint8 in
    row order, r0 and r1 multiples of 16, zero rows past ``n`` and enough of them
    for whole 64-byte steps, see :func:`leanvec._kernels.amx.rows_tile`) against
    the queries of ``qpacked`` (:func:`leanvec._kernels.amx.pack_queries`; the
    per-query arrays padded to its groups of 48). Same bounds, heaps and
    candidates as :func:`screen`."""
    n_groups = qpacked.shape[0] // QUERY_TILES
    for g in prange(n_groups):
        q0 = g * GROUP
        a1 = qsum[q0:q0 + GROUP]
        a2 = qscale[q0:q0 + GROUP]
        e1 = qerr[q0:q0 + GROUP]
        e2 = qnorm[q0:q0 + GROUP]
        limits = np.empty(GROUP, dtype=np.float32)
        for i in range(GROUP):
            q = q0 + i
            limits[i] = np.inf if overflow[q] else -heap_d[q, 0]
        block = np.empty((_TILES * ROW_TILE, GROUP), dtype=np.int32)
        ups = np.empty(GROUP, dtype=np.float32)
        for t in range(r0, r1, _TILES * ROW_TILE):
            rows = min(_TILES * ROW_TILE, r1 - t)
            dots = block[:rows]
            rows_tile(fn, codes, t, qpacked, g * QUERY_TILES, dots)
            for r in range(rows):
                row = t + r
                if row >= n:
                    break
                if _tile_reaching(dots[r], a1, a2, e1, e2, limits, offset[row],
                                  step[row], bias_up[row], norm[row], resid[row],
                                  ups) == 0:
                    continue
                for i in range(GROUP):
                    if ups[i] < limits[i]:
                        continue
                    q = q0 + i
                    limits[i] = _offer(q, row, dots[r, i], a1[i], a2[i], e1[i], e2[i],
                                       limits[i], offset, step, bias, norm, resid, slack,
                                       heap_d, heap_i, cand_ids, cand_up, counts,
                                       overflow)
                    if overflow[q]:
                        limits[i] = np.inf


@njit(parallel=True, cache=True, nogil=True)
def survivors(heap_d, cand_ids, cand_up, counts, overflow, out):
    """Candidates whose upper bound reaches the final k-th lower bound, per query,
    into ``out`` (padded with -1); returns the largest count."""
    n_queries = out.shape[0]
    widths = np.zeros(n_queries, dtype=np.int64)
    for q in prange(n_queries):
        if overflow[q]:
            continue
        limit = -heap_d[q, 0]
        kept = 0
        for t in range(counts[q]):
            if cand_up[q, t] >= limit:
                out[q, kept] = cand_ids[q, t]
                kept += 1
        widths[q] = kept
    return widths.max() if n_queries else 0


def pack_codes(codes: np.ndarray, n_blocks: int) -> np.ndarray:
    """(n, d) uint8 codes (d a multiple of 4) into the (n_blocks, d / 4, 64)
    layout of :func:`_dot_tile`, padded with zero rows."""
    n, dim = codes.shape
    padded = np.zeros((n_blocks * BLOCK_ROWS, dim), dtype=np.uint8)
    padded[:n] = codes
    return np.ascontiguousarray(
        padded.reshape(n_blocks, BLOCK_ROWS, dim // 4, 4).transpose(0, 2, 1, 3)
    ).reshape(n_blocks, dim // 4, 64)
