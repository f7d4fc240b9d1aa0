// A library that needs a symbol nothing provides: dlopen fails, and the host must report
// dlerror()'s reason (the symbol), not a generic errno.
extern "C" int difflab_test_symbol_nobody_defines;
extern "C" __attribute__((visibility("default"))) int difflab_test_read_it() { return difflab_test_symbol_nobody_defines; }
