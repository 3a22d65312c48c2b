// Operations on values with the semantics jinja2 gives them in an immutable sandbox: attribute
// and item lookup (falling back to each other, missing ones become Undefined), iteration,
// len(), Python arithmetic and comparison, `in`, and calling.
// Every function throws TemplateError (without a location) on a Python TypeError and the like.
#pragma once

#include <string_view>
#include <vector>

#include "kiln/text/jinja/value.h"

namespace kiln::jinja {

// obj.name: a method or attribute first, then obj["name"].
Value GetAttr(const Value& obj, std::string_view name);
// obj[key]: the item first, then (for a str key) the attribute.
Value GetItem(const Value& obj, const Value& key);
// obj[start:stop:step] on a str, list or tuple; undefined parts are None.
Value GetSlice(const Value& obj, const Value& start, const Value& stop, const Value& step);
// Items of a list, keys of a dict, characters of a str; Undefined is empty.
std::vector<Value> Iterate(const Value& v);
int64_t Length(const Value& v);
// + - * / // % ** and ~.
Value BinaryOp(std::string_view op, const Value& a, const Value& b);
Value UnaryOp(std::string_view op, const Value& v);
bool Contains(const Value& container, const Value& item);
// ==, !=, <, >, <=, >=, in, not in.
bool Compare(std::string_view op, const Value& a, const Value& b);
Value Call(const Value& callee, CallArgs& args);
// HTML-escapes str(v) into Markup, as markupsafe.escape does; Markup passes unchanged.
Value EscapeToMarkup(const Value& v);
// Fails when `s` would exceed the string limit.
void CheckStringSize(size_t size);
// The exception jinja2 raises when an Undefined is used as an object.
[[noreturn]] void FailUndefined(const Value& undefined);

}  // namespace kiln::jinja
