// Plugin loading through Boost.DLL: real .so files, ABI checks before any call, listing.
#include "difflab/loss.h"
#include "difflab/registry.h"
#include "difflab/schedule.h"
#include "test_support.h"

using namespace difflab;
namespace fs = std::filesystem;

TEST(PluginRegistry, FindsEveryBuiltInPlugin) {
  PluginRegistry& registry = difflab::test::registry();
  for (auto [family, name] : std::vector<std::pair<Family, std::string>>{
           {Family::schedule, "cosine"}, {Family::schedule, "linear"}, {Family::schedule, "log_snr_linear"},
           {Family::schedule, "sigmoid"}, {Family::schedule, "log_noise_linear"},
           {Family::schedule, "log_signal_linear"}, {Family::schedule, "noise_step_linear"},
           {Family::schedule, "signal_step_linear"}, {Family::schedule, "karras"}, {Family::loss, "mae"},
           {Family::loss, "mse"}, {Family::loss, "pseudo_huber"}, {Family::sampler, "ddim"}, {Family::sampler, "ddpm"},
           {Family::network, "residual_unet"}, {Family::dataset, "fashion_mnist"},
           {Family::dataset, "synthetic"}}) {
    const PluginInfo* info = registry.find(family, name);
    ASSERT_NE(info, nullptr) << name;
    EXPECT_EQ(info->family, family);
    EXPECT_FALSE(info->version.empty());
    EXPECT_FALSE(info->description.empty());
  }
  EXPECT_EQ(registry.list(Family::loss).size(), 3u);
  EXPECT_TRUE(registry.rejected().empty());
}

TEST(PluginRegistry, SchemasCarryDefaultsRangesAndDocs) {
  const PluginInfo& cosine = difflab::test::registry().get(Family::schedule, "cosine");
  ASSERT_EQ(cosine.schema.size(), 5u);
  EXPECT_EQ(cosine.schema[0].name, "endpoints");
  EXPECT_EQ(cosine.schema[1].name, "min_signal_rate");
  EXPECT_EQ(std::get<double>(cosine.schema[1].default_value), 0.02);
  EXPECT_EQ(cosine.schema[1].constraint_text(), "in (0, 1)");
  EXPECT_FALSE(cosine.schema[1].doc.empty());
  EXPECT_NE(cosine.validate, nullptr);
}

TEST(PluginRegistry, RefusesAPluginWithAWrongAbiRecord) {
  const fs::path file = fs::path(DIFFLAB_TEST_BAD_PLUGIN_DIR) / "difflab-loss-wrong_abi.so";
  ASSERT_TRUE(fs::exists(file));
  try {
    load_plugin_library(file);
    FAIL() << "wrong ABI accepted";
  } catch (const Error& error) {
    EXPECT_NE(error.message().find("ABI version 999"), std::string::npos) << error.what();
    EXPECT_EQ(error.context().file, file.string());
  }
}

TEST(PluginRegistry, RefusesALibraryWithoutAbiRecord) {
  const fs::path file = fs::path(DIFFLAB_TEST_BAD_PLUGIN_DIR) / "not-a-plugin.so";
  try {
    load_plugin_library(file);
    FAIL();
  } catch (const Error& error) {
    EXPECT_NE(error.message().find("not a difflab plugin"), std::string::npos);
  }
}

TEST(PluginRegistry, ScanRecordsRefusedLibrariesAndNamesThemWhenAPluginIsMissing) {
  PluginRegistry registry({DIFFLAB_TEST_BAD_PLUGIN_DIR});
  EXPECT_TRUE(registry.plugins().empty());
  ASSERT_EQ(registry.rejected().size(), 2u);
  try {
    registry.get(Family::loss, "wrong_abi");
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::config);
    EXPECT_NE(error.context().hint.find("refused"), std::string::npos);
    EXPECT_NE(error.context().hint.find("available loss plugins: none"), std::string::npos);
  }
}

TEST(PluginRegistry, PluginPathEnvironmentVariableIsSearched) {
  setenv("DIFFLAB_PLUGIN_PATH", "/nonexistent:" DIFFLAB_TEST_BAD_PLUGIN_DIR, 1);
  std::vector<fs::path> dirs = PluginRegistry::default_search_dirs();
  unsetenv("DIFFLAB_PLUGIN_PATH");
  ASSERT_GE(dirs.size(), 4u);
  EXPECT_EQ(dirs[dirs.size() - 2], fs::path("/nonexistent"));
  EXPECT_EQ(dirs.back(), fs::path(DIFFLAB_TEST_BAD_PLUGIN_DIR));
}

TEST(PluginRegistry, CreatedComponentsWorkAcrossTheLibraryBoundary) {
  auto mae = difflab::test::make<Loss>(Family::loss, "mae");
  EXPECT_FLOAT_EQ((*mae)(torch::ones({3}), torch::zeros({3})).item<float>(), 1.0f);
  // Asking for the wrong interface is refused, not undefined behaviour.
  EXPECT_THROW(difflab::test::registry().create<Schedule>(Family::loss, "mae", {}, {}), Error);
}
