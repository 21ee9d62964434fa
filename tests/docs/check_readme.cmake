# Fails when the quick start in README.md differs from examples/quickstart.cpp.
file(READ ${README} readme)
file(READ ${EXAMPLE} example)
string(FIND "${readme}" "```cpp\n${example}```" at)
if(at EQUAL -1)
  message(FATAL_ERROR "README.md's quick start is not a verbatim copy of examples/quickstart.cpp: "
                      "update the README block")
endif()
