// Small file helpers shared by the C++ runtime: atomic writes, JSON text, the key = value config.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace resx {

// Write to PATH.tmp-XXXX in the same directory, then rename: readers never see a partial file.
void atomic_write(const std::string& path, const std::string& bytes);

std::string json_quote(const std::string& s);

// "%.17g": the shortest text that gives back the same double (Python writes the same digits).
std::string format_double(double value);

// `key = value` lines, '#' comments: the config that resx.recipe writes (resx-config/1).
std::map<std::string, std::string> read_key_values(const std::string& path);

std::vector<double> parse_doubles(const std::string& text, const std::string& what);

}  // namespace resx
