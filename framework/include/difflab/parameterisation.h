// What the network predicts and what the loss compares, in one place: a noisy image
// x = s·x₀ + n·ε (s = signal rate, n = noise rate, s² + n² = 1) has three equivalent components,
// the image x₀, the noise ε and the velocity v = s·ε − n·x₀ (Salimans & Ho 2022, "Progressive
// distillation", sec. 4 and appendix D), and any one of them with x gives the others:
//   x₀ = s·x − n·v      ε = n·x + s·v      (v-parameterisation)
//   x₀ = (x − n·ε) / s  v = (ε − n·x) / s  (noise)
//   ε = (x − s·x₀) / n  v = (s·x − x₀) / n (image)
#pragma once

#include "difflab/export.h"

#include <string>
#include <torch/types.h>

#include "difflab/quantity.h"

namespace difflab {

struct Decomposition {
  torch::Tensor noises;
  torch::Tensor images;
  torch::Tensor velocities;
};

// All three components of `noisy_images` from an estimate of one of them.
DIFFLAB_API Decomposition decompose(Quantity known, const torch::Tensor& estimate, const torch::Tensor& noisy_images,
                        const torch::Tensor& signal_rates, const torch::Tensor& noise_rates);

// v = s·ε − n·x₀, the training target of a velocity loss.
DIFFLAB_API torch::Tensor velocities(const torch::Tensor& images, const torch::Tensor& noises, const torch::Tensor& signal_rates,
                         const torch::Tensor& noise_rates);

DIFFLAB_API const torch::Tensor& component(const Decomposition& decomposition, Quantity quantity);

// Min-SNR-γ loss weights (Hang et al. 2023, "Efficient diffusion training via min-SNR weighting
// strategy", sec. 3.4): with SNR = s²/n², a loss on the image is weighted min(SNR, γ); on the
// noise (whose loss is the image loss times SNR) min(SNR, γ) / SNR; on the velocity (SNR + 1)
// times the image loss) min(SNR, γ) / (SNR + 1). Same shape as the rates.
DIFFLAB_API torch::Tensor min_snr_weights(Quantity target, const torch::Tensor& signal_rates, const torch::Tensor& noise_rates,
                              double gamma);

}  // namespace difflab
