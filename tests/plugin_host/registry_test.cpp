// Plugin loading through Boost.DLL: real .so files, ABI checks before any call, listing.
#include <algorithm>
#include <fmt/format.h>

#include "difflab/loss.h"
#include "difflab/plugin.h"
#include "difflab/schedule.h"
#include "plugin_host/registry.h"
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
  // Every loss library of the build's plugin folder is listed, and nothing else.
  size_t loss_libraries = 0;
  for (const auto& entry : fs::directory_iterator(PluginRegistry::default_search_dirs().front()))
    loss_libraries += entry.path().filename().string().rfind("difflab-loss-", 0) == 0;
  EXPECT_GE(loss_libraries, 3u);
  EXPECT_EQ(registry.list(Family::loss).size(), loss_libraries);
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

TEST(PluginRegistry, RefusesAPluginBuiltAgainstAnotherLibTorch) {
  const fs::path file = fs::path(DIFFLAB_TEST_BAD_PLUGIN_DIR) / "difflab-loss-wrong_torch.so";
  try {
    load_plugin_library(file);
    FAIL() << "a plugin of another LibTorch was accepted";
  } catch (const Error& error) {
    EXPECT_NE(error.message().find(fmt::format("LibTorch {}.99", TORCH_VERSION_MAJOR)), std::string::npos)
        << error.what();
    EXPECT_NE(error.context().hint.find("same LibTorch"), std::string::npos);
  }
}

// tests/CMakeLists.txt builds changed_layout against a copy of the SDK headers in which
// ImageSplits has one more member.
TEST(PluginRegistry, RefusesAPluginBuiltAgainstAChangedStructLayoutNamingTheStruct) {
  const fs::path file = fs::path(DIFFLAB_TEST_BAD_PLUGIN_DIR) / "difflab-loss-changed_layout.so";
  ASSERT_TRUE(fs::exists(file));
  try {
    load_plugin_library(file);
    FAIL() << "a plugin with another ImageSplits layout was accepted";
  } catch (const Error& error) {
    EXPECT_NE(error.message().find("layout of ImageSplits differs"), std::string::npos) << error.what();
    // Only that struct: the others are unchanged.
    EXPECT_EQ(error.message().find("PluginInfo"), std::string::npos) << error.what();
    EXPECT_EQ(error.context().file, file.string());
  }
}

TEST(AbiRecord, LayoutDifferencesNameChangedMissingAndUnknownStructs) {
  std::vector<LayoutFingerprint> layouts(std::begin(difflab::abi::kLayouts), std::end(difflab::abi::kLayouts));
  AbiRecord record{kAbiMagic, DIFFLAB_ABI_VERSION, 0, 0, 0, static_cast<uint32_t>(layouts.size()), layouts.data()};
  EXPECT_TRUE(layout_differences(record).empty());

  for (auto& layout : layouts)
    if (std::string(layout.name) == "Rates") layout.fingerprint ^= 1;
  EXPECT_EQ(layout_differences(record), std::vector<std::string>{"Rates"});

  layouts.erase(std::remove_if(layouts.begin(), layouts.end(),
                               [](const LayoutFingerprint& layout) { return std::string(layout.name) == "Loss (interface)"; }),
                layouts.end());
  layouts.push_back({"Tomorrow", 42});
  record.layout_count = static_cast<uint32_t>(layouts.size());
  record.layouts = layouts.data();
  EXPECT_EQ(layout_differences(record),
            (std::vector<std::string>{"Rates", "Loss (interface) (absent in the plugin)", "Tomorrow (unknown to difflab)"}));
}

TEST(AbiRecord, FingerprintsFollowSizesAndOffsets) {
  struct Two {
    int32_t a;
    int64_t b;
  };
  struct Swapped {
    int64_t b;
    int32_t a;
  };
  constexpr uint64_t two = DIFFLAB_LAYOUT(Two, DIFFLAB_FIELD(Two, a), DIFFLAB_FIELD(Two, b)).fingerprint;
  constexpr uint64_t swapped = DIFFLAB_LAYOUT(Swapped, DIFFLAB_FIELD(Swapped, a), DIFFLAB_FIELD(Swapped, b)).fingerprint;
  static_assert(two != swapped, "a member that moves changes the fingerprint");
  EXPECT_NE(two, swapped);
}

TEST(PluginRegistry, ALaterFolderReplacesAnEarlierFoldersPluginOfTheSameName) {
  difflab::test::TempDir dir;
  const fs::path built = PluginRegistry::default_search_dirs().front() / "difflab-loss-mse.so";
  for (const char* folder : {"first", "second"}) {
    fs::create_directories(dir.path() / folder);
    fs::copy_file(built, dir.path() / folder / built.filename());
  }
  PluginRegistry registry({dir.path() / "first", dir.path() / "second"});
  ASSERT_EQ(registry.list(Family::loss).size(), 1u);
  EXPECT_EQ(registry.list(Family::loss).front().path, dir.path() / "second" / built.filename());
  // ... and says so, naming both files.
  ASSERT_EQ(registry.warnings().size(), 1u);
  EXPECT_NE(registry.warnings()[0].find((dir.path() / "second" / built.filename()).string() + " replaces the one of " +
                                        (dir.path() / "first" / built.filename()).string()),
            std::string::npos)
      << registry.warnings()[0];
  PluginRegistry reversed({dir.path() / "second", dir.path() / "first"});
  EXPECT_EQ(reversed.list(Family::loss).front().path, dir.path() / "first" / built.filename());
}

