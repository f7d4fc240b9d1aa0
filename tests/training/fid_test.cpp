// FID and precision/recall/density/coverage (training/fid.h) against their references: clean-fid's
// and pytorch-fid's formula through Debian's python3-scipy (scipy.linalg.sqrtm of Σ₁Σ₂, real part)
// and the papers' equations written with numpy (tools/fid_golden.py), on random features of 16 to
// 2048 dimensions, nearly singular ones and real Fashion-MNIST pixels; and cases whose answer is
// known without a reference.
#include <cmath>
#include <fmt/format.h>
#include <fstream>
#include <limits>
#include <sstream>
#include <torch/torch.h>

#include "test_support.h"
#include "training/fid.h"

using namespace difflab;
namespace fs = std::filesystem;

namespace {

torch::Tensor read_f64(const fs::path& path, int64_t rows, int64_t dims) {
  std::ifstream file(path, std::ios::binary);
  torch::Tensor values = torch::empty({rows, dims}, torch::kFloat64);
  file.read(reinterpret_cast<char*>(values.data_ptr<double>()), static_cast<std::streamsize>(rows * dims * 8));
  EXPECT_TRUE(file.good()) << path;
  return values;
}

// How far two float64 computations of the Fréchet distance may differ (ε = 2⁻⁵³):
// - the trace terms and |μ₁ − μ₂|² are sums of d terms: d·ε·(tr Σ₁ + tr Σ₂ + |Δμ|²);
// - tr (Σ₁Σ₂)^½ = Σᵢ √μᵢ over the eigenvalues μᵢ of M = S Σ₂ S (training/fid.h). Forming M and a
//   backward-stable symmetric eigensolver perturb each μᵢ by at most δ = d·ε·‖Σ₁‖₂‖Σ₂‖₂ (Weyl's
//   inequality; the factor d covers the summation in the products and the solver's p(d)); √μᵢ then
//   moves by at most min(√δ, δ / (2√μᵢ)) — a large error only for the eigenvalues near 0.
// scipy's sqrtm (a Schur method, Higham 1987) of the non-symmetric Σ₁Σ₂ has an error of the same
// order for these matrices; the two computations are independent, so the tolerance is twice the
// bound, and the 2 of −2 tr (·)^½ doubles the square-root part.
double fid_tolerance(const torch::Tensor& a, const torch::Tensor& b) {
  const double eps = std::numeric_limits<double>::epsilon() / 2.0;
  const GaussianFit fa = gaussian_fit(a), fb = gaussian_fit(b);
  const double d = static_cast<double>(a.size(1));
  const double norm1 = torch::linalg::eigvalsh(fa.covariance, "L").max().item<double>();
  const double norm2 = torch::linalg::eigvalsh(fb.covariance, "L").max().item<double>();
  const auto [lambda, vectors] = torch::linalg::eigh(fa.covariance, "L");
  const torch::Tensor s = torch::mm(vectors * lambda.clamp_min(0.0).sqrt().unsqueeze(0), vectors.t());
  const torch::Tensor m = torch::mm(torch::mm(s, fb.covariance), s);
  const torch::Tensor mu = torch::linalg::eigvalsh(0.5 * (m + m.t()), "L").clamp_min(0.0);
  const double delta = d * eps * norm1 * norm2;
  double roots = 0.0;
  for (int64_t i = 0; i < mu.size(0); ++i) {
    const double value = mu[i].item<double>();
    roots += std::min(std::sqrt(delta), value > 0.0 ? delta / (2.0 * std::sqrt(value)) : std::sqrt(delta));
  }
  const torch::Tensor difference = fa.mean - fb.mean;
  const double traces = fa.covariance.trace().item<double>() + fb.covariance.trace().item<double>() +
                        difference.dot(difference).item<double>();
  return 2.0 * (d * eps * traces + 2.0 * roots);
}

struct GoldenCase {
  std::string name;
  int64_t rows_a = 0, rows_b = 0, dims = 0;
  double fid = 0.0;
  int offset = 0;
  double precision = 0.0, recall = 0.0, density = 0.0, coverage = 0.0;
  int64_t near_ties = 0;
};

}  // namespace

