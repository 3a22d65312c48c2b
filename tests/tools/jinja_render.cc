// jinja_render: renders a Jinja template with a JSON context, for comparison against Python's
// jinja2. Usage: jinja_render TEMPLATE_FILE CONTEXT_JSON_FILE [--plain]
// Renders as transformers renders chat templates (trim_blocks, lstrip_blocks); --plain uses
// jinja2's defaults instead. The output goes to stdout byte for byte; errors go to stderr with
// exit status 1.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "kiln/text/jinja/template.h"

namespace {

bool ReadFile(const char* path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: jinja_render TEMPLATE_FILE CONTEXT_JSON_FILE [--plain]\n";
    return 2;
  }
  bool plain = argc > 3 && std::string(argv[3]) == "--plain";
  std::string source, context_text;
  if (!ReadFile(argv[1], source) || !ReadFile(argv[2], context_text)) {
    std::cerr << "cannot read input files\n";
    return 2;
  }
  nlohmann::ordered_json context = nlohmann::ordered_json::parse(context_text, nullptr, false);
  if (context.is_discarded()) {
    std::cerr << "context is not valid JSON\n";
    return 2;
  }
  kiln::jinja::TemplateOptions options;
  options.trim_blocks = !plain;
  options.lstrip_blocks = !plain;
  auto tmpl = kiln::jinja::Template::Parse(source, options);
  if (!tmpl.ok()) {
    std::cerr << tmpl.status().ToString() << "\n";
    return 1;
  }
  auto out = tmpl->Render(context);
  if (!out.ok()) {
    std::cerr << out.status().ToString() << "\n";
    return 1;
  }
  std::fwrite(out->data(), 1, out->size(), stdout);
  return 0;
}
