#include "results/filter.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fmt/format.h>
#include <vector>

#include "difflab/error.h"

namespace difflab {
namespace {

struct Value {
  bool is_number = false;
  double number = 0.0;
  std::string text;
};

struct Token {
  enum Kind { kName, kNumber, kText, kOp, kOpen, kClose, kComma, kInvalid, kEnd } kind = kEnd;
  std::string problem;  // kInvalid: what is wrong (reported when the parser gets there)
  std::string text;
  double number = 0.0;
  size_t column = 0;  // 1-based
};

bool name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'; }

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

class Parser {
 public:
  Parser(const std::string& text, const std::map<std::string, bool>& columns) : text_(text), columns_(columns) {
    tokenize();
  }

  std::shared_ptr<const Filter::Node> parse() {
    auto root = expression();
    if (peek().kind != Token::kEnd) fail(peek(), "expected \"and\", \"or\" or the end of the filter");
    return root;
  }

 private:
  [[noreturn]] void fail(const Token& at, const std::string& message, const std::string& hint = "") const {
    const std::string shown = at.kind == Token::kEnd ? "the end" : "\"" + at.text + "\"";
    throw ConfigError(fmt::format("{} at {}\n  {}\n  {}^", message, shown, text_, std::string(at.column - 1, ' ')),
                      {"--where", 1, static_cast<int64_t>(at.column), "", hint});
  }

  // Splits the text into tokens; the first one that is not valid ends the list (the parser
  // reports it when it gets there, so that the first problem from the left is the one shown).
  void tokenize() {
    size_t i = 0;
    auto invalid = [&](size_t at, const std::string& text, const std::string& problem) {
      Token token = token_at(at, text);
      token.kind = Token::kInvalid;
      token.problem = problem;
      tokens_.push_back(token);
      i = text_.size();
    };
    while (i < text_.size()) {
      const char c = text_[i];
      Token token;
      token.column = i + 1;
      if (std::isspace(static_cast<unsigned char>(c))) {
        ++i;
        continue;
      }
      if (c == '"' || c == '\'') {  // a quoted value, no escapes: it ends at the same quote
        const size_t close = text_.find(c, i + 1);
        if (close == std::string::npos) {
          invalid(i, std::string(1, c), "unterminated quoted value");
          break;
        }
        token.kind = Token::kText;
        token.text = text_.substr(i + 1, close - i - 1);
        i = close + 1;
      } else if (std::isdigit(static_cast<unsigned char>(c)) ||
                 ((c == '-' || c == '+' || c == '.') && i + 1 < text_.size() &&
                  (std::isdigit(static_cast<unsigned char>(text_[i + 1])) || text_[i + 1] == '.'))) {
        char* end = nullptr;
        token.number = std::strtod(text_.c_str() + i, &end);
        const size_t length = static_cast<size_t>(end - (text_.c_str() + i));
        if (length == 0 || (i + length < text_.size() && name_char(text_[i + length]))) {
          invalid(i, text_.substr(i, 1), "malformed number");
          break;
        }
        token.kind = Token::kNumber;
        token.text = text_.substr(i, length);
        i += length;
      } else if (name_char(c)) {
        size_t end = i;
        while (end < text_.size() && name_char(text_[end])) ++end;
        token.kind = Token::kName;
        token.text = text_.substr(i, end - i);
        i = end;
      } else if (c == '(' || c == ')' || c == ',') {
        token.kind = c == '(' ? Token::kOpen : c == ')' ? Token::kClose : Token::kComma;
        token.text = std::string(1, c);
        ++i;
      } else {
        static const char* operators[] = {"==", "!=", "<>", "<=", ">=", "=", "<", ">"};
        const char* found = nullptr;
        for (const char* op : operators)
          if (text_.compare(i, std::char_traits<char>::length(op), op) == 0) {
            found = op;
            break;
          }
        if (found == nullptr) {
          invalid(i, std::string(1, c), "unexpected character");
          break;
        }
        token.kind = Token::kOp;
        token.text = found;
        i += token.text.size();
      }
      tokens_.push_back(token);
    }
    Token end;
    end.column = text_.size() + 1;
    tokens_.push_back(end);
  }

