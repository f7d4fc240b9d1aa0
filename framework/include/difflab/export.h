// DIFFLAB_API marks the SDK's exported API. libdifflab_sdk.so is built with hidden visibility, so
// whatever a header declares without it is private to the library; the marked declarations are
// the documented API that plugins and the host link against.
#pragma once

#if defined(_WIN32)
#error "difflab's SDK targets ELF platforms (Linux)"
#endif
#define DIFFLAB_API __attribute__((visibility("default")))
