// The command line of resx's executables (resx-cpp, resx-executorch), no torch: one subcommand per word,
// a resx::Error as one line and exit 1, any other exception as a bug (exit 70), usage on a wrong word.
#pragma once

#include <functional>
#include <iosfwd>
#include <map>
#include <string>

namespace resx {

using Subcommand = std::function<int(int argc, char** argv)>;

// Runs argv[1]'s subcommand with the arguments after it; `usage` prints the usage and returns its code.
int run_command(const std::string& program, int argc, char** argv, const std::map<std::string, Subcommand>& commands,
                const std::function<int(std::ostream&, int)>& usage);

// A report of keys and values: one "key: value" line each, or one JSON object.
void print_report(const std::map<std::string, std::string>& report, bool json);

}  // namespace resx
