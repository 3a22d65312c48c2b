// The syntax tree of a parsed template: expressions (Expr) and statements (Stmt), each with the
// line and column where it starts so runtime errors can name them.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kiln/text/jinja/value.h"

namespace kiln::jinja {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

enum class ExprKind {
  kLiteral,      // value
  kName,         // name
  kList,         // children
  kTuple,        // children
  kDict,         // children: key, value, key, value, ...
  kGetAttr,      // children[0] . name
  kGetItem,      // children[0] [ children[1] ]
  kSlice,        // children[0] [ children[1] : children[2] : children[3] ] (null parts allowed)
  kCall,         // children[0] ( children[1..], keywords )
  kFilter,       // children[0] | name ( children[1..], keywords ); children[0] null in blocks
  kTest,         // children[0] is [not] name ( children[1..], keywords )
  kUnary,        // name ("-", "+", "not") children[0]
  kBinary,       // children[0] name children[1]: + - * / // % ** ~ and or
  kCompare,      // children[0] ops[0] children[1] ops[1] children[2] ...
  kConditional,  // children[1] if children[0] else children[2] (null: undefined)
};

struct Expr {
  ExprKind kind;
  int line = 0;
  int column = 0;
  Value value;
  std::string name;
  bool negated = false;
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> keywords;
  std::vector<std::string> ops;
};

struct MacroParam {
  std::string name;
  ExprPtr fallback;  // null: no default
};

enum class StmtKind {
  kText,         // text
  kOutput,       // {{ expr }}
  kIf,           // branches, else_body
  kFor,          // for targets in expr [if filter] body [else else_body]
  kSet,          // set targets = expr; or set name.attr = expr; or block set (body, filter)
  kMacro,        // name, params, body
  kCallBlock,    // call(params) expr: body becomes caller()
  kFilterBlock,  // filter: body passed through filter (a kFilter chain on a null input)
  kWith,         // with assignments: body
  kBreak,
  kContinue,
  kScope,  // body rendered as is ({% generation %})
};

struct IfBranch {
  ExprPtr condition;
  Body body;
};

struct Stmt {
  StmtKind kind;
  int line = 0;
  int column = 0;
  std::string text;                  // kText text; kMacro name
  ExprPtr expr;                      // output, for iterable, set value, call-block call
  ExprPtr filter;                    // for's `if`; filter chain of set blocks / filter blocks
  std::vector<std::string> targets;  // for/set names (more than one: unpacking)
  std::string attribute;             // set targets[0].attribute = expr
  std::vector<IfBranch> branches;
  Body body;
  Body else_body;
  bool has_else = false;
  std::vector<MacroParam> params;
  std::vector<std::pair<std::vector<std::string>, ExprPtr>> assignments;  // with
};

}  // namespace kiln::jinja
