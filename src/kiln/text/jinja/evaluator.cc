#include "kiln/text/jinja/evaluator.h"

#include "kiln/text/jinja/filters.h"
#include "kiln/text/jinja/limits.h"
#include "kiln/text/jinja/operations.h"
#include "kiln/text/jinja/template_error.h"
#include "kiln/text/jinja/tests.h"

namespace kiln::jinja {
namespace {

enum class Flow { kNormal, kBreak, kContinue };

class Evaluator {
 public:
  Evaluator(const ScopePtr& globals, RenderState& state) : globals_(globals), state_(state) {}

  Flow ExecBody(const Body& body, const ScopePtr& scope, std::string& out) {
    for (const auto& stmt : body) {
      Flow flow = Exec(*stmt, scope, out);
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

 private:
  static void Append(std::string& out, const std::string& text) {
    CheckStringSize(out.size() + text.size());
    out += text;
  }

  Flow Exec(const Stmt& s, const ScopePtr& scope, std::string& out) {
    try {
      return ExecUnlocated(s, scope, out);
    } catch (TemplateError& e) {
      e.Locate(s.line, s.column);
      throw;
    }
  }

  Flow ExecUnlocated(const Stmt& s, const ScopePtr& scope, std::string& out) {
    switch (s.kind) {
      case StmtKind::kText:
        Append(out, s.text);
        return Flow::kNormal;
      case StmtKind::kOutput:
        Append(out, Eval(*s.expr, scope).Str());
        return Flow::kNormal;
      case StmtKind::kIf:
        for (const auto& branch : s.branches) {
          if (Eval(*branch.condition, scope).Truthy()) return ExecBody(branch.body, scope, out);
        }
        return ExecBody(s.else_body, scope, out);
      case StmtKind::kFor:
        ExecFor(s, scope, out);
        return Flow::kNormal;
      case StmtKind::kSet:
        ExecSet(s, scope);
        return Flow::kNormal;
      case StmtKind::kMacro:
        scope->Set(s.text, MakeMacro(s, scope, nullptr));
        return Flow::kNormal;
      case StmtKind::kCallBlock: {
        Value caller = MakeMacro(s, scope, nullptr);
        const Expr& call = *s.expr;
        Value callee = Eval(*call.children[0], scope);
        CallArgs args = EvalArgs(call, scope, 1);
        args.keyword.emplace_back("caller", caller);
        Append(out, Call(callee, args).Str());
        return Flow::kNormal;
      }
      case StmtKind::kFilterBlock: {
        std::string body;
        ExecBody(s.body, std::make_shared<Scope>(scope), body);
        Append(out, ApplyFilterChain(*s.filter, Value(std::move(body)), scope).Str());
        return Flow::kNormal;
      }
      case StmtKind::kWith: {
        auto inner = std::make_shared<Scope>(scope);
        for (const auto& a : s.assignments) Assign(*inner, a.first, Eval(*a.second, scope));
        return ExecBody(s.body, inner, out);
      }
      case StmtKind::kScope:
        return ExecBody(s.body, scope, out);
      case StmtKind::kBreak:
        return Flow::kBreak;
      case StmtKind::kContinue:
        return Flow::kContinue;
    }
    return Flow::kNormal;
  }

  static void Assign(Scope& scope, const std::vector<std::string>& targets, const Value& value) {
    if (targets.size() == 1) {
      scope.Set(targets[0], value);
      return;
    }
    std::vector<Value> items = Iterate(value);
    if (items.size() != targets.size()) {
      throw TemplateError(
          items.size() < targets.size()
              ? "not enough values to unpack (expected " + std::to_string(targets.size()) +
                    ", got " + std::to_string(items.size()) + ")"
              : "too many values to unpack (expected " + std::to_string(targets.size()) + ")");
    }
    for (size_t i = 0; i < targets.size(); ++i) scope.Set(targets[i], items[i]);
  }

  void ExecSet(const Stmt& s, const ScopePtr& scope) {
    Value value;
    if (s.expr) {
      value = Eval(*s.expr, scope);
    } else {
      std::string body;
      ExecBody(s.body, std::make_shared<Scope>(scope), body);
      value = Value(std::move(body));
      if (s.filter) value = ApplyFilterChain(*s.filter, value, scope);
    }
    if (s.attribute.empty()) {
      Assign(*scope, s.targets, value);
      return;
    }
    const Value* target = scope->Find(s.targets[0]);
    if (!target || !target->is_namespace())
      throw TemplateError("Cannot assign attribute on non-namespace object");
    target->as_dict()->Set(Value(s.attribute), std::move(value));
  }

  void ExecFor(const Stmt& s, const ScopePtr& scope, std::string& out) {
    std::vector<Value> items = Iterate(Eval(*s.expr, scope));
    if (s.filter) {
      std::vector<Value> kept;
      for (const Value& item : items) {
        auto probe = std::make_shared<Scope>(scope);
        Assign(*probe, s.targets, item);
        if (Eval(*s.filter, probe).Truthy()) kept.push_back(item);
      }
      items = std::move(kept);
    }
    const int64_t n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      if (++state_.loop_iterations > kMaxLoopIterations)
        throw TemplateError("loop iteration limit exceeded");
      auto inner = std::make_shared<Scope>(scope);
      Value loop = Value::MakeDict();
      Dict& d = *loop.as_dict();
      d.Set(Value("index"), Value(i + 1));
      d.Set(Value("index0"), Value(i));
      d.Set(Value("revindex"), Value(n - i));
      d.Set(Value("revindex0"), Value(n - i - 1));
      d.Set(Value("first"), Value(i == 0));
      d.Set(Value("last"), Value(i == n - 1));
      d.Set(Value("length"), Value(n));
      d.Set(Value("depth"), Value(1));
      d.Set(Value("depth0"), Value(0));
      d.Set(Value("previtem"),
            i > 0 ? items[i - 1] : Value::MakeUndefined("there is no previous item"));
      d.Set(Value("nextitem"),
            i + 1 < n ? items[i + 1] : Value::MakeUndefined("there is no next item"));
      d.Set(Value("cycle"), Value::MakeFunction("cycle", [i](CallArgs& args) {
              if (args.positional.empty()) throw TemplateError("no items for cycling given");
              return args.positional[static_cast<size_t>(i) % args.positional.size()];
            }));
      inner->Set("loop", loop);
      Assign(*inner, s.targets, items[i]);
      Flow flow = ExecBody(s.body, inner, out);
      if (flow == Flow::kBreak) break;
    }
    if (n == 0 && s.has_else) ExecBody(s.else_body, scope, out);
  }

  // A callable that renders the body of a macro (or call block) in a fresh child scope of the
  // scope where it was defined.
  Value MakeMacro(const Stmt& s, const ScopePtr& scope, std::nullptr_t) {
    std::weak_ptr<Scope> defined_in = scope;
    const Stmt* stmt = &s;
    Evaluator* self = this;
    std::string name = s.kind == StmtKind::kMacro ? s.text : "caller";
    return Value::MakeFunction(name, [self, stmt, defined_in, name](CallArgs& args) {
      if (++self->state_.call_depth > kMaxCallDepth) {
        --self->state_.call_depth;
        throw TemplateError("maximum macro call depth exceeded");
      }
      struct DepthRelease {
        RenderState& st;
        ~DepthRelease() { --st.call_depth; }
      } release{self->state_};
      ScopePtr parent = defined_in.lock();
      if (!parent) parent = self->globals_;
      auto inner = std::make_shared<Scope>(parent);
      const auto& params = stmt->params;
      if (args.positional.size() > params.size()) {
        throw TemplateError("macro '" + name + "' takes not more than " +
                            std::to_string(params.size()) + " argument(s)");
      }
      for (const auto& kw : args.keyword) {
        bool known = kw.first == "caller";
        for (const auto& p : params) known = known || p.name == kw.first;
        if (!known)
          throw TemplateError("macro '" + name + "' takes no keyword argument '" + kw.first + "'");
      }
      for (size_t i = 0; i < params.size(); ++i) {
        Value v;
        if (i < args.positional.size()) {
          v = args.positional[i];
        } else if (const Value* kw = args.FindKeyword(params[i].name)) {
          v = *kw;
        } else if (params[i].fallback) {
          v = self->Eval(*params[i].fallback, inner);
        } else {
          v = Value::MakeUndefined("parameter '" + params[i].name + "' was not provided");
        }
        inner->Set(params[i].name, v);
      }
      if (const Value* caller = args.FindKeyword("caller")) inner->Set("caller", *caller);
      std::string out;
      self->ExecBody(stmt->body, inner, out);
      return Value(std::move(out));
    });
  }

  CallArgs EvalArgs(const Expr& e, const ScopePtr& scope, size_t first) {
    CallArgs args;
    for (size_t i = first; i < e.children.size(); ++i)
      args.positional.push_back(Eval(*e.children[i], scope));
    for (const auto& kw : e.keywords) args.keyword.emplace_back(kw.first, Eval(*kw.second, scope));
    return args;
  }

  Value ApplyFilterChain(const Expr& filter, const Value& input, const ScopePtr& scope) {
    Value inner = filter.children[0] ? ApplyFilterChain(*filter.children[0], input, scope) : input;
    CallArgs args = EvalArgs(filter, scope, 1);
    return ApplyFilter(filter.name, inner, args);
  }

  Value Eval(const Expr& e, const ScopePtr& scope) {
    try {
      return EvalUnlocated(e, scope);
    } catch (TemplateError& err) {
      err.Locate(e.line, e.column);
      throw;
    }
  }

  Value EvalUnlocated(const Expr& e, const ScopePtr& scope) {
    switch (e.kind) {
      case ExprKind::kLiteral:
        return e.value;
      case ExprKind::kName: {
        if (const Value* v = scope->Find(e.name)) return *v;
        return Value::MakeUndefined("'" + e.name + "' is undefined");
      }
      case ExprKind::kList:
      case ExprKind::kTuple: {
        std::vector<Value> items;
        for (const auto& c : e.children) items.push_back(Eval(*c, scope));
        return Value::MakeList(std::move(items), e.kind == ExprKind::kTuple);
      }
      case ExprKind::kDict: {
        Value d = Value::MakeDict();
        for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
          Value key = Eval(*e.children[i], scope);
          if (key.is_list() && !key.is_tuple()) throw TemplateError("unhashable type: 'list'");
          if (key.is_dict()) throw TemplateError("unhashable type: 'dict'");
          d.as_dict()->Set(key, Eval(*e.children[i + 1], scope));
        }
        return d;
      }
      case ExprKind::kGetAttr:
        return GetAttr(Eval(*e.children[0], scope), e.name);
      case ExprKind::kGetItem: {
        Value obj = Eval(*e.children[0], scope);
        return GetItem(obj, Eval(*e.children[1], scope));
      }
      case ExprKind::kSlice: {
        Value obj = Eval(*e.children[0], scope);
        auto part = [&](size_t i) {
          return e.children[i] ? Eval(*e.children[i], scope) : Value(None{});
        };
        Value a = part(1), b = part(2), c = part(3);
        return GetSlice(obj, a, b, c);
      }
      case ExprKind::kCall: {
        Value callee = Eval(*e.children[0], scope);
        CallArgs args = EvalArgs(e, scope, 1);
        return Call(callee, args);
      }
      case ExprKind::kFilter: {
        Value input = Eval(*e.children[0], scope);
        CallArgs args = EvalArgs(e, scope, 1);
        return ApplyFilter(e.name, input, args);
      }
      case ExprKind::kTest: {
        Value input = Eval(*e.children[0], scope);
        CallArgs args = EvalArgs(e, scope, 1);
        bool result = ApplyTest(e.name, input, args);
        return Value(e.negated ? !result : result);
      }
      case ExprKind::kUnary:
        return UnaryOp(e.name, Eval(*e.children[0], scope));
      case ExprKind::kBinary: {
        Value left = Eval(*e.children[0], scope);
        if (e.name == "and") return left.Truthy() ? Eval(*e.children[1], scope) : left;
        if (e.name == "or") return left.Truthy() ? left : Eval(*e.children[1], scope);
        return BinaryOp(e.name, left, Eval(*e.children[1], scope));
      }
      case ExprKind::kCompare: {
        Value left = Eval(*e.children[0], scope);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value right = Eval(*e.children[i + 1], scope);
          if (!Compare(e.ops[i], left, right)) return Value(false);
          left = std::move(right);
        }
        return Value(true);
      }
      case ExprKind::kConditional: {
        if (Eval(*e.children[0], scope).Truthy()) return Eval(*e.children[1], scope);
        if (e.children[2]) return Eval(*e.children[2], scope);
        return Value::MakeUndefined(
            "the inline if-expression evaluated to false and no else "
            "section was defined.");
      }
    }
    return Value();
  }

  ScopePtr globals_;
  RenderState& state_;
};

}  // namespace

std::string Evaluate(const Body& body, const ScopePtr& globals, RenderState& state) {
  Evaluator evaluator(globals, state);
  std::string out;
  auto top = std::make_shared<Scope>(globals);
  evaluator.ExecBody(body, top, out);
  return out;
}

}  // namespace kiln::jinja
