// JSON, the one format between the languages, through nlohmann-json: keys keep their order (the files
// read as Python writes them), and a malformed document or a missing or mistyped key is a resx::Error
// naming the source and the key.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <type_traits>

#include "files.h"

namespace resx {

using Json = nlohmann::ordered_json;

Json parse_json(const std::string& text, const std::string& source);
Json read_json(const std::string& path, const std::string& what);

template <typename T>
struct is_optional : std::false_type {};
template <typename T>
struct is_optional<std::optional<T>> : std::true_type {};

// j[key] as T (std::optional<T>: null is nullopt); resx::Error "SOURCE: 'key' missing" or "SOURCE: 'key' is a string,
// not a number".
template <typename T>
T get(const Json& j, const std::string& key, const std::string& source) {
  if (!j.is_object()) throw Error(source + ": not a JSON object");
  if (!j.contains(key)) throw Error(source + ": '" + key + "' missing");
  try {
    if constexpr (is_optional<T>::value) {
      // nlohmann-json reads std::optional only without implicit conversions (3.12), so null is read here.
      const auto& v = j.at(key);
      return v.is_null() ? T() : T(v.template get<typename T::value_type>());
    } else {
      return j.at(key).get<T>();
    }
  } catch (const nlohmann::json::exception& e) {
    const std::string what = e.what();
    throw Error(source + ": '" + key + "' is of the wrong type (" + what.substr(what.find(']') + 2) + ")");
  }
}

// j[key] as an object (the key named in the error).
const Json& object(const Json& j, const std::string& key, const std::string& source);

}  // namespace resx