  Token token_at(size_t i, const std::string& text) const {
    Token token;
    token.column = i + 1;
    token.text = text;
    return token;
  }

  const Token& peek() const {
    if (tokens_[position_].kind == Token::kInvalid) fail(tokens_[position_], tokens_[position_].problem);
    return tokens_[position_];
  }
  const Token& next() {
    peek();
    return tokens_[position_ == tokens_.size() - 1 ? position_ : position_++];
  }
  bool keyword(const char* word) const { return peek().kind == Token::kName && lower(peek().text) == word; }

  std::shared_ptr<const Filter::Node> chain(int kind, const char* word,
                                            std::shared_ptr<const Filter::Node> (Parser::*operand)());
  std::shared_ptr<const Filter::Node> expression();
  std::shared_ptr<const Filter::Node> term();
  std::shared_ptr<const Filter::Node> factor();
  std::shared_ptr<const Filter::Node> comparison();
  Value value(const std::string& column, bool numeric);

  std::string text_;
  const std::map<std::string, bool>& columns_;
  std::vector<Token> tokens_;
  size_t position_ = 0;
  int depth_ = 0;
  static constexpr int kMaxDepth = 200;
};

}  // namespace

struct Filter::Node {
  enum Kind { any, all, negation, compare, member, is_null } kind = compare;
  std::vector<std::shared_ptr<const Node>> children;
  std::string column;
  std::string op;
  std::vector<Value> values;
  bool numeric = false;
};

namespace {

// operand (word operand)*: one node of `kind` over the operands, or the single operand itself.
std::shared_ptr<const Filter::Node> Parser::chain(int kind, const char* word,
                                                  std::shared_ptr<const Filter::Node> (Parser::*operand)()) {
  auto node = std::make_shared<Filter::Node>();
  node->kind = static_cast<Filter::Node::Kind>(kind);
  node->children.push_back((this->*operand)());
  while (keyword(word)) {
    next();
    node->children.push_back((this->*operand)());
  }
  if (node->children.size() == 1) return node->children.front();
  return node;
}

std::shared_ptr<const Filter::Node> Parser::expression() { return chain(Filter::Node::any, "or", &Parser::term); }

std::shared_ptr<const Filter::Node> Parser::term() { return chain(Filter::Node::all, "and", &Parser::factor); }

std::shared_ptr<const Filter::Node> Parser::factor() {
  // Parentheses and `not`s nest by recursion: bounded, so that hostile text is an error, not a
  // stack overflow.
  struct Nesting {
    explicit Nesting(int& depth) : depth_(depth) { ++depth_; }
    ~Nesting() { --depth_; }
    int& depth_;
  } nesting(depth_);
  if (depth_ > kMaxDepth) fail(peek(), fmt::format("nested more than {} deep (parentheses and not)", kMaxDepth));
  if (keyword("not")) {
    next();
    auto node = std::make_shared<Filter::Node>();
    node->kind = Filter::Node::negation;
    node->children.push_back(factor());
    return node;
  }
  if (peek().kind == Token::kOpen) {
    next();
    auto inner = expression();
    if (peek().kind != Token::kClose) fail(peek(), "expected \")\"");
    next();
    return inner;
  }
  return comparison();
}

std::shared_ptr<const Filter::Node> Parser::comparison() {
  const Token& name = next();
  if (name.kind != Token::kName) fail(name, "expected a column name such as loss.plugin or best_kid");
  std::string column = name.text == "kid" ? "best_kid" : name.text;
  auto found = columns_.find(column);
  if (found == columns_.end()) {
    std::vector<std::string> names;
    for (const auto& entry : columns_) names.push_back(entry.first);
    const std::string nearest = nearest_name(column, names);
    fail(name, "unknown column",
         nearest.empty() ? fmt::format("columns: {}", fmt::join(names, ", ")) : "did you mean " + nearest + "?");
  }
  auto node = std::make_shared<Filter::Node>();
  node->column = column;
  node->numeric = found->second;
  if (keyword("is")) {
    next();
    node->kind = Filter::Node::is_null;
    if (keyword("not")) {
      next();
      node->op = "not";
    }
    if (!keyword("null")) fail(peek(), "expected \"null\" after \"is\"");
    next();
    return node;
  }
  if (keyword("in")) {
    next();
    node->kind = Filter::Node::member;
    if (peek().kind != Token::kOpen) fail(peek(), "expected \"(\" after \"in\"");
    next();
    node->values.push_back(value(column, node->numeric));
    while (peek().kind == Token::kComma) {
      next();
      node->values.push_back(value(column, node->numeric));
    }
    if (peek().kind != Token::kClose) fail(peek(), "expected \",\" or \")\"");
    next();
    return node;
  }
  if (peek().kind != Token::kOp) fail(peek(), "expected a comparison (= != < <= > >=, in, is null)");
  node->kind = Filter::Node::compare;
  node->op = next().text;
  if (node->op == "==") node->op = "=";
  if (node->op == "<>") node->op = "!=";
  node->values.push_back(value(column, node->numeric));
  return node;
}

Value Parser::value(const std::string& column, bool numeric) {
  const Token& token = next();
  Value result;
  if (token.kind == Token::kNumber) {
    if (!numeric) fail(token, fmt::format("{} holds text: quote the value", column), column + " = \"...\"");
    result.is_number = true;
    result.number = token.number;
  } else if (token.kind == Token::kText || (token.kind == Token::kName && (lower(token.text) == "true" ||
                                                                          lower(token.text) == "false"))) {
    if (numeric) fail(token, fmt::format("{} holds numbers: compare it with a number", column));
    result.text = token.kind == Token::kText ? token.text : lower(token.text);
  } else {
    fail(token, "expected a value: a number, a quoted text, true or false");
  }
  return result;
}

bool compare(const Cell& cell, const std::string& op, const Value& value) {
  if (!cell.text) return false;  // NULL: like SQL, no comparison holds
  int order = 0;
  if (value.is_number) {
    if (!cell.number) return false;
    order = *cell.number < value.number ? -1 : *cell.number > value.number ? 1 : 0;
  } else {
    order = cell.text->compare(value.text);
    order = order < 0 ? -1 : order > 0 ? 1 : 0;
  }
  if (op == "=") return order == 0;
  if (op == "!=") return order != 0;
  if (op == "<") return order < 0;
  if (op == "<=") return order <= 0;
  if (op == ">") return order > 0;
  return order >= 0;
}

bool evaluate(const Filter::Node& node, const Row& row) {
  switch (node.kind) {
    case Filter::Node::any:
      return std::any_of(node.children.begin(), node.children.end(),
                         [&](const auto& child) { return evaluate(*child, row); });
    case Filter::Node::all:
      return std::all_of(node.children.begin(), node.children.end(),
                         [&](const auto& child) { return evaluate(*child, row); });
    case Filter::Node::negation:
      return !evaluate(*node.children.front(), row);
    default:
      break;
  }
  static const Cell null_cell;
  auto found = row.find(node.column);
  const Cell& cell = found == row.end() ? null_cell : found->second;
  if (node.kind == Filter::Node::is_null) return cell.text.has_value() == (node.op == "not");
  if (node.kind == Filter::Node::member)
    return std::any_of(node.values.begin(), node.values.end(),
                       [&](const Value& value) { return compare(cell, "=", value); });
  return compare(cell, node.op, node.values.front());
}

}  // namespace

Filter Filter::parse(const std::string& text, const std::map<std::string, bool>& columns) {
  Filter filter;
  filter.root_ = Parser(text, columns).parse();
  return filter;
}

bool Filter::matches(const Row& row) const { return !root_ || evaluate(*root_, row); }

}  // namespace difflab
