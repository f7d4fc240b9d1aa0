#include "training/run_ledger.h"

#include <algorithm>
#include <cstdlib>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sstream>

#include "difflab/error.h"

namespace difflab {
namespace {

std::vector<std::string> fields_of(const std::string& line) {
  std::vector<std::string> fields;
  size_t start = 0;
  while (true) {
    const size_t tab = line.find('\t', start);
    fields.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
    if (tab == std::string::npos) return fields;
    start = tab + 1;
  }
}

struct Reader {
  const std::vector<std::string>& fields;
  const std::string& where;
  size_t line;
  const std::string& at(size_t i) const {
    if (i >= fields.size())
      throw RuntimeError(fmt::format("the run's ledger is damaged: line {} has {} fields", line, fields.size()),
                         ErrorContext::in_file(where));
    return fields[i];
  }
  double number(size_t i) const {
    const std::string& text = at(i);
    char* end = nullptr;
    const double value = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0')
      throw RuntimeError(fmt::format("the run's ledger is damaged: line {} field {} is '{}'", line, i + 1, text),
                         ErrorContext::in_file(where));
    return value;
  }
  int64_t integer(size_t i) const { return static_cast<int64_t>(number(i)); }
};

}  // namespace

const EpochRows* RunLedger::find(int64_t epoch) const {
  auto at = std::find_if(epochs.begin(), epochs.end(), [epoch](const EpochRows& rows) { return rows.epoch == epoch; });
  return at == epochs.end() ? nullptr : &*at;
}

std::string write_ledger(const RunLedger& ledger) {
  std::string text;
  for (const EpochRows& rows : ledger.epochs) {
    text += fmt::format("epoch\t{}\t{}\n", rows.epoch, rows.step);
    for (const auto& [key, value] : rows.metrics) text += fmt::format("metric\t{}\t{}\n", key, value);
    for (const ArtifactRecord& artifact : rows.artifacts)
      text += fmt::format("artifact\t{}\t{}\t{}\n", artifact.kind, artifact.epoch, artifact.path);
    if (const auto& kid = rows.kid)
      text += fmt::format("kid\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n", kid->mean, kid->std, kid->protocol,
                          kid->features, kid->sampler, kid->diffusion_steps, kid->real_count, kid->generated_count,
                          kid->nfe);
    for (const SampleMetricRecord& m : rows.samples)
      text += fmt::format("sample\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n", m.metric, m.value, m.features, m.sampler,
                          m.diffusion_steps, m.nfe, m.real_count, m.generated_count, m.k);
  }
  for (const DecisionRecord& d : ledger.decisions)
    text += fmt::format("decision\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n", d.rung, d.epoch, d.method,
                        d.bracket, d.metric, d.value, d.cutoff, d.rank, d.of, d.prune ? 1 : 0, d.decided_at,
                        fmt::join(d.peers, ","));
  return text;
}

RunLedger read_ledger(const std::string& text, const std::string& where) {
  RunLedger ledger;
  std::istringstream lines(text);
  std::string line;
  size_t number = 0;
  while (std::getline(lines, line)) {
    ++number;
    if (line.empty()) continue;
    const std::vector<std::string> fields = fields_of(line);
    const Reader read{fields, where, number};
    const std::string& kind = fields[0];
    if (kind == "epoch") {
      ledger.epochs.push_back({read.integer(1), read.integer(2), {}, {}, std::nullopt, {}});
      continue;
    }
    if (kind == "decision") {
      DecisionRecord d;
      d.rung = read.integer(1);
      d.epoch = read.integer(2);
      d.method = read.at(3);
      d.bracket = read.integer(4);
      d.metric = read.at(5);
      d.value = read.number(6);
      d.cutoff = read.number(7);
      d.rank = read.integer(8);
      d.of = read.integer(9);
      d.prune = read.integer(10) != 0;
      d.decided_at = read.at(11);
      std::istringstream peers(read.at(12));
      for (std::string peer; std::getline(peers, peer, ',');) d.peers.push_back(peer);
      ledger.decisions.push_back(std::move(d));
      continue;
    }
    if (ledger.epochs.empty())
      throw RuntimeError(fmt::format("the run's ledger is damaged: line {} ('{}') comes before any epoch", number, kind),
                         ErrorContext::in_file(where));
    EpochRows& rows = ledger.epochs.back();
    if (kind == "metric") {
      rows.metrics.emplace_back(read.at(1), read.number(2));
    } else if (kind == "artifact") {
      rows.artifacts.push_back({read.at(1), read.at(3), read.integer(2)});
    } else if (kind == "kid") {
      rows.kid = KidRecord{read.number(1), read.number(2), read.at(3), read.at(4), read.at(5),
                           read.integer(6), read.integer(7), read.integer(8), read.integer(9)};
    } else if (kind == "sample") {
      rows.samples.push_back({read.at(1), read.number(2), read.at(3), read.at(4), read.integer(5), read.integer(6),
                              read.integer(7), read.integer(8), read.integer(9), "epoch"});
    } else {
      throw RuntimeError(fmt::format("the run's ledger is damaged: line {} is a '{}' record", number, kind),
                         ErrorContext::in_file(where));
    }
  }
  return ledger;
}

}  // namespace difflab
