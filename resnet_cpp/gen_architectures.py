"""Writes architectures.h from resx.models.ARCHITECTURES (resnet_py/resx/models.py), so that the C++ runtime
checks model names against the same table without retyping it. Reads the literal with `ast`: the build
cannot import resx (nor needs torch for this)."""

import ast
import sys


def table(source: str) -> list[tuple[str, str, list[int]]]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "ARCHITECTURES":
            return [
                (k.value, v.elts[0].id, [e.value for e in v.elts[1].elts])
                for k, v in zip(node.value.keys, node.value.values, strict=True)
            ]
    raise SystemExit("ARCHITECTURES not found in models.py")


def main() -> None:
    with open(sys.argv[1]) as f:
        rows = table(f.read())
    print("// Generated from resnet_py/resx/models.py by gen_architectures.py at build time: do not edit.")
    print("#pragma once\n\n#include <array>\n#include <cstdint>\n\nnamespace resx {\n")
    print("struct Architecture {\n  const char* name;\n  const char* block;\n  std::array<int64_t, 4> layers;\n};\n")
    print(f"inline constexpr std::array<Architecture, {len(rows)}> kArchitectures{{{{")
    for name, block, layers in rows:
        print(f'    {{"{name}", "{block}", {{{", ".join(map(str, layers))}}}}},')
    print("}};\n\n}  // namespace resx")


if __name__ == "__main__":
    main()
