"""8-bit tile products on Intel AMX (Advanced Matrix Extensions).

One AMX instruction (``tdpbusd``) multiplies a 16 x 64 tile of unsigned bytes
by a 64 x 16 tile of signed bytes into 16 x 16 int32 sums: 16,384
multiply-adds, eight times what one AVX-512 VNNI instruction does. The kernels
here put 16 database rows of 8-bit codes (row-major, as stored) in the first
tile and 16 queries rounded to int8 in the second, so one call forms the exact
integer products of 16 rows with 48 queries (three query tiles).

numba's LLVM knows the AMX intrinsics but not their tile type, so the tile
function is written in LLVM IR, compiled once per process by llvmlite for the
host processor, checked against numpy on random codes, and called from numba
kernels through its address (an ordinary runtime argument, so the kernels stay
in numba's cache). Linux hands the tile registers to a process only on request
(``arch_prctl``); :func:`available` asks once. Where any of this is missing
(another processor or system, an older llvmlite, ``LEANVEC_AMX=0``), callers
keep their other paths.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
import threading

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

logger = logging.getLogger(__name__)

ROW_TILE = 16  # database rows per tile
QUERY_TILE = 16  # queries per tile
QUERY_TILES = 3  # query tiles per call
GROUP = QUERY_TILE * QUERY_TILES  # queries per call
STEP = 64  # bytes of a row per tile product
# Widest rows (bytes) whose int32 sums of byte products (at most 255 * 127 each)
# cannot overflow.
MAX_WIDTH = (2**31 - 1) // (255 * 127)

_SYS_ARCH_PRCTL = 158  # x86_64
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18
_NAME = "leanvec_amx_rows_queries"


def _tile_ir() -> str:
    """LLVM IR of ``void f(rows, row_stride, queries, query_tile_bytes, steps,
    out, n_tiles)``: for each of ``n_tiles`` tiles of 16 rows (``row_stride``
    bytes apart), its 16 x 48 int32 products with three packed query tiles over
    ``steps`` steps of 64 bytes, into ``out`` (16 n_tiles x 48, row-major)."""
    tiles = range(QUERY_TILES)
    amx = "x86_amx"
    out_bytes = ROW_TILE * GROUP * 4
    lines = [
        f"declare {amx} @llvm.x86.tileloadd64.internal(i16, i16, ptr, i64)",
        f"declare {amx} @llvm.x86.tdpbusd.internal(i16, i16, i16, {amx}, {amx}, {amx})",
        f"declare void @llvm.x86.tilestored64.internal(i16, i16, ptr, i64, {amx})",
        f"declare {amx} @llvm.x86.tilezero.internal(i16, i16)",
        (f"define void @{_NAME}(ptr %rows, i64 %stride, ptr %q, i64 %qbytes, "
         f"i64 %steps, ptr %out, i64 %ntiles) #0 {{"),
        "entry:",
        f"  %tile_stride = mul i64 %stride, {ROW_TILE}",
    ]
    for j in tiles:
        lines += [f"  %qo{j} = mul i64 %qbytes, {j}",
                  f"  %qp{j} = getelementptr i8, ptr %q, i64 %qo{j}"]
    lines += ["  br label %tile",
              "tile:",
              "  %t = phi i64 [0, %entry], [%tn, %stored]",
              "  %ro = mul i64 %t, %tile_stride",
              "  %rp = getelementptr i8, ptr %rows, i64 %ro",
              f"  %oo = mul i64 %t, {out_bytes}",
              "  %ob = getelementptr i8, ptr %out, i64 %oo"]
    lines += [f"  %z{j} = call {amx} @llvm.x86.tilezero.internal(i16 16, i16 64)"
              for j in tiles]
    lines += ["  br label %loop",
              "loop:",
              "  %s = phi i64 [0, %tile], [%sn, %loop]"]
    lines += [f"  %c{j} = phi {amx} [%z{j}, %tile], [%n{j}, %loop]" for j in tiles]
    lines += ["  %ao = mul i64 %s, 64",
              "  %ap = getelementptr i8, ptr %rp, i64 %ao",
              (f"  %ta = call {amx} @llvm.x86.tileloadd64.internal(i16 16, i16 64, "
               "ptr %ap, i64 %stride)"),
              "  %bo = mul i64 %s, 1024"]
    # every tile of a step loaded before its products: distinct tile registers,
    # so that no load waits for a product still reading its register
    for j in tiles:
        lines += [f"  %bp{j} = getelementptr i8, ptr %qp{j}, i64 %bo",
                  (f"  %tb{j} = call {amx} @llvm.x86.tileloadd64.internal(i16 16, "
                   f"i16 64, ptr %bp{j}, i64 64)")]
    for j in tiles:
        lines += [(f"  %n{j} = call {amx} @llvm.x86.tdpbusd.internal(i16 16, i16 64, "
                   f"i16 64, {amx} %c{j}, {amx} %ta, {amx} %tb{j})")]
    lines += ["  %sn = add i64 %s, 1",
              "  %more = icmp slt i64 %sn, %steps",
              "  br i1 %more, label %loop, label %done",
              "done:"]
    for j in tiles:
        lines += [f"  %op{j} = getelementptr i8, ptr %ob, i64 {64 * j}",
                  (f"  call void @llvm.x86.tilestored64.internal(i16 16, i16 64, "
                   f"ptr %op{j}, i64 {64 * QUERY_TILES}, {amx} %n{j})")]
    lines += ["  br label %stored",
              "stored:",
              "  %tn = add i64 %t, 1",
              "  %tm = icmp slt i64 %tn, %ntiles",
              "  br i1 %tm, label %tile, label %exit",
              "exit:",
              "  ret void", "}",
              'attributes #0 = { "target-features"="+amx-tile,+amx-int8" }']
    return "\n".join(lines)


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _request_tiles() -> bool:
    """Ask Linux for the tile registers (once per process; idempotent)."""
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.syscall(ctypes.c_long(_SYS_ARCH_PRCTL),
                          ctypes.c_long(_ARCH_REQ_XCOMP_PERM),
                          ctypes.c_long(_XFEATURE_XTILEDATA))
    if result != 0:
        logger.debug("AMX tiles refused by the system (errno %d)", ctypes.get_errno())
    return result == 0


def pack_queries(qcodes: np.ndarray) -> np.ndarray:
    """(n, dim) int8 query codes into the tile layout (n_tiles, width / 4, 64),
    width = dim rounded up to 64: tile t, dimensions 4 s .. 4 s + 3 of its 16
    queries in bytes [64 s, 64 s + 64), four bytes a query. ``n_tiles`` is
    rounded up to a multiple of QUERY_TILES; padding (queries and dimensions)
    is zero."""
    n, dim = qcodes.shape
    width = -(-max(dim, 1) // STEP) * STEP
    n_tiles = -(-max(n, 1) // GROUP) * QUERY_TILES
    padded = np.zeros((n_tiles * QUERY_TILE, width), dtype=np.int8)
    padded[:n, :dim] = qcodes
    return np.ascontiguousarray(
        padded.reshape(n_tiles, QUERY_TILE, width // 4, 4).transpose(0, 2, 1, 3)
    ).reshape(n_tiles, width // 4, 64)


@intrinsic
def rows_tile(typingctx, fn, codes, r0, qpacked, t0, out):
    """out[r, 16 j + i] = <codes[r0 + r], query i of tile t0 + j> in int32, for
    out.shape[0] (a multiple of 16) rows and three query tiles, through the AMX
    function at address ``fn``.

    ``codes`` is (n, dim) uint8, C order; ``qpacked`` is from
    :func:`pack_queries` for the same dim, whose zero padding lets each row be
    read in whole 64-byte steps: the caller makes sure that ``ceil(dim / 64) * 64``
    bytes from the start of the last row lie in ``codes`` (the last rows of an
    array go through a padded copy). ``out`` is (16 m, 48) int32, C order.
    """
    if not (isinstance(codes, types.Array) and isinstance(qpacked, types.Array)
            and isinstance(out, types.Array)):
        return None
    sig = types.void(fn, codes, r0, qpacked, t0, out)

    def codegen(context, builder, signature, args):
        i8, i64 = ir.IntType(8), ir.IntType(64)
        code_arr = context.make_array(signature.args[1])(context, builder, args[1])
        query_arr = context.make_array(signature.args[3])(context, builder, args[3])
        out_arr = context.make_array(signature.args[5])(context, builder, args[5])
        width = builder.extract_value(code_arr.shape, 1)
        d4 = builder.extract_value(query_arr.shape, 1)
        r0_v = context.cast(builder, args[2], signature.args[2], types.int64)
        t0_v = context.cast(builder, args[4], signature.args[4], types.int64)
        fn_v = context.cast(builder, args[0], signature.args[0], types.int64)
        tile_bytes = builder.mul(d4, i64(64))
        rows = builder.gep(builder.bitcast(code_arr.data, i8.as_pointer()),
                           [builder.mul(r0_v, width)])
        queries = builder.gep(builder.bitcast(query_arr.data, i8.as_pointer()),
                              [builder.mul(t0_v, tile_bytes)])
        steps = builder.udiv(d4, i64(STEP // 4))
        ptr = i8.as_pointer()
        n_tiles = builder.udiv(builder.extract_value(out_arr.shape, 0), i64(ROW_TILE))
        fnty = ir.FunctionType(ir.VoidType(), [ptr, i64, ptr, i64, i64, ptr, i64])
        callee = builder.inttoptr(fn_v, fnty.as_pointer())
        builder.call(callee, [rows, width, queries, tile_bytes, steps,
                              builder.bitcast(out_arr.data, ptr), n_tiles])
        return context.get_dummy_value()

    return sig, codegen


_engine = None  # keeps the compiled tile function alive
_build_lock = threading.Lock()  # one build per process, even from many threads


def _self_test(address: int) -> bool:
    """The tile function's products against numpy's, for widths with and without
    a partial last step."""
    func = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                            ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                            ctypes.c_int64)(address)
    rng = np.random.default_rng(0)
    for dim in (4, 64, 100, 192):
        # rows with room for whole steps past the last one (as the callers give)
        rows = 2 * ROW_TILE
        store = rng.integers(0, 256, rows * dim + STEP, dtype=np.uint8)
        codes = store[:rows * dim].reshape(rows, dim)
        queries = rng.integers(-127, 128, (GROUP, dim), dtype=np.int8)
        packed = pack_queries(queries)
        out = np.zeros((rows, GROUP), dtype=np.int32)
        func(codes.ctypes.data, dim, packed.ctypes.data, packed.shape[1] * 64,
             packed.shape[1] // 16, out.ctypes.data, 2)
        if not np.array_equal(out, codes.astype(np.int64) @ queries.astype(np.int64).T):
            return False
    return True


@functools.cache
def tile_function() -> int:
    """Address of the compiled tile function, or 0 where AMX cannot be used."""
    with _build_lock:  # the cache is not a lock: threads arriving together wait here
        return _build()


def _build() -> int:
    global _engine
    if _engine is not None:
        return _engine.get_function_address(_NAME)
    if os.environ.get("LEANVEC_AMX", "1") == "0":
        return 0
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return 0
    if not {"amx_tile", "amx_int8"} <= _cpu_flags():
        return 0
    try:
        import llvmlite.binding as llvm

        # the IR is checked with LLVM 22; an LLVM that rejects it aborts the
        # process instead of raising, so older ones are not tried
        if llvm.llvm_version_info < (22,):
            return 0
        if not _request_tiles():
            return 0
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        module = llvm.parse_assembly(_tile_ir())
        module.verify()
        target = llvm.Target.from_default_triple()
        machine = target.create_target_machine(
            cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(),
            opt=3)
        engine = llvm.create_mcjit_compiler(module, machine)
        engine.finalize_object()
        address = engine.get_function_address(_NAME)
        if not address or not _self_test(address):
            logger.debug("AMX tile function failed its check; not used")
            return 0
    except (RuntimeError, OSError, ValueError, AttributeError) as exc:
        # an llvmlite or LLVM that cannot build the function
        logger.debug("AMX tile function unavailable: %s", exc)
        return 0
    _engine = engine  # kept for the life of the process: its code must not be freed
    return address


def available() -> bool:
    """Whether :func:`rows_tile` may be called (see the module's notes)."""
    return tile_function() != 0