TEST(Fid, AgreesWithScipysSqrtmOnRandomNearlySingularAndRealFeatures) {
  if (difflab::test::shell_command("/usr/bin/python3 -c 'import scipy'").exit_code != 0)
    GTEST_SKIP() << "Debian's python3-scipy is not installed (tools/install_deps.sh --tests installs it)";
  difflab::test::TempDir dir;
  const auto golden = difflab::test::shell_command("/usr/bin/python3 " + difflab::test::source_dir() +
                                                   "/tools/fid_golden.py " + dir.path().string());
  ASSERT_EQ(golden.exit_code, 0) << golden.output;
  std::ifstream listing(dir / "cases.txt");
  std::vector<GoldenCase> cases;
  for (std::string line; std::getline(listing, line);) {
    std::istringstream in(line);
    GoldenCase c;
    std::string p, r, dn, cv;
    in >> c.name >> c.rows_a >> c.rows_b >> c.dims >> c.fid >> c.offset >> p >> r >> dn >> cv >> c.near_ties;
    c.precision = std::stod(p), c.recall = std::stod(r), c.density = std::stod(dn), c.coverage = std::stod(cv);
    cases.push_back(c);
  }
  ASSERT_EQ(cases.size(), 8u) << golden.output;
  for (const GoldenCase& c : cases) {
    const torch::Tensor a = read_f64(dir / (c.name + "-a.f64"), c.rows_a, c.dims);
    const torch::Tensor b = read_f64(dir / (c.name + "-b.f64"), c.rows_b, c.dims);
    // scipy needed no offset in any case (clean-fid's 1e-6 I would change the reference itself).
    EXPECT_EQ(c.offset, 0) << c.name;
    const double value = fid(a, b), tolerance = fid_tolerance(a, b);
    EXPECT_NEAR(value, c.fid, tolerance) << c.name;
    // Symmetric, and 0 for a set against itself, to the same bound (not for the 2048-d case: the
    // eigendecompositions of 2048 x 2048 matrices are the test's time).
    if (c.dims < 2048) {
      EXPECT_NEAR(fid(b, a), value, tolerance) << c.name;
      EXPECT_NEAR(fid(a, a), 0.0, fid_tolerance(a, a)) << c.name;
    }
    std::printf("FID %-26s d=%-5lld difflab %.12g scipy %.12g |diff| %.2e tolerance %.2e\n", c.name.c_str(),
                static_cast<long long>(c.dims), value, c.fid, std::abs(value - c.fid), tolerance);
    if (std::isnan(c.precision)) continue;  // distances of the largest case not compared (time)
    ASSERT_EQ(c.near_ties, 0) << c.name << ": a comparison within rounding of its threshold";
    // Counts over the same comparisons: equal to the last bit (a sum of ones divided alike).
    for (int64_t block : {int64_t{1024}, int64_t{77}}) {
      const PrdcEstimate estimate = prdc(a, b, 3, 5, block);
      EXPECT_DOUBLE_EQ(estimate.precision, c.precision) << c.name << " block " << block;
      EXPECT_DOUBLE_EQ(estimate.recall, c.recall) << c.name << " block " << block;
      EXPECT_DOUBLE_EQ(estimate.density, c.density) << c.name << " block " << block;
      EXPECT_DOUBLE_EQ(estimate.coverage, c.coverage) << c.name << " block " << block;
    }
  }
}

