// A parallel loop on LibTorch's own intra-op threads, whatever compiler built the caller.
//
// at::parallel_for is a header template: in an OpenMP LibTorch (Debian's, the pip wheels) it is a
// `#pragma omp parallel` compiled into the caller, so it runs in parallel only where the caller's
// compiler emits calls to LibTorch's OpenMP runtime, GCC's libgomp. GCC does; Clang emits OpenMP
// only for LLVM's runtime, and without it the loop runs on the calling thread, silently.
// difflab::parallel_for is compiled once, in the SDK, and calls libgomp itself: the same team
// LibTorch's kernels use, under either compiler.
#pragma once

#include <cstdint>
#include <functional>

#include "difflab/export.h"

namespace difflab {

// at::parallel_for's contract: `body(first, last)` over [begin, end) split into one contiguous
// chunk per thread, at most ⌈(end - begin) / grain⌉ threads; on the calling thread alone when the
// range is below `grain`, inside another parallel region, or with one thread. An exception from
// any chunk is rethrown here (the first one).
DIFFLAB_API void parallel_for(int64_t begin, int64_t end, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& body);

}  // namespace difflab
