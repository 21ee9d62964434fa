# Installs warden from BUILD_DIR into a private prefix, then configures,
# builds and runs the consumer project against it.
set(prefix ${BUILD_DIR}/consumer-install)
set(work ${BUILD_DIR}/consumer-build)
file(REMOVE_RECURSE ${prefix} ${work})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix} RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "cmake --install failed: ${rc}")
endif()
execute_process(COMMAND ${CTEST} --build-and-test ${SOURCE_DIR} ${work}
  --build-generator Ninja
  --build-options -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CXX}
  --test-command ${CTEST} --output-on-failure
  RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "the consumer project did not build or pass: ${rc}")
endif()
