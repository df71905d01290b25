#include "json.h"

#include <cmath>
#include <cstdlib>

#include "io.h"

namespace resx::json {
namespace {

class Parser {
 public:
  Parser(const std::string& text, const std::string& source) : s_(text), source_(source) {}

  Value document() {
    Value v = value();
    space();
    if (i_ != s_.size()) fail("trailing text");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(source_ + ": not valid JSON (" + what + " at offset " + std::to_string(i_) + ")");
  }
  void space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r')) ++i_;
  }
  bool take(const char* word) {
    const std::string w(word);
    if (s_.compare(i_, w.size(), w) != 0) return false;
    i_ += w.size();
    return true;
  }
  Value value() {
    if (++depth_ > 64) fail("nesting too deep");
    space();
    if (i_ >= s_.size()) fail("unexpected end");
    Value v;
    const char c = s_[i_];
    if (c == '{') {
      v.data = object();
    } else if (c == '[') {
      v.data = array();
    } else if (c == '"') {
      v.data = string();
    } else if (take("true")) {
      v.data = true;
    } else if (take("false")) {
      v.data = false;
    } else if (take("null")) {
      v.data = nullptr;
    } else if (take("NaN")) {
      v.data = std::nan("");
    } else if (take("Infinity")) {
      v.data = HUGE_VAL;
    } else if (take("-Infinity")) {
      v.data = -HUGE_VAL;
    } else {
      v.data = number();
    }
    --depth_;
    return v;
  }
  std::shared_ptr<Object> object() {
    auto out = std::make_shared<Object>();
    ++i_;
    space();
    if (i_ < s_.size() && s_[i_] == '}') return ++i_, out;
    while (true) {
      space();
      if (i_ >= s_.size() || s_[i_] != '"') fail("expected a key");
      std::string key = string();
      space();
      if (i_ >= s_.size() || s_[i_] != ':') fail("expected ':'");
      ++i_;
      (*out)[key] = value();
      space();
      if (i_ < s_.size() && s_[i_] == ',') {
        ++i_;
      } else if (i_ < s_.size() && s_[i_] == '}') {
        return ++i_, out;
      } else {
        fail("expected ',' or '}'");
      }
    }
  }
  std::shared_ptr<Array> array() {
    auto out = std::make_shared<Array>();
    ++i_;
    space();
    if (i_ < s_.size() && s_[i_] == ']') return ++i_, out;
    while (true) {
      out->push_back(value());
      space();
      if (i_ < s_.size() && s_[i_] == ',') {
        ++i_;
      } else if (i_ < s_.size() && s_[i_] == ']') {
        return ++i_, out;
      } else {
        fail("expected ',' or ']'");
      }
    }
  }
  std::string string() {
    std::string out;
    ++i_;
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unfinished escape");
      c = s_[i_++];
      switch (c) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'u': {
          if (i_ + 4 > s_.size()) fail("short \\u escape");
          const long code = std::strtol(s_.substr(i_, 4).c_str(), nullptr, 16);
          i_ += 4;
          if (code < 0x80) {
            out += static_cast<char>(code);
          } else if (code < 0x800) {
            out += static_cast<char>(0xC0 | (code >> 6));
            out += static_cast<char>(0x80 | (code & 0x3F));
          } else {  // surrogate pairs are kept as two 3-byte sequences: manifests hold none
            out += static_cast<char>(0xE0 | (code >> 12));
            out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (code & 0x3F));
          }
          break;
        }
        default:
          out += c;  // \" \\ \/
      }
    }
    if (i_ >= s_.size()) fail("unfinished string");
    ++i_;
    return out;
  }
  double number() {
    const char* begin = s_.c_str() + i_;
    char* end = nullptr;
    const double v = std::strtod(begin, &end);
    if (end == begin) fail("unexpected character");
    i_ += static_cast<size_t>(end - begin);
    return v;
  }

  const std::string& s_;
  const std::string& source_;
  size_t i_ = 0;
  int depth_ = 0;
};

}  // namespace

const Object& Value::object(const std::string& what) const {
  if (const auto* p = std::get_if<std::shared_ptr<Object>>(&data)) return **p;
  throw Error(what + " is not a JSON object");
}

const Array& Value::array(const std::string& what) const {
  if (const auto* p = std::get_if<std::shared_ptr<Array>>(&data)) return **p;
  throw Error(what + " is not a JSON array");
}

const std::string& Value::string(const std::string& what) const {
  if (const auto* p = std::get_if<std::string>(&data)) return *p;
  throw Error(what + " is not a string");
}

double Value::number(const std::string& what) const {
  if (const auto* p = std::get_if<double>(&data)) return *p;
  throw Error(what + " is not a number");
}

int64_t Value::integer(const std::string& what) const {
  const double v = number(what);
  if (v != std::floor(v) || std::abs(v) > 9.0e15) throw Error(what + " is not an integer");
  return static_cast<int64_t>(v);
}

const Value& Value::at(const std::string& key) const {
  const auto& obj = object("'" + key + "''s parent");
  const auto it = obj.find(key);
  if (it == obj.end()) throw Error("no '" + key + "'");
  return it->second;
}

Value parse(const std::string& text, const std::string& source) { return Parser(text, source).document(); }

}  // namespace resx::json
