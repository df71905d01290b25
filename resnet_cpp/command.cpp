#include "command.h"

#include <csignal>
#include <iostream>

#include "files.h"
#include "json.h"

namespace resx {

int run_command(const std::string& program, int argc, char** argv, const std::map<std::string, Subcommand>& commands,
                const std::function<int(std::ostream&, int)>& usage) {
  if (argc < 2) return usage(std::cerr, 2);
  std::signal(SIGXFSZ, SIG_IGN);  // a file-size limit fails the write (EFBIG, one line), as in Python
  const std::string command = argv[1];
  if (command == "--help" || command == "-h") return usage(std::cout, 0);
  const auto it = commands.find(command);
  if (it == commands.end()) {
    std::cerr << program << ": unknown command '" << command << "'\n";
    return usage(std::cerr, 2);
  }
  try {
    return it->second(argc - 2, argv + 2);
  } catch (const Error& e) {  // an input the user can fix: one line
    std::cerr << program << " " << command << ": " << e.what() << '\n';
    return 1;
  } catch (const std::exception& e) {  // a bug: say so
    const std::string what = e.what();
    std::cerr << program << " " << command << ": internal error: " << what.substr(0, what.find('\n'))
              << " (a bug in resx; please report it with the command you ran)\n";
    return 70;
  }
}

void print_report(const std::map<std::string, std::string>& report, bool json) {
  if (json) {
    std::cout << Json(report).dump() << '\n';
  } else {
    for (const auto& [key, value] : report) std::cout << key << ": " << value << '\n';
  }
}

}  // namespace resx
