#include "kiln/text/jinja/parser.h"

#include <charconv>
#include <cstdlib>
#include <initializer_list>
#include <string_view>

#include "kiln/text/jinja/filters.h"
#include "kiln/text/jinja/template_error.h"
#include "kiln/text/jinja/tests.h"

namespace kiln::jinja {
namespace {

// Nesting deeper than this (parentheses, blocks) is refused so that parsing and rendering
// cannot exhaust the stack.
constexpr int kMaxDepth = 96;

class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : tokens_(tokens) {}

  Body ParseTemplate() {
    Body body = Subparse({});
    if (Cur().kind != TokenKind::kEnd) Fail("unexpected token");
    return body;
  }

 private:
  const Token& Cur() const { return tokens_[pos_]; }
  const Token& Peek(size_t n = 1) const {
    size_t i = pos_ + n;
    return i < tokens_.size() ? tokens_[i] : tokens_.back();
  }
  void Next() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }
  bool IsOp(std::string_view op) const {
    return Cur().kind == TokenKind::kOperator && Cur().text == op;
  }
  bool IsName(std::string_view name) const {
    return Cur().kind == TokenKind::kName && Cur().text == name;
  }
  bool SkipOp(std::string_view op) {
    if (!IsOp(op)) return false;
    Next();
    return true;
  }
  bool SkipName(std::string_view name) {
    if (!IsName(name)) return false;
    Next();
    return true;
  }

  static std::string Describe(const Token& t) {
    switch (t.kind) {
      case TokenKind::kText:
        return "template data";
      case TokenKind::kVariableBegin:
        return "begin of print statement";
      case TokenKind::kVariableEnd:
        return "end of print statement";
      case TokenKind::kBlockBegin:
        return "begin of statement block";
      case TokenKind::kBlockEnd:
        return "end of statement block";
      case TokenKind::kString:
        return "string";
      case TokenKind::kInteger:
        return "integer";
      case TokenKind::kFloat:
        return "float";
      case TokenKind::kEnd:
        return "end of template";
      default: {
        std::string quoted(1, '\'');
        quoted += t.text;
        quoted += '\'';
        return quoted;
      }
    }
  }

  [[noreturn]] void Fail(const std::string& message) const {
    throw TemplateError(message + " (got " + Describe(Cur()) + ")", Cur().line, Cur().column);
  }

  void ExpectOp(std::string_view op) {
    if (!SkipOp(op)) Fail("expected '" + std::string(op) + "'");
  }
  std::string ExpectName() {
    if (Cur().kind != TokenKind::kName) Fail("expected a name");
    std::string name = Cur().text;
    Next();
    return name;
  }
  void ExpectBlockEnd() {
    if (Cur().kind != TokenKind::kBlockEnd) Fail("expected end of statement block");
    Next();
  }