TEST(Fid, OfTwoGaussiansIsTheirClosedFormFrechetDistance) {
  // One dimension: d² = (μ₁ − μ₂)² + (σ₁ − σ₂)², from the fits' own moments (Eq. 6 with d = 1).
  torch::manual_seed(3);
  const torch::Tensor a = torch::randn({5000, 1}, torch::kFloat64) * 2.0 + 1.0;
  const torch::Tensor b = torch::randn({4000, 1}, torch::kFloat64) * 0.5 - 1.0;
  const GaussianFit fa = gaussian_fit(a), fb = gaussian_fit(b);
  const double s1 = std::sqrt(fa.covariance.item<double>()), s2 = std::sqrt(fb.covariance.item<double>());
  const double expected = std::pow(fa.mean.item<double>() - fb.mean.item<double>(), 2) + std::pow(s1 - s2, 2);
  EXPECT_NEAR(fid(a, b), expected, 1e-12 * expected);
  // Diagonal covariances: Σ (μ₁ᵢ − μ₂ᵢ)² + (σ₁ᵢ − σ₂ᵢ)², exactly the per-axis sum.
  GaussianFit x{torch::tensor({0.0, 1.0, 2.0}, torch::kFloat64), torch::diag(torch::tensor({1.0, 4.0, 9.0}, torch::kFloat64)), 10};
  GaussianFit y{torch::tensor({1.0, 1.0, 0.0}, torch::kFloat64), torch::diag(torch::tensor({4.0, 1.0, 0.0}, torch::kFloat64)), 10};
  // (1 + 0 + 4) + ((1-2)² + (2-1)² + (3-0)²) = 5 + 11; the zero variance is a singular Σ₂.
  EXPECT_NEAR(frechet_distance(x, y), 16.0, 1e-12);
}

TEST(Prdc, KnownAnswers) {
  torch::manual_seed(5);
  const torch::Tensor real = torch::randn({400, 8}, torch::kFloat64);
  // Identical sets: every generated point lies in its own copy's ball, and every real one too.
  PrdcEstimate same = prdc(real, real);
  EXPECT_EQ(same.precision, 1.0);
  EXPECT_EQ(same.recall, 1.0);
  EXPECT_EQ(same.coverage, 1.0);
  // Two clusters far apart: nothing of one lies in the other's balls.
  PrdcEstimate apart = prdc(real, torch::randn({300, 8}, torch::kFloat64) + 100.0);
  EXPECT_EQ(apart.precision, 0.0);
  EXPECT_EQ(apart.recall, 0.0);
  EXPECT_EQ(apart.density, 0.0);
  EXPECT_EQ(apart.coverage, 0.0);
  // Ten well separated modes in the plane, the generated set drawn from five of them at the real
  // set's density. No real point of the other five lies in a generated ball (the modes are ~50
  // apart, the balls ~0.1 wide), so recall and coverage are at most 1/2 exactly; a covered mode's
  // points fall inside the other set's 3-NN balls but for its sparse rim (a few per cent at 400
  // points a mode), so they are near 1/2, and precision near 1.
  const torch::Tensor centres = torch::randn({10, 2}, torch::kFloat64) * 50.0;
  const torch::Tensor modes = torch::arange(4000) % 10;
  const torch::Tensor real_modes = centres.index_select(0, modes) + torch::randn({4000, 2}, torch::kFloat64);
  const torch::Tensor half = torch::arange(2000) % 5;
  const torch::Tensor generated = centres.index_select(0, half) + torch::randn({2000, 2}, torch::kFloat64);
  const PrdcEstimate covered = prdc(real_modes, generated);
  EXPECT_LE(covered.recall, 0.5);
  EXPECT_GE(covered.recall, 0.45);
  EXPECT_LE(covered.coverage, 0.5);
  EXPECT_GE(covered.coverage, 0.45);
  EXPECT_GE(covered.precision, 0.9);
  std::printf("half of the modes: precision %.4f recall %.4f density %.4f coverage %.4f\n", covered.precision,
              covered.recall, covered.density, covered.coverage);
  // k must be below both set sizes.
  EXPECT_THROW(prdc(real.slice(0, 0, 5), real, 3, 5), Error);
}
