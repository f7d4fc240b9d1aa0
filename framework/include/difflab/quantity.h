// The three equivalent components of a noisy image (difflab/parameterisation.h): what a network
// predicts and what a loss compares. Its own header, without LibTorch, so that the experiment's
// settings (config/settings.h) and everything that reads them compile without LibTorch's headers.
#pragma once

#include <string>

#include "difflab/export.h"

namespace difflab {

enum class Quantity { noise, image, velocity };

// "noise" | "image" | "velocity" (anything else is a logic error: the schemas check it first).
DIFFLAB_API Quantity parse_quantity(const std::string& name);
DIFFLAB_API const char* to_string(Quantity quantity);

}  // namespace difflab
