// The --where language: what it matches, and that anything else is a clear error, never SQL.
#include "difflab/error.h"
#include "results/filter.h"
#include "test_support.h"

using namespace difflab;

namespace {

const std::map<std::string, bool> kColumns = {
    {"run_id", true}, {"status", false}, {"loss.plugin", false}, {"training.epochs", true}, {"best_kid", true},
    {"network.widths", false}};

Row row(const std::string& loss, double kid, int64_t epochs, const std::string& status = "finished") {
  Row result;
  result["status"] = {status, std::nullopt};
  result["loss.plugin"] = {loss, std::nullopt};
  result["training.epochs"] = {std::to_string(epochs), static_cast<double>(epochs)};
  if (kid >= 0) result["best_kid"] = {std::to_string(kid), kid};
  result["network.widths"] = {"[32, 64]", std::nullopt};
  return result;
}

bool matches(const std::string& filter, const Row& candidate) {
  return Filter::parse(filter, kColumns).matches(candidate);
}

Error where_error(const std::string& filter) {
  try {
    Filter::parse(filter, kColumns);
  } catch (const Error& error) {
    return error;
  }
  ADD_FAILURE() << "no error for: " << filter;
  return ConfigError("none");
}

}  // namespace

TEST(Filter, ComparesTextAndNumbersWithAndOrNotAndParentheses) {
  const Row mae = row("mae", 0.25, 2), mse = row("mse", 0.5, 1), failed = row("mse", -1, 3, "failed");
  EXPECT_TRUE(matches("loss.plugin = \"mae\" and kid < 0.3", mae));
  EXPECT_FALSE(matches("loss.plugin = \"mae\" and kid < 0.3", mse));
  EXPECT_TRUE(matches("loss.plugin == 'mse' OR kid <= 0.25", mae));
  EXPECT_TRUE(matches("not (loss.plugin = 'mae')", mse));
  EXPECT_FALSE(matches("not loss.plugin = 'mse' and training.epochs >= 2", mse));
  EXPECT_TRUE(matches("loss.plugin != 'mae' and (training.epochs > 2 or best_kid >= 0.5)", mse));
  EXPECT_TRUE(matches("training.epochs in (1, 3)", failed));
  EXPECT_FALSE(matches("training.epochs in (1, 3)", mae));
  EXPECT_TRUE(matches("loss.plugin in ('mae', \"huber\")", mae));
  EXPECT_TRUE(matches("network.widths = '[32, 64]'", mae));
  // A missing value (NULL) satisfies no comparison, as in SQL; "is null" finds it.
  EXPECT_FALSE(matches("kid < 1", failed));
  EXPECT_FALSE(matches("kid >= 1", failed));
  EXPECT_TRUE(matches("kid is null", failed));
  EXPECT_TRUE(matches("kid IS NOT NULL", mae));
  EXPECT_TRUE(matches("training.epochs = 2.0 and training.epochs <> -1e3", mae));
}

TEST(Filter, QuotesInsideValuesAreJustText) {
  const Row odd = row("x' OR '1'='1", 0.1, 1);
  EXPECT_FALSE(matches("loss.plugin = \"mae' OR '1'='1\"", row("mae", 0.1, 1)));
  EXPECT_TRUE(matches("loss.plugin = \"x' OR '1'='1\"", odd));
}

TEST(Filter, HostileOrMalformedInputIsAnErrorAtItsColumn) {
  const Error drop = where_error("loss.plugin = \"mae\"; DROP TABLE runs");
  EXPECT_EQ(drop.kind(), ErrorKind::config);
  EXPECT_EQ(drop.context().file, "--where");
  EXPECT_EQ(drop.context().column, 20);
  EXPECT_NE(std::string(drop.what()).find("unexpected character at \";\""), std::string::npos) << drop.what();
  EXPECT_EQ(where_error("loss.plugin = \"a\\\" or 1=1 --\"").context().column, 23);  // no escapes: 1 is no column
  EXPECT_EQ(where_error("kid < 0.3 -- comment").context().column, 11);
  EXPECT_EQ(where_error("loss.plugin = 'mae' union select * from runs").context().column, 21);
  EXPECT_EQ(where_error("(loss.plugin = 'mae'").context().column, 21);
  EXPECT_EQ(where_error("loss.plugin = \"unterminated").context().column, 15);
  EXPECT_EQ(where_error("").context().column, 1);
  EXPECT_EQ(where_error("kid <").context().column, 6);
  EXPECT_NE(std::string(where_error("loss.plugin = 3").what()).find("holds text"), std::string::npos);
  EXPECT_NE(std::string(where_error("kid < 'low'").what()).find("holds numbers"), std::string::npos);
  EXPECT_EQ(where_error("loss.plugn = 'mae'").context().hint, "did you mean loss.plugin?");
  EXPECT_EQ(where_error("training.epochs = 1x").context().column, 19);
}

TEST(Filter, DeepNestingIsAnErrorNotAStackOverflow) {
  const std::string parentheses = std::string(15000, '(') + "kid < 1" + std::string(15000, ')');
  EXPECT_NE(std::string(where_error(parentheses).what()).find("nested more than 200 deep"), std::string::npos);
  std::string nots;
  for (int i = 0; i < 30000; ++i) nots += "not ";
  EXPECT_NE(std::string(where_error(nots + "kid < 1").what()).find("nested more than 200 deep"), std::string::npos);
  // Nesting a user could mean still works.
  EXPECT_TRUE(matches(std::string(50, '(') + "best_kid < 1" + std::string(50, ')'), row("mae", 0.5, 1)));
}
