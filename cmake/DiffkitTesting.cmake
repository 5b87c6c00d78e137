# Helpers that register ctest tests in one consistent way.
#
#   dk_add_test(NAME SOURCES... LIBS ... [LABELS ...] [TIMEOUT s] [ARGS ...])
#       builds tests/<...>/NAME from SOURCES and registers it; the working directory is the build dir and
#       DIFFKIT_SOURCE_DIR / DIFFKIT_FIXTURES are passed in the environment.
#   dk_add_cli_test(NAME EXIT code [MATCH regex] [NOMATCH regex] [STDIN file] COMMAND cmd args...)
#       runs a command through tests/cli/expect.sh and checks its exit code and combined output.
#   dk_add_mpi_test(NAME RANKS n COMMAND exe args...)   (full builds only)
#       mpiexec -n n --oversubscribe with the root variables, PROCESSORS n and a TIMEOUT.
# Open MPI refuses to run as root (CI runs as root) unless both variables are set; tests only, never jobs.
set(DK_TEST_ENV "DIFFKIT_SOURCE_DIR=${CMAKE_SOURCE_DIR}" "DIFFKIT_FIXTURES=${CMAKE_SOURCE_DIR}/tests/fixtures"
                "DIFFKIT_CONFIG_DIR=${CMAKE_SOURCE_DIR}/configs"
                "OMPI_ALLOW_RUN_AS_ROOT=1" "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")

function(dk_add_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME ${name} COMMAND ${name} ${T_ARGS} WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  if(NOT T_LABELS)
    set(T_LABELS unit)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}" ENVIRONMENT "${DK_TEST_ENV}")
endfunction()

function(dk_add_cli_test name)
  cmake_parse_arguments(T "" "EXIT;MATCH;NOMATCH;STDIN;TIMEOUT" "COMMAND;LABELS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 60)
  endif()
  if(NOT T_LABELS)
    set(T_LABELS cli)
  endif()
  add_test(NAME ${name}
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/cli/expect.sh "${T_EXIT}" "${T_MATCH}" "${T_NOMATCH}" "${T_STDIN}"
                   ${T_COMMAND}
           WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}" ENVIRONMENT "${DK_TEST_ENV}")
endfunction()

function(dk_add_mpi_test name)
  cmake_parse_arguments(T "" "RANKS;TIMEOUT" "COMMAND;LABELS" ${ARGN})
  if(DIFFKIT_ENGINE_ONLY)
    return()
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  add_test(NAME ${name}
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${T_RANKS} ${MPIEXEC_PREFLAGS} ${T_COMMAND}
           WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set(env ${DK_TEST_ENV})
  if(DIFFKIT_SANITIZE)
    list(APPEND env "ASAN_OPTIONS=detect_leaks=0")  # Open MPI's plugins leak (tests/CMakeLists.txt says more)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} PROCESSORS ${T_RANKS} LABELS "mpi;${T_LABELS}"
                       ENVIRONMENT "${env}")
endfunction()
