// The documentation against the tool: every relative link of README.md and docs/*.md resolves
// (the file, and the heading an anchor names), and every `difflab ...` command shown in a fenced
// block names a command that exists, with options that command takes (read off `difflab help`).
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "test_support.h"

namespace fs = std::filesystem;
using difflab::test::Outcome;

namespace {

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<fs::path> pages() {
  const fs::path root = difflab::test::source_dir();
  std::vector<fs::path> all = {root / "README.md"};
  for (const auto& entry : fs::directory_iterator(root / "docs"))
    if (entry.path().extension() == ".md") all.push_back(entry.path());
  std::sort(all.begin() + 1, all.end());
  return all;
}

struct Line {
  std::string text;
  int number = 0;
  bool fenced = false;
  std::string fence;  // the fence's info string ("sh", "toml", "")
};

std::vector<Line> lines_of(const fs::path& page) {
  std::vector<Line> lines;
  std::istringstream text(read_text(page));
  bool fenced = false;
  std::string fence;
  int number = 0;
  for (std::string line; std::getline(text, line);) {
    ++number;
    if (line.rfind("```", 0) == 0) {
      fenced = !fenced;
      fence = fenced ? line.substr(3) : "";
      continue;
    }
    lines.push_back({line, number, fenced, fence});
  }
  return lines;
}

// GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens.
std::string anchor_of(const std::string& heading) {
  std::string anchor;
  for (unsigned char c : heading) {
    if (std::isalnum(c) || c == '-' || c == '_') anchor += static_cast<char>(std::tolower(c));
    else if (c == ' ') anchor += '-';
    else if (c >= 0x80) anchor += static_cast<char>(c);  // letters beyond ASCII stay
  }
  return anchor;
}

std::set<std::string> anchors(const fs::path& page) {
  std::set<std::string> found;
  for (const Line& line : lines_of(page)) {
    if (line.fenced || line.text.empty() || line.text[0] != '#') continue;
    const size_t start = line.text.find_first_not_of('#');
    if (start == std::string::npos || line.text[start] != ' ') continue;
    found.insert(anchor_of(line.text.substr(start + 1)));
  }
  return found;
}

}  // namespace

TEST(Docs, EveryRelativeLinkResolvesToAFileAndAHeading) {
  const std::regex link("\\[[^\\]]*\\]\\(([^)\\s]+)\\)");
  int checked = 0;
  for (const fs::path& page : pages()) {
    for (const Line& line : lines_of(page)) {
      if (line.fenced) continue;
      for (auto it = std::sregex_iterator(line.text.begin(), line.text.end(), link); it != std::sregex_iterator(); ++it) {
        const std::string target = (*it)[1].str();
        if (target.find("://") != std::string::npos || target.rfind("mailto:", 0) == 0) continue;
        const size_t hash = target.find('#');
        const std::string file = target.substr(0, hash), anchor = hash == std::string::npos ? "" : target.substr(hash + 1);
        const fs::path resolved = file.empty() ? page : page.parent_path() / file;
        const std::string where = page.filename().string() + ":" + std::to_string(line.number) + ": " + target;
        ++checked;
        if (!fs::exists(resolved)) {
          ADD_FAILURE() << where << ": no such file " << resolved;
          continue;
        }
        if (!anchor.empty()) {
          const std::set<std::string> headings = anchors(resolved);
          EXPECT_TRUE(headings.count(anchor)) << where << ": no heading with that anchor in " << resolved.filename();
        }
      }
    }
  }
  EXPECT_GT(checked, 20);  // the README links every page
}

TEST(Docs, EveryDifflabCommandShownExistsWithItsOptions) {
  // The commands, from difflab --help: "  NAME ARGUMENTS   summary".
  const Outcome usage = difflab::test::difflab_command("--help");
  ASSERT_EQ(usage.exit_code, 0) << usage.output;
  std::set<std::string> commands;
  const std::regex entry("^  ([a-z][a-z0-9-]*(?: [a-z][a-z0-9-]*)?)(?: [A-Z\\[]|\\s*$|  )");
  std::istringstream listing(usage.output);
  for (std::string line; std::getline(listing, line);) {
    std::smatch match;
    if (std::regex_search(line, match, entry)) commands.insert(match[1].str());
  }
  ASSERT_TRUE(commands.count("run") && commands.count("sweep status") && commands.count("results merge"))
      << usage.output;
  std::map<std::string, std::string> help;  // command -> its `difflab help` text
  auto options_of = [&](const std::string& command) -> const std::string& {
    if (!help.count(command)) help[command] = difflab::test::difflab_command("help " + command).output;
    return help[command];
  };

  // A shell line of a fenced block that runs difflab: at its start, after "$ ", or after && ; |.
  const std::regex invocation("(?:^|&&|;|\\|)\\s*(?:\\$ )?(?:build/bin/|\\./)?difflab((?: [a-z][a-z0-9-]*){0,2})");
  const std::regex option("(?:^|\\s)(--[a-z][a-z0-9-]*)");
  int checked = 0;
  for (const fs::path& page : pages()) {
    const std::vector<Line> lines = lines_of(page);
    for (size_t i = 0; i < lines.size(); ++i) {
      if (!lines[i].fenced || lines[i].fence == "toml" || lines[i].fence == "cpp" || lines[i].fence == "cmake") continue;
      std::string text = lines[i].text;
      const int number = lines[i].number;
      while (!text.empty() && text.back() == '\\' && i + 1 < lines.size()) text.pop_back(), text += lines[++i].text;
      std::smatch match;
      std::string rest = text;
      while (std::regex_search(rest, match, invocation)) {
        std::istringstream words(match[1].str());
        std::string first, second;
        words >> first >> second;
        const std::string where = page.filename().string() + ":" + std::to_string(number) + ": " + text;
        std::string command = commands.count(first + " " + second) ? first + " " + second : first;
        std::string after = match.suffix().str();
        rest = after;
        if (command.empty()) continue;  // "difflab" alone, in prose
        ++checked;
        if (!commands.count(command)) {
          ADD_FAILURE() << where << ": no command \"" << command << "\"";
          continue;
        }
        // Its options: up to a comment or the next command of the line.
        after = after.substr(0, std::min({after.find(" #"), after.find("&&"), after.find(" | "), after.find(';')}));
        for (auto it = std::sregex_iterator(after.begin(), after.end(), option); it != std::sregex_iterator(); ++it) {
          const std::string name = (*it)[1].str();
          if (name == "--help") continue;
          const std::regex whole(name + "(?![a-z0-9-])");
          EXPECT_TRUE(std::regex_search(options_of(command), whole))
              << where << ": difflab " << command << " has no option " << name;
        }
      }
    }
  }
  EXPECT_GT(checked, 30);
}
