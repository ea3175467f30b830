"""Software prefetch for kernels whose next rows are known before they are read.

Graph search and re-ranking read rows at random; their cost is mostly waiting
for memory. Knowing the rows a few steps ahead, a kernel asks for them with
``prefetch`` (the processor's prefetch instruction: a hint that neither blocks
nor faults) and computes on earlier rows meanwhile.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def prefetch(typingctx, arr, index):
    """Hint that the cache line holding element ``index`` of the C-ordered array
    ``arr`` (flat index, in elements) will be read soon."""
    if not isinstance(arr, types.Array) or not isinstance(index, types.Integer):
        return None
    sig = types.void(arr, index)

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        byte = ir.IntType(8)
        base = builder.bitcast(array.data, byte.as_pointer())
        item = context.get_abi_sizeof(context.get_data_type(array_type.dtype))
        offset = builder.mul(context.cast(builder, args[1], signature.args[1], types.intp),
                             context.get_constant(types.intp, item))
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [byte.as_pointer(), i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # read, keep in all cache levels, data cache
        builder.call(fn, [builder.gep(base, [offset]), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def prefetch_rows(arr, ids, count):
    """Prefetch every 64-byte line of rows ``ids[:count]`` of a C-ordered 2-d array."""
    width = arr.shape[1]
    step = max(1, 64 // arr.itemsize)
    for t in range(count):
        start = ids[t] * width
        for j in range(0, width, step):
            prefetch(arr, start + j)
        prefetch(arr, start + width - 1)


@njit(cache=True, nogil=True, inline="always")
def prefetch_items(arr, ids, count):
    """Prefetch elements ``ids[:count]`` of a 1-d array."""
    for t in range(count):
        prefetch(arr, ids[t])
