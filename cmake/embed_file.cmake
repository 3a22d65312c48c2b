# Writes OUTPUT, a C++ file defining `const char NAME[]` (the bytes of INPUT, NUL-terminated) and
# `const size_t NAME_size`, so static files are built into the binary.
# cmake -DINPUT=... -DOUTPUT=... -DNAME=... -P embed_file.cmake
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," bytes "${hex}")
file(WRITE "${OUTPUT}.tmp"
     "// Generated from ${INPUT} by cmake/embed_file.cmake; do not edit.\n"
     "#include <cstddef>\n"
     "extern const char ${NAME}[];\n"
     "extern const std::size_t ${NAME}_size;\n"
     "const char ${NAME}[] = {${bytes} 0};\n"
     "const std::size_t ${NAME}_size = ${size};\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
