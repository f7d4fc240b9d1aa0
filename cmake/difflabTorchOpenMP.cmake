# An OpenMP LibTorch (ATen/Config.h: AT_PARALLEL_OPENMP 1, as Debian's and the pip wheels are)
# implements at::parallel_for as a header template around `#pragma omp parallel`, instantiated in
# the code that calls it. Compiled without -fopenmp, _OPENMP is undefined and every parallel_for in
# that code silently runs on the calling thread: difflab's fused kernels ran on one of the two
# cores until this was found (perf: the second thread spun in libgomp). So everything that links
# `torch` compiles and links with OpenMP, LibTorch's precompiled header included. Used by difflab's
# own tree and by find_package(difflab), for out-of-tree plugins; sets DIFFLAB_TORCH_OPENMP when
# it applies.
include_guard(GLOBAL)

function(difflab_torch_openmp)
  set(_openmp "")
  foreach(_dir IN LISTS TORCH_INCLUDE_DIRS)  # not find_file: its NO_CACHE needs CMake 3.21
    if(EXISTS "${_dir}/ATen/Config.h")
      file(STRINGS "${_dir}/ATen/Config.h" _openmp REGEX "define AT_PARALLEL_OPENMP 1")
      break()
    endif()
  endforeach()
  if(NOT _openmp)
    return()
  endif()
  # Clang defaults to LLVM's libomp, and Debian's LibTorch runs on GCC's libgomp: two thread pools
  # in one process, each as large as the machine. Clang speaks libgomp's ABI: use that one.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang" AND NOT DEFINED OpenMP_CXX_FLAGS)
    execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=libgomp.so
                    OUTPUT_VARIABLE _gomp OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(NOT IS_ABSOLUTE "${_gomp}")  # Clang asks GCC's folders; without GCC's, ask its own
      find_library(_gomp NAMES gomp libgomp.so.1 PATHS /usr/lib/gcc/x86_64-linux-gnu/12 /usr/lib/gcc/x86_64-linux-gnu)
    endif()
    if(_gomp AND EXISTS "${_gomp}")
      set(OpenMP_CXX_FLAGS "-fopenmp=libgomp" CACHE STRING "OpenMP flags (GCC's runtime, as LibTorch's)")
      set(OpenMP_CXX_LIB_NAMES "gomp" CACHE STRING "")
      set(OpenMP_gomp_LIBRARY "${_gomp}" CACHE FILEPATH "")
    endif()
  endif()
  find_package(OpenMP COMPONENTS CXX)
  if(NOT OpenMP_CXX_FOUND)
    message(WARNING "difflab: LibTorch parallelises with OpenMP but this compiler has none: "
                    "at::parallel_for in difflab's code runs on one thread")
    return()
  endif()
  get_target_property(_links torch INTERFACE_LINK_LIBRARIES)
  if(NOT "OpenMP::OpenMP_CXX" IN_LIST _links)
    set_property(TARGET torch APPEND PROPERTY INTERFACE_LINK_LIBRARIES OpenMP::OpenMP_CXX)
  endif()
  set(DIFFLAB_TORCH_OPENMP ON PARENT_SCOPE)
endfunction()