namespace {
// The reason load_plugin_library gives for refusing `file` (and that it does refuse it).
std::string refusal(const fs::path& file) {
  try {
    load_plugin_library(file);
  } catch (const Error& error) {
    EXPECT_EQ(error.context().file, file.string());
    return error.message();
  }
  ADD_FAILURE() << file << " was accepted";
  return "";
}
}  // namespace

TEST(PluginRegistry, RefusesATruncatedLibraryInsteadOfCrashingInDlopen) {
  difflab::test::TempDir dir;
  const fs::path built = PluginRegistry::default_search_dirs().front() / "difflab-loss-mae.so";
  const auto size = fs::file_size(built);
  for (const auto& [name, length] : std::vector<std::pair<std::string, uintmax_t>>{
           {"difflab-loss-short.so", 2000}, {"difflab-loss-half.so", size / 2}, {"difflab-loss-empty.so", 0}}) {
    fs::copy_file(built, dir / name);
    fs::resize_file(dir / name, length);
    const std::string reason = refusal(dir / name);
    EXPECT_TRUE(reason.find("truncated") != std::string::npos || reason.find("not an ELF") != std::string::npos)
        << name << ": " << reason;
  }
  PluginRegistry registry({dir.path()});
  EXPECT_EQ(registry.rejected().size(), 3u);
}

TEST(PluginRegistry, RefusesALibraryWhoseInfoFunctionReturnsNull) {
  EXPECT_NE(refusal(fs::path(DIFFLAB_TEST_BAD_PLUGIN_DIR) / "difflab-loss-null_info.so").find("returned no metadata"),
            std::string::npos);
}

TEST(PluginRegistry, RefusesAPluginWhoseDefaultBreaksItsOwnSchema) {
  const std::string reason = refusal(fs::path(DIFFLAB_TEST_BAD_PLUGIN_DIR) / "difflab-loss-bad_default.so");
  EXPECT_NE(reason.find("the default of parameter \"scale\" breaks its own schema"), std::string::npos) << reason;
}

TEST(PluginRegistry, ReportsTheDynamicLoadersReasonForALibraryThatCannotLoad) {
  const std::string reason = refusal(fs::path(DIFFLAB_TEST_BAD_PLUGIN_DIR) / "missing-symbol.so");
  EXPECT_NE(reason.find("undefined symbol: difflab_test_symbol_nobody_defines"), std::string::npos) << reason;
}

TEST(PluginRegistry, AnErrorWhileAPluginIsMadeNamesThePluginAndItsKey) {
  PluginRegistry registry({DIFFLAB_TEST_BAD_PLUGIN_DIR});
  Params params;
  params.set("scale", 1.0);
  try {
    registry.create<Loss>(Family::loss, "typo_param", params, {});
    FAIL() << "a constructor reading an undeclared parameter succeeded";
  } catch (const Error& error) {
    EXPECT_NE(error.message().find("loss plugin \"typo_param\": no parameter \"scal\""), std::string::npos)
        << error.what();
    EXPECT_EQ(error.context().key, "loss.scal");
    EXPECT_NE(error.context().hint.find("did you mean \"scale\""), std::string::npos) << error.what();
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
  ASSERT_EQ(registry.plugins().size(), 1u);  // typo_param loads; it fails only when made
  EXPECT_EQ(registry.plugins().front().info->name, "typo_param");
  // wrong ABI, wrong LibTorch, changed layout, null info, bad default, missing symbol, not a plugin
  ASSERT_EQ(registry.rejected().size(), 7u);
  try {
    registry.get(Family::loss, "wrong_abi");
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::config);
    EXPECT_NE(error.context().hint.find("refused"), std::string::npos);
    EXPECT_NE(error.context().hint.find("available loss plugins: typo_param"), std::string::npos);
  }
}

TEST(PluginRegistry, PluginPathEnvironmentVariableIsSearched) {
  setenv("DIFFLAB_PLUGIN_PATH", ("/nonexistent:" + DIFFLAB_TEST_BAD_PLUGIN_DIR).c_str(), 1);
  std::vector<fs::path> dirs = PluginRegistry::default_search_dirs();
  unsetenv("DIFFLAB_PLUGIN_PATH");
  ASSERT_EQ(dirs.size(), 3u);  // this build's plugin folder, then the two of the variable
  EXPECT_EQ(dirs[dirs.size() - 2], fs::path("/nonexistent"));
  EXPECT_EQ(dirs.back(), fs::path(DIFFLAB_TEST_BAD_PLUGIN_DIR));
}

TEST(PluginRegistry, CreatedComponentsWorkAcrossTheLibraryBoundary) {
  auto mae = difflab::test::make<Loss>(Family::loss, "mae");
  EXPECT_FLOAT_EQ((*mae)(torch::ones({3}), torch::zeros({3})).item<float>(), 1.0f);
  // Asking for the wrong interface is refused, not undefined behaviour.
  EXPECT_THROW(difflab::test::registry().create<Schedule>(Family::loss, "mae", {}, {}), Error);
}
