// difflab::parallel_for (difflab/parallel.h): at::parallel_for's OpenMP implementation (LibTorch
// 1.13's ATen/ParallelOpenMP.h), with the parallel region opened by calling libgomp's entry point
// as GCC's own lowering of `#pragma omp parallel` does (GOMP_parallel, libgomp's ABI since GCC 4.9).
#include "difflab/parallel.h"

#include <ATen/Config.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <exception>

#if AT_PARALLEL_OPENMP && defined(DIFFLAB_OPENMP_GOMP)
extern "C" {
void GOMP_parallel(void (*function)(void*), void* data, unsigned threads, unsigned flags);
int omp_get_thread_num(void);
int omp_get_num_threads(void);
}
#define DIFFLAB_CALLS_GOMP 1
#endif

namespace difflab {
namespace {

int64_t divide_up(int64_t a, int64_t b) { return (a + b - 1) / b; }

#ifdef DIFFLAB_CALLS_GOMP
struct Loop {
  int64_t begin, end, grain;
  const std::function<void(int64_t, int64_t)>* body;
  std::atomic_flag failed = ATOMIC_FLAG_INIT;
  std::exception_ptr error{};
};

// One member of the team: its chunk, as at::parallel_for cuts them.
void run_chunk(void* data) {
  Loop& loop = *static_cast<Loop*>(data);
  int64_t threads = omp_get_num_threads();
  if (loop.grain > 0) threads = std::min(threads, divide_up(loop.end - loop.begin, loop.grain));
  const int64_t thread = omp_get_thread_num();
  const int64_t chunk = divide_up(loop.end - loop.begin, threads);
  const int64_t first = loop.begin + thread * chunk;
  if (first >= loop.end) return;
  try {
    (*loop.body)(first, std::min(loop.end, first + chunk));
  } catch (...) {
    if (!loop.failed.test_and_set()) loop.error = std::current_exception();
  }
}
#endif

}  // namespace

void parallel_for(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
  if (begin >= end) return;
#ifdef DIFFLAB_CALLS_GOMP
  // LibTorch sets each thread's OpenMP thread count once (at::internal::lazy_init_num_threads).
  thread_local bool initialised = false;
  if (!initialised) {
    at::init_num_threads();
    initialised = true;
  }
  if (end - begin < grain || at::in_parallel_region() || at::get_num_threads() == 1) {
    body(begin, end);
    return;
  }
  Loop loop{begin, end, grain, &body};
  GOMP_parallel(run_chunk, &loop, 0, 0);  // 0 threads: the team size LibTorch set
  if (loop.error) std::rethrow_exception(loop.error);
#else
  at::parallel_for(begin, end, grain, body);
#endif
}

}  // namespace difflab
