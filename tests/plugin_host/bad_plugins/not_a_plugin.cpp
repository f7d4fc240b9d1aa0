// A shared library without a difflab ABI record.
extern "C" int not_a_difflab_plugin() { return 42; }
