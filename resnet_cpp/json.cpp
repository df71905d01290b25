#include "json.h"

namespace resx {

Json parse_json(const std::string& text, const std::string& source) {
  try {
    return Json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    const std::string what = e.what();
    throw Error(source + ": not valid JSON (" + what.substr(what.find(']') + 2) + ")");
  }
}

Json read_json(const std::string& path, const std::string& what) { return parse_json(read_file(path, what), path); }

const Json& object(const Json& j, const std::string& key, const std::string& source) {
  if (!j.is_object()) throw Error(source + ": not a JSON object");
  if (!j.contains(key)) throw Error(source + ": '" + key + "' missing");
  if (!j.at(key).is_object()) throw Error(source + ": '" + key + "' is not an object");
  return j.at(key);
}

}  // namespace resx
