// Operator-level time profile of a piece of LibTorch work, for `difflab bench --profile`.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace difflab {

struct OperatorTime {
  std::string name;       // LibTorch operator or autograd node, e.g. aten::convolution_backward
  double self_ms = 0.0;   // time inside it, not counting the operators it called
  double total_ms = 0.0;  // time inside it, including the operators it called
  int64_t calls = 0;
};

// Runs `body` under LibTorch's operator profiler (CPU wall time per operator call, on every
// thread that runs operators) and returns every operator, slowest self time first. Empty when
// this LibTorch has no profiler API that difflab knows.
std::vector<OperatorTime> profile_operators(const std::function<void()>& body);

// The most memory that tensors allocated on this thread while `body` ran held at one time, in
// bytes (c10's allocation reports, as the profiler receives them).
int64_t peak_allocated_bytes(const std::function<void()>& body);

}  // namespace difflab
