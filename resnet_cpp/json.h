// A small JSON reader for the manifests that resx.export writes (LibTorch ships no JSON library).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace resx::json {

struct Value;
using Object = std::map<std::string, Value>;
using Array = std::vector<Value>;

struct Value {
  std::variant<std::nullptr_t, bool, double, std::string, std::shared_ptr<Array>, std::shared_ptr<Object>> data;

  bool is_object() const { return std::holds_alternative<std::shared_ptr<Object>>(data); }
  bool is_true() const { return std::holds_alternative<bool>(data) && std::get<bool>(data); }
  // Accessors throw resx::Error naming `what` when the value is of another kind.
  const Object& object(const std::string& what) const;
  const Array& array(const std::string& what) const;
  const std::string& string(const std::string& what) const;
  double number(const std::string& what) const;
  int64_t integer(const std::string& what) const;
  // obj.at(key) with an error that names the key.
  const Value& at(const std::string& key) const;
};

// Parses a whole document; throws resx::Error with `source` and the offset of the first problem.
Value parse(const std::string& text, const std::string& source);

}  // namespace resx::json
