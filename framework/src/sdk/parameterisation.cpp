#include "difflab/parameterisation.h"

#include <stdexcept>
#include <torch/torch.h>

namespace difflab {

Quantity parse_quantity(const std::string& name) {
  if (name == "noise") return Quantity::noise;
  if (name == "image") return Quantity::image;
  if (name == "velocity") return Quantity::velocity;
  throw std::logic_error("difflab: unknown quantity " + name);
}

const char* to_string(Quantity quantity) {
  switch (quantity) {
    case Quantity::noise: return "noise";
    case Quantity::image: return "image";
    case Quantity::velocity: return "velocity";
  }
  return "?";
}

Decomposition decompose(Quantity known, const torch::Tensor& estimate, const torch::Tensor& noisy_images,
                        const torch::Tensor& signal_rates, const torch::Tensor& noise_rates) {
  const torch::Tensor& x = noisy_images;
  const torch::Tensor& s = signal_rates;
  const torch::Tensor& n = noise_rates;
  switch (known) {
    case Quantity::noise:
      return {estimate, (x - n * estimate) / s, (estimate - n * x) / s};
    case Quantity::image:
      return {(x - s * estimate) / n, estimate, (s * x - estimate) / n};
    case Quantity::velocity:
      return {n * x + s * estimate, s * x - n * estimate, estimate};
  }
  throw std::logic_error("difflab: unknown quantity");
}

torch::Tensor velocities(const torch::Tensor& images, const torch::Tensor& noises, const torch::Tensor& signal_rates,
                         const torch::Tensor& noise_rates) {
  return signal_rates * noises - noise_rates * images;
}

const torch::Tensor& component(const Decomposition& decomposition, Quantity quantity) {
  switch (quantity) {
    case Quantity::noise: return decomposition.noises;
    case Quantity::image: return decomposition.images;
    case Quantity::velocity: return decomposition.velocities;
  }
  throw std::logic_error("difflab: unknown quantity");
}

torch::Tensor min_snr_weights(Quantity target, const torch::Tensor& signal_rates, const torch::Tensor& noise_rates,
                              double gamma) {
  const torch::Tensor snr = (signal_rates * signal_rates) / (noise_rates * noise_rates);
  const torch::Tensor clipped = torch::clamp_max(snr, gamma);
  switch (target) {
    case Quantity::image: return clipped;
    case Quantity::noise: return clipped / snr;
    case Quantity::velocity: return clipped / (snr + 1.0);
  }
  throw std::logic_error("difflab: unknown quantity");
}

}  // namespace difflab
