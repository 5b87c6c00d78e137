# Finds every external library diffkit uses and exposes each as an imported target, so module
# CMakeLists.txt files only name targets (PkgConfig::YAML, MPI::MPI_C, ...), never paths.
#
# Always (engine): libyaml, cJSON, Oniguruma, utf8proc, OpenBLAS + LAPACKE, zlib, threads, libm.
# Full build (not DIFFKIT_ENGINE_ONLY): Open MPI, parallel HDF5 (linked with MPI), libcurl, libmicrohttpd.
# CUDA (DIFFKIT_CUDA=AUTO|ON): nvcc (also looked for in /usr/local/cuda), cudart, cuBLAS/cuBLASLt;
# NCCL optional (header + library found in the toolkit or NCCL_ROOT/NCCL_HOME).
# A missing library stops configuration with the Debian package that provides it (`make deps` installs them).

find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)

function(dk_require_pkg var module debian_pkg)
  pkg_check_modules(${var} QUIET IMPORTED_TARGET GLOBAL ${module})
  if(NOT ${var}_FOUND)
    message(FATAL_ERROR "diffkit needs ${module} (pkg-config). Install it: apt-get install ${debian_pkg} "
                        "(or run `make deps`), or point PKG_CONFIG_PATH at its .pc file.")
  endif()
endfunction()

dk_require_pkg(YAML     yaml-0.1    libyaml-dev)
dk_require_pkg(CJSON    libcjson    libcjson-dev)
dk_require_pkg(ONIG     oniguruma   libonig-dev)
dk_require_pkg(UTF8PROC libutf8proc libutf8proc-dev)
dk_require_pkg(OPENBLAS openblas    libopenblas-dev)
dk_require_pkg(LAPACKE  lapacke     liblapacke-dev)
find_package(ZLIB REQUIRED)
find_library(DK_LIBM m)

if(NOT DIFFKIT_ENGINE_ONLY)
  find_package(MPI REQUIRED COMPONENTS C)
  set(HDF5_PREFER_PARALLEL TRUE)
  find_package(HDF5 REQUIRED COMPONENTS C)
  if(NOT HDF5_IS_PARALLEL)
    message(FATAL_ERROR "diffkit needs a parallel (MPI) HDF5 build, found a serial one (${HDF5_C_COMPILER_EXECUTABLE}). "
                        "Install libhdf5-openmpi-dev (make deps) or point HDF5_ROOT at a parallel build.")
  endif()
  find_package(CURL REQUIRED)
  find_package(OpenSSL REQUIRED COMPONENTS Crypto)  # SHA-256 (diff_amplification's prompt_hash, as the seed's)
  # diffkit serve: libmicrohttpd, found by header and library rather than pkg-config, whose libmicrohttpd.pc asks for
  # gnutls.pc (TLS, which we do not use) and so for a dozen more -dev packages on a machine we carry packages to
  find_path(MHD_INCLUDE_DIR microhttpd.h)
  find_library(MHD_LIBRARY microhttpd)
  if(NOT MHD_INCLUDE_DIR OR NOT MHD_LIBRARY)
    message(FATAL_ERROR "diffkit needs libmicrohttpd (diffkit serve). Install it: apt-get install libmicrohttpd-dev "
                        "(or run `make deps`), or set MHD_INCLUDE_DIR and MHD_LIBRARY.")
  endif()
  add_library(dk_mhd UNKNOWN IMPORTED GLOBAL)
  set_target_properties(dk_mhd PROPERTIES IMPORTED_LOCATION ${MHD_LIBRARY} INTERFACE_INCLUDE_DIRECTORIES ${MHD_INCLUDE_DIR})
  # Oversubscribe by default so MPI tests with 2-3 ranks run on a 2-core machine; clusters override it.
  set(MPIEXEC_PREFLAGS "--oversubscribe" CACHE STRING "Flags mpiexec gets before the executable" FORCE)
endif()

# ---------------------------------------------------------------------------------------------------
# CUDA
set(DIFFKIT_HAVE_CUDA OFF)
set(DIFFKIT_HAVE_NCCL OFF)
if(NOT DIFFKIT_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER)
    find_program(DK_NVCC nvcc HINTS ENV CUDA_HOME ENV CUDA_PATH /usr/local/cuda PATH_SUFFIXES bin)
    if(DK_NVCC)
      set(CMAKE_CUDA_COMPILER ${DK_NVCC} CACHE FILEPATH "CUDA compiler" FORCE)
    endif()
  endif()
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES "80;90" CACHE STRING "CUDA architectures (A100 = 80, H100/H200 = 90)")
    endif()
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 17)
    find_package(CUDAToolkit REQUIRED)
    set(DIFFKIT_HAVE_CUDA ON)
    find_path(NCCL_INCLUDE_DIR nccl.h HINTS ENV NCCL_ROOT ENV NCCL_HOME ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES include)
    find_library(NCCL_LIBRARY nccl HINTS ENV NCCL_ROOT ENV NCCL_HOME ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib lib64)
    if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
      file(STRINGS ${NCCL_INCLUDE_DIR}/nccl.h _nccl_ver REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) ")
      string(REGEX REPLACE ".*NCCL_MAJOR ([0-9]+).*NCCL_MINOR ([0-9]+).*NCCL_PATCH ([0-9]+).*" "\\1.\\2.\\3"
             NCCL_VERSION "${_nccl_ver}")
      if(NCCL_VERSION VERSION_LESS 2.14)
        message(WARNING "NCCL ${NCCL_VERSION} at ${NCCL_LIBRARY} is older than 2.14; building without NCCL")
      else()
        add_library(dk_nccl UNKNOWN IMPORTED GLOBAL)
        set_target_properties(dk_nccl PROPERTIES IMPORTED_LOCATION ${NCCL_LIBRARY}
                              INTERFACE_INCLUDE_DIRECTORIES ${NCCL_INCLUDE_DIR})
        set(DIFFKIT_HAVE_NCCL ON)
        message(STATUS "NCCL ${NCCL_VERSION}: ${NCCL_LIBRARY}")
      endif()
    endif()
  elseif(DIFFKIT_CUDA STREQUAL "ON")
    message(FATAL_ERROR "DIFFKIT_CUDA=ON but nvcc was not found (looked on PATH, $CUDA_HOME, /usr/local/cuda). "
                        "Install the CUDA toolkit or set CMAKE_CUDA_COMPILER=/path/to/nvcc.")
  else()
    message(STATUS "nvcc not found: building the CPU backend only (DIFFKIT_CUDA=AUTO)")
  endif()
endif()
