// Deterministic mutation fuzzing of what users type: 20,000 byte-level mutants each (fixed
// seed) of the shipped experiment files and of --where filters. Every mutant must either parse
// or be refused with a config Error (exit code 2 with a message): no crash, no hang, no other
// exception.
#include <chrono>
#include <fstream>
#include <random>
#include <sstream>

#include "config/experiment.h"
#include "difflab/error.h"
#include "results/filter.h"
#include "test_support.h"

using namespace difflab;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream file(std::string(DIFFLAB_TEST_SOURCE_DIR) + "/" + path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// One to four random edits of `text`: flip a byte, delete, duplicate or insert a span, or drop in
// a character TOML and the filter language care about.
std::string mutate(std::string text, std::mt19937_64& random) {
  static const std::string interesting = "[]{}()=\"'.,#\n\\ -+0123456789einfatrul<>!";
  const int edits = 1 + static_cast<int>(random() % 4);
  for (int edit = 0; edit < edits && !text.empty(); ++edit) {
    const size_t at = random() % text.size();
    const size_t span = 1 + random() % std::min<size_t>(16, text.size() - at);
    switch (random() % 5) {
      case 0: text[at] = static_cast<char>(text[at] ^ (1 << (random() % 8))); break;
      case 1: text.erase(at, span); break;
      case 2: text.insert(at, text.substr(at, span)); break;
      case 3: text.insert(at, 1, interesting[random() % interesting.size()]); break;
      default: text[at] = interesting[random() % interesting.size()]; break;
    }
  }
  return text;
}

}  // namespace

TEST(Fuzz, MutatedExperimentFilesParseOrFailWithAConfigError) {
  std::mt19937_64 random(20261129);
  const std::vector<std::string> seeds = {read_text("experiments/quickstart.toml"),
                                          read_text("experiments/ablation_loss_schedule.toml"),
                                          read_text("tests/data/tiny_synthetic.toml")};
  int refused = 0, accepted = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 20000; ++i) {
    const std::string mutant = mutate(seeds[i % seeds.size()], random);
    try {
      parse_sweep(mutant, "mutant.toml", {}, difflab::test::registry());
      ++accepted;
    } catch (const Error& error) {
      ASSERT_EQ(error.kind(), ErrorKind::config) << error.what() << "\n--- mutant " << i << ":\n" << mutant;
      ASSERT_FALSE(std::string(error.what()).empty());
      ++refused;
    } catch (const std::exception& error) {
      FAIL() << "mutant " << i << " threw " << error.what() << ":\n" << mutant;
    }
  }
  EXPECT_GT(refused, 2000);  // the mutations do break files ...
  EXPECT_GT(accepted, 200);  // ... and some still mean an experiment (a changed number, a comment)
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 240.0);
}

TEST(Fuzz, MutatedFiltersParseOrFailWithAConfigError) {
  std::mt19937_64 random(7);
  const std::map<std::string, bool> columns = {{"run_id", true}, {"status", false}, {"loss.plugin", false},
                                               {"training.epochs", true}, {"best_kid", true}};
  const std::vector<std::string> seeds = {
      "loss.plugin = \"mae\" and best_kid < 0.3",
      "not (status in ('failed', 'diverged')) or training.epochs >= 2",
      "best_kid is null and (run_id != 3 or loss.plugin = 'mse')"};
  Row row;
  row["status"] = {"finished", std::nullopt};
  row["best_kid"] = {"0.25", 0.25};
  int refused = 0;
  for (int i = 0; i < 20000; ++i) {
    const std::string mutant = mutate(seeds[i % seeds.size()], random);
    try {
      Filter::parse(mutant, columns).matches(row);
    } catch (const Error& error) {
      ASSERT_EQ(error.kind(), ErrorKind::config) << error.what() << "\nmutant: " << mutant;
      ++refused;
    } catch (const std::exception& error) {
      FAIL() << "filter mutant " << i << " threw " << error.what() << ": " << mutant;
    }
  }
  EXPECT_GT(refused, 2000);
}