  ExprPtr NewExpr(ExprKind kind, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = at.line;
    e->column = at.column;
    return e;
  }
  StmtPtr NewStmt(StmtKind kind, const Token& at) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->line = at.line;
    s->column = at.column;
    return s;
  }

  struct DepthGuard {
    Parser* p;
    explicit DepthGuard(Parser* parser) : p(parser) {
      if (++p->depth_ > kMaxDepth) p->Fail("template nested too deeply");
    }
    ~DepthGuard() { --p->depth_; }
  };

  // Parses statements until a block tag named in `end_tags`; leaves Cur() on that name.
  Body Subparse(std::initializer_list<std::string_view> end_tags) {
    DepthGuard guard(this);
    Body body;
    while (true) {
      const Token& t = Cur();
      if (t.kind == TokenKind::kEnd) {
        if (end_tags.size() == 0) return body;
        std::string wanted;
        for (auto tag : end_tags)
          wanted += (wanted.empty() ? "'" : " or '") + std::string(tag) + "'";
        Fail("unexpected end of template, expected " + wanted);
      }
      if (t.kind == TokenKind::kText) {
        auto s = NewStmt(StmtKind::kText, t);
        s->text = t.text;
        body.push_back(std::move(s));
        Next();
      } else if (t.kind == TokenKind::kVariableBegin) {
        auto s = NewStmt(StmtKind::kOutput, t);
        Next();
        s->expr = ParseTuple(false, true, {});
        if (Cur().kind != TokenKind::kVariableEnd) Fail("expected end of print statement");
        Next();
        body.push_back(std::move(s));
      } else if (t.kind == TokenKind::kBlockBegin) {
        Next();
        if (Cur().kind == TokenKind::kName) {
          for (auto tag : end_tags)
            if (Cur().text == tag) return body;
        }
        body.push_back(ParseStatement());
      } else {
        Fail("unexpected token");
      }
    }
  }

  StmtPtr ParseStatement() {
    const Token& t = Cur();
    if (t.kind != TokenKind::kName) Fail("tag name expected");
    std::string tag = t.text;
    if (tag == "if") return ParseIf();
    if (tag == "for") return ParseFor();
    if (tag == "set") return ParseSet();
    if (tag == "macro") return ParseMacro();
    if (tag == "call") return ParseCallBlock();
    if (tag == "filter") return ParseFilterBlock();
    if (tag == "with") return ParseWith();
    if (tag == "generation") return ParseSimpleBlock(StmtKind::kScope, "endgeneration");
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) Fail("'" + tag + "' outside loop");
      auto s = NewStmt(tag == "break" ? StmtKind::kBreak : StmtKind::kContinue, t);
      Next();
      ExpectBlockEnd();
      return s;
    }
    Fail("Encountered unknown tag '" + tag + "'");
  }

  StmtPtr ParseSimpleBlock(StmtKind kind, std::string_view end) {
    auto s = NewStmt(kind, Cur());
    Next();
    ExpectBlockEnd();
    s->body = Subparse({end});
    Next();
    ExpectBlockEnd();
    return s;
  }

  StmtPtr ParseIf() {
    auto s = NewStmt(StmtKind::kIf, Cur());
    Next();
    while (true) {
      IfBranch branch;
      branch.condition = ParseTuple(false, false, {});
      ExpectBlockEnd();
      branch.body = Subparse({"elif", "else", "endif"});
      s->branches.push_back(std::move(branch));
      std::string tag = Cur().text;
      Next();
      if (tag == "elif") continue;
      if (tag == "else") {
        ExpectBlockEnd();
        s->else_body = Subparse({"endif"});
        s->has_else = true;
        Next();
      }
      ExpectBlockEnd();
      return s;
    }
  }

  // A name, or names separated by commas (optionally in parentheses), as an assignment target.
  std::vector<std::string> ParseTargets(std::string_view end_name) {
    std::vector<std::string> names;
    bool paren = SkipOp("(");
    while (true) {
      if (!names.empty() && !SkipOp(",")) break;
      if (Cur().kind != TokenKind::kName || (!end_name.empty() && IsName(end_name))) {
        if (!names.empty()) break;
        Fail("expected an assignment target");
      }
      names.push_back(ExpectName());
    }
    if (paren) ExpectOp(")");
    for (const auto& n : names) {
      if (n == "true" || n == "false" || n == "none" || n == "True" || n == "False" || n == "None")
        Fail("can't assign to constant '" + n + "'");
    }
    return names;
  }

  StmtPtr ParseFor() {
    auto s = NewStmt(StmtKind::kFor, Cur());
    Next();
    s->targets = ParseTargets("in");
    if (!SkipName("in")) Fail("expected 'in'");
    s->expr = ParseTuple(false, false, {"recursive"});
    if (SkipName("if")) s->filter = ParseExpression(true);
    if (IsName("recursive")) Fail("recursive loops are not supported");
    ExpectBlockEnd();
    ++loop_depth_;
    s->body = Subparse({"endfor", "else"});
    --loop_depth_;
    if (Cur().text == "else") {
      Next();
      ExpectBlockEnd();
      s->else_body = Subparse({"endfor"});
      s->has_else = true;
    }
    Next();
    ExpectBlockEnd();
    return s;
  }

  StmtPtr ParseSet() {
    auto s = NewStmt(StmtKind::kSet, Cur());
    Next();
    if (Cur().kind == TokenKind::kName && Peek().kind == TokenKind::kOperator &&
        Peek().text == ".") {
      s->targets.push_back(ExpectName());
      Next();
      s->attribute = ExpectName();
    } else {
      s->targets = ParseTargets("");
    }
    if (SkipOp("=")) {
      s->expr = ParseTuple(false, true, {});
      ExpectBlockEnd();
      return s;
    }
    if (!s->attribute.empty() || s->targets.size() != 1) Fail("expected '='");
    if (IsOp("|")) s->filter = ParseFilter(nullptr);
    ExpectBlockEnd();
    s->body = Subparse({"endset"});
    Next();
    ExpectBlockEnd();
    return s;
  }

  void ParseSignature(std::vector<MacroParam>& params) {
    ExpectOp("(");
    while (!IsOp(")")) {
      if (!params.empty()) ExpectOp(",");
      MacroParam p;
      p.name = ExpectName();
      if (SkipOp("=")) {
        p.fallback = ParseExpression(true);
      } else if (!params.empty() && params.back().fallback) {
        Fail("non-default argument follows default argument");
      }
      params.push_back(std::move(p));
    }
    Next();
  }

  StmtPtr ParseMacro() {
    auto s = NewStmt(StmtKind::kMacro, Cur());
    Next();
    s->text = ExpectName();
    ParseSignature(s->params);
    ExpectBlockEnd();
    int saved_loops = loop_depth_;
    loop_depth_ = 0;
    s->body = Subparse({"endmacro"});
    loop_depth_ = saved_loops;
    Next();
    ExpectBlockEnd();
    return s;
  }

  StmtPtr ParseCallBlock() {
    auto s = NewStmt(StmtKind::kCallBlock, Cur());
    Next();
    if (IsOp("(")) ParseSignature(s->params);
    s->expr = ParseExpression(true);
    if (s->expr->kind != ExprKind::kCall) Fail("expected call");
    ExpectBlockEnd();
    int saved_loops = loop_depth_;
    loop_depth_ = 0;
    s->body = Subparse({"endcall"});
    loop_depth_ = saved_loops;
    Next();
    ExpectBlockEnd();
    return s;
  }

  StmtPtr ParseFilterBlock() {
    auto s = NewStmt(StmtKind::kFilterBlock, Cur());
    Next();
    s->filter = ParseFilter(nullptr, true);
    ExpectBlockEnd();
    s->body = Subparse({"endfilter"});
    Next();
    ExpectBlockEnd();
    return s;
  }

  StmtPtr ParseWith() {
    auto s = NewStmt(StmtKind::kWith, Cur());
    Next();
    while (Cur().kind != TokenKind::kBlockEnd) {
      if (!s->assignments.empty()) ExpectOp(",");
      std::vector<std::string> names = ParseTargets("");
      ExpectOp("=");
      s->assignments.emplace_back(std::move(names), ParseExpression(true));
    }
    Next();
    s->body = Subparse({"endwith"});
    Next();
    ExpectBlockEnd();
    return s;
  }

  bool IsTupleEnd(std::initializer_list<std::string_view> extra_end) const {
    const Token& t = Cur();
    if (t.kind == TokenKind::kVariableEnd || t.kind == TokenKind::kBlockEnd ||
        t.kind == TokenKind::kEnd || (t.kind == TokenKind::kOperator && t.text == ")"))
      return true;
    for (auto name : extra_end)
      if (t.kind == TokenKind::kName && t.text == name) return true;
    return false;
  }

  ExprPtr ParseTuple(bool explicit_parentheses, bool with_condexpr,
                     std::initializer_list<std::string_view> extra_end) {
    const Token& start = Cur();
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) ExpectOp(",");
      if (IsTupleEnd(extra_end)) break;
      items.push_back(ParseExpression(with_condexpr));
      if (IsOp(","))
        is_tuple = true;
      else
        break;
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parentheses) Fail("expected an expression");
    }
    auto t = NewExpr(ExprKind::kTuple, start);
    t->children = std::move(items);
    return t;
  }

  ExprPtr ParseExpression(bool with_condexpr) {
    DepthGuard guard(this);
    return with_condexpr ? ParseCondExpr() : ParseOr();
  }

  ExprPtr ParseCondExpr() {
    ExprPtr expr = ParseOr();
    while (IsName("if")) {
      const Token& at = Cur();
      Next();
      auto c = NewExpr(ExprKind::kConditional, at);
      c->line = expr->line;
      c->column = expr->column;
      ExprPtr cond = ParseOr();
      ExprPtr otherwise = SkipName("else") ? ParseCondExpr() : nullptr;
      c->children.push_back(std::move(cond));
      c->children.push_back(std::move(expr));
      c->children.push_back(std::move(otherwise));
      expr = std::move(c);
    }
    return expr;
  }

  ExprPtr Binary(const Token& at, std::string op, ExprPtr left, ExprPtr right) {
    auto b = NewExpr(ExprKind::kBinary, at);
    b->name = std::move(op);
    b->children.push_back(std::move(left));
    b->children.push_back(std::move(right));
    return b;
  }

  ExprPtr ParseOr() {
    ExprPtr left = ParseAnd();
    while (IsName("or")) {
      const Token& at = Cur();
      Next();
      left = Binary(at, "or", std::move(left), ParseAnd());
    }
    return left;
  }

  ExprPtr ParseAnd() {
    ExprPtr left = ParseNot();
    while (IsName("and")) {
      const Token& at = Cur();
      Next();
      left = Binary(at, "and", std::move(left), ParseNot());
    }
    return left;
  }

  ExprPtr ParseNot() {
    if (IsName("not")) {
      DepthGuard guard(this);
      auto n = NewExpr(ExprKind::kUnary, Cur());
      Next();
      n->name = "not";
      n->children.push_back(ParseNot());
      return n;
    }
    return ParseCompare();
  }

  ExprPtr ParseCompare() {
    const Token& start = Cur();
    ExprPtr first = ParseMath1();
    std::unique_ptr<Expr> cmp;
    while (true) {
      std::string op;
      const Token& t = Cur();
      if (t.kind == TokenKind::kOperator && (t.text == "==" || t.text == "!=" || t.text == "<" ||
                                             t.text == ">" || t.text == "<=" || t.text == ">=")) {
        op = t.text;
        Next();
      } else if (IsName("in")) {
        op = "in";
        Next();
      } else if (IsName("not") && Peek().kind == TokenKind::kName && Peek().text == "in") {
        op = "not in";
        Next();
        Next();
      } else {
        break;
      }
      if (!cmp) {
        cmp = NewExpr(ExprKind::kCompare, start);
        cmp->children.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->children.push_back(ParseMath1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  ExprPtr ParseMath1() {
    ExprPtr left = ParseConcat();
    while (IsOp("+") || IsOp("-")) {
      const Token& at = Cur();
      std::string op = at.text;
      Next();
      left = Binary(at, op, std::move(left), ParseConcat());
    }
    return left;
  }

  ExprPtr ParseConcat() {
    ExprPtr left = ParseMath2();
    while (IsOp("~")) {
      const Token& at = Cur();
      Next();
      left = Binary(at, "~", std::move(left), ParseMath2());
    }
    return left;
  }

  ExprPtr ParseMath2() {
    ExprPtr left = ParsePow();
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      const Token& at = Cur();
      std::string op = at.text;
      Next();
      left = Binary(at, op, std::move(left), ParsePow());
    }
    return left;
  }

  ExprPtr ParsePow() {
    ExprPtr left = ParseUnary(true);
    while (IsOp("**")) {
      const Token& at = Cur();
      Next();
      left = Binary(at, "**", std::move(left), ParseUnary(true));
    }
    return left;
  }

  ExprPtr ParseUnary(bool with_filter) {
    DepthGuard guard(this);
    ExprPtr node;
    if (IsOp("-") || IsOp("+")) {
      node = NewExpr(ExprKind::kUnary, Cur());
      node->name = Cur().text;
      Next();
      node->children.push_back(ParseUnary(false));
    } else {
      node = ParsePrimary();
    }
    node = ParsePostfix(std::move(node));
    if (with_filter) node = ParseFilterExpr(std::move(node));
    return node;
  }

  ExprPtr ParsePrimary() {
    const Token& t = Cur();
    if (t.kind == TokenKind::kName) {
      auto e = NewExpr(ExprKind::kLiteral, t);
      if (t.text == "true" || t.text == "True")
        e->value = Value(true);
      else if (t.text == "false" || t.text == "False")
        e->value = Value(false);
      else if (t.text == "none" || t.text == "None")
        e->value = Value(None{});
      else {
        e->kind = ExprKind::kName;
        e->name = t.text;
      }
      Next();
      return e;
    }
    if (t.kind == TokenKind::kString) {
      auto e = NewExpr(ExprKind::kLiteral, t);
      std::string s;
      while (Cur().kind == TokenKind::kString) {
        s += Cur().text;
        Next();
      }
      e->value = Value(std::move(s));
      return e;
    }
    if (t.kind == TokenKind::kInteger) {
      auto e = NewExpr(ExprKind::kLiteral, t);
      int64_t v = 0;
      auto res = std::from_chars(t.text.data(), t.text.data() + t.text.size(), v);
      if (res.ec != std::errc()) Fail("integer literal too large");
      e->value = Value(v);
      Next();
      return e;
    }
    if (t.kind == TokenKind::kFloat) {
      auto e = NewExpr(ExprKind::kLiteral, t);
      e->value = Value(std::strtod(t.text.c_str(), nullptr));
      Next();
      return e;
    }
    if (IsOp("(")) {
      Next();
      ExprPtr e = ParseTuple(true, true, {});
      ExpectOp(")");
      return e;
    }
    if (IsOp("[")) {
      auto e = NewExpr(ExprKind::kList, t);
      Next();
      while (!IsOp("]")) {
        if (!e->children.empty()) ExpectOp(",");
        if (IsOp("]")) break;
        e->children.push_back(ParseExpression(true));
      }
      Next();
      return e;
    }
    if (IsOp("{")) {
      auto e = NewExpr(ExprKind::kDict, t);
      Next();
      while (!IsOp("}")) {
        if (!e->children.empty()) ExpectOp(",");
        if (IsOp("}")) break;
        e->children.push_back(ParseExpression(true));
        ExpectOp(":");
        e->children.push_back(ParseExpression(true));
      }
      Next();
      return e;
    }
    Fail("unexpected " + Describe(t));
  }

  ExprPtr ParsePostfix(ExprPtr node) {
    while (true) {
      if (IsOp(".") || IsOp("[")) {
        node = ParseSubscript(std::move(node));
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseFilterExpr(ExprPtr node) {
    while (true) {
      if (IsOp("|")) {
        node = ParseFilter(std::move(node));
      } else if (IsName("is")) {
        node = ParseTest(std::move(node));
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseSubscript(ExprPtr node) {
    const Token& at = Cur();
    if (SkipOp(".")) {
      const Token& attr = Cur();
      if (attr.kind == TokenKind::kName) {
        auto e = NewExpr(ExprKind::kGetAttr, at);
        e->name = attr.text;
        e->children.push_back(std::move(node));
        Next();
        return e;
      }
      if (attr.kind == TokenKind::kInteger) {
        auto e = NewExpr(ExprKind::kGetItem, at);
        auto key = NewExpr(ExprKind::kLiteral, attr);
        key->value = Value(static_cast<int64_t>(std::strtoll(attr.text.c_str(), nullptr, 10)));
        e->children.push_back(std::move(node));
        e->children.push_back(std::move(key));
        Next();
        return e;
      }
      Fail("expected name or number");
    }
    ExpectOp("[");
    std::vector<ExprPtr> args;
    while (!IsOp("]")) {
      if (!args.empty()) ExpectOp(",");
      args.push_back(ParseSubscribed());
    }
    Next();
    ExprPtr key;
    if (args.size() == 1) {
      key = std::move(args[0]);
    } else {
      // A slice only stands alone (x[a:b]); inside a tuple key its object slot would stay empty.
      for (const auto& a : args) {
        if (a->kind == ExprKind::kSlice) Fail("a slice cannot be part of a tuple subscript");
      }
      key = NewExpr(ExprKind::kTuple, at);
      key->children = std::move(args);
    }
    if (key->kind == ExprKind::kSlice) {
      key->children[0] = std::move(node);
      return key;
    }
    auto e = NewExpr(ExprKind::kGetItem, at);
    e->children.push_back(std::move(node));
    e->children.push_back(std::move(key));
    return e;
  }

  // An index, or a slice whose children[0] is left for the caller to fill with the object.
  ExprPtr ParseSubscribed() {
    const Token& at = Cur();
    std::vector<ExprPtr> parts;
    if (IsOp(":")) {
      Next();
      parts.push_back(nullptr);
    } else {
      ExprPtr e = ParseExpression(true);
      if (!IsOp(":")) return e;
      Next();
      parts.push_back(std::move(e));
    }
    if (IsOp(":"))
      parts.push_back(nullptr);
    else if (!IsOp("]") && !IsOp(","))
      parts.push_back(ParseExpression(true));
    else
      parts.push_back(nullptr);
    if (SkipOp(":")) {
      if (!IsOp("]") && !IsOp(","))
        parts.push_back(ParseExpression(true));
      else
        parts.push_back(nullptr);
    } else {
      parts.push_back(nullptr);
    }
    auto slice = NewExpr(ExprKind::kSlice, at);
    slice->children.push_back(nullptr);
    for (auto& p : parts) slice->children.push_back(std::move(p));
    return slice;
  }

  void ParseCallArgs(Expr& call) {
    ExpectOp("(");
    bool first = true;
    while (!IsOp(")")) {
      if (!first) ExpectOp(",");
      first = false;
      if (IsOp(")")) break;
      if (IsOp("*") || IsOp("**")) Fail("argument unpacking is not supported");
      if (Cur().kind == TokenKind::kName && Peek().kind == TokenKind::kOperator &&
          Peek().text == "=") {
        std::string key = Cur().text;
        Next();
        Next();
        call.keywords.emplace_back(std::move(key), ParseExpression(true));
      } else {
        if (!call.keywords.empty()) Fail("positional argument follows keyword argument");
        call.children.push_back(ParseExpression(true));
      }
    }
    Next();
  }

  ExprPtr ParseCall(ExprPtr node) {
    auto e = NewExpr(ExprKind::kCall, Cur());
    e->line = node->line;
    e->column = node->column;
    e->children.push_back(std::move(node));
    ParseCallArgs(*e);
    return e;
  }

  std::string ParseDottedName() {
    std::string name = ExpectName();
    while (IsOp(".")) {
      Next();
      name += "." + ExpectName();
    }
    return name;
  }

  ExprPtr ParseFilter(ExprPtr node, bool start_inline = false) {
    while (IsOp("|") || start_inline) {
      if (!start_inline) Next();
      start_inline = false;
      auto f = NewExpr(ExprKind::kFilter, Cur());
      f->name = ParseDottedName();
      f->children.push_back(std::move(node));
      if (IsOp("(")) ParseCallArgs(*f);
      node = std::move(f);
    }
    return node;
  }

  ExprPtr ParseTest(ExprPtr node) {
    auto t = NewExpr(ExprKind::kTest, Cur());
    Next();
    t->negated = SkipName("not");
    t->line = Cur().line;
    t->column = Cur().column;
    t->name = ParseDottedName();
    t->children.push_back(std::move(node));
    const Token& c = Cur();
    if (IsOp("(")) {
      ParseCallArgs(*t);
    } else if ((c.kind == TokenKind::kName || c.kind == TokenKind::kString ||
                c.kind == TokenKind::kInteger || c.kind == TokenKind::kFloat || IsOp("[") ||
                IsOp("{")) &&
               !IsName("else") && !IsName("or") && !IsName("and")) {
      if (IsName("is")) Fail("You cannot chain multiple tests with is");
      t->children.push_back(ParsePostfix(ParsePrimary()));
    }
    return t;
  }

  const std::vector<Token>& tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

// jinja2 rejects an unknown filter or test at compile time unless it is inside an `if` or a
// conditional expression (a "soft" frame); loops, macros and other blocks reset that.
void CheckNames(const Expr* e, bool soft) {
  if (!e) return;
  if (e->kind == ExprKind::kConditional) soft = true;
  if (!soft && e->kind == ExprKind::kFilter && !HasFilter(e->name))
    throw TemplateError("No filter named '" + e->name + "'.", e->line, e->column);
  if (!soft && e->kind == ExprKind::kTest && !HasTest(e->name))
    throw TemplateError("No test named '" + e->name + "'.", e->line, e->column);
  for (const auto& c : e->children) CheckNames(c.get(), soft);
  for (const auto& k : e->keywords) CheckNames(k.second.get(), soft);
}

void CheckNames(const Body& body, bool soft) {
  for (const auto& s : body) {
    bool inner_soft = soft;
    switch (s->kind) {
      case StmtKind::kIf:
        for (const auto& b : s->branches) {
          CheckNames(b.condition.get(), true);
          CheckNames(b.body, true);
        }
        CheckNames(s->else_body, true);
        continue;
      case StmtKind::kFor:
      case StmtKind::kMacro:
      case StmtKind::kCallBlock:
      case StmtKind::kFilterBlock:
      case StmtKind::kWith:
        inner_soft = false;
        break;
      default:
        break;
    }
    CheckNames(s->expr.get(), soft);
    CheckNames(s->filter.get(), s->kind == StmtKind::kFor ? inner_soft : soft);
    for (const auto& p : s->params) CheckNames(p.fallback.get(), soft);
    for (const auto& a : s->assignments) CheckNames(a.second.get(), soft);
    CheckNames(s->body, inner_soft);
    CheckNames(s->else_body, inner_soft);
  }
}

}  // namespace

Body Parse(const std::vector<Token>& tokens) {
  Body body = Parser(tokens).ParseTemplate();
  CheckNames(body, false);
  return body;
}

}  // namespace kiln::jinja
