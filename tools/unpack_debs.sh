#!/usr/bin/env bash
# (Copied from the workplace's shared/device/unpack_debs.sh so that it travels with the working tree to a lent GPU machine.)
# On the GPU machine: unpack the carried packages into a private prefix (never into /) and print the
# environment that points compilers, CMake and the loader at it.
#   usage: eval "$(bash ../shared/device/unpack_debs.sh [DIR] [PREFIX])"    (default: .debs /opt/dk)
# Open MPI from a moved prefix needs OPAL_PREFIX (set below); HDF5's headers and library live in
# $PREFIX/usr/include/hdf5/openmpi and $PREFIX/usr/lib/x86_64-linux-gnu/hdf5/openmpi.
set -euo pipefail
dir=${1:-.debs}; prefix=${2:-/opt/dk}
mkdir -p "$prefix"
for f in "$dir"/*.deb; do dpkg -x "$f" "$prefix"; done
lib=$prefix/usr/lib/x86_64-linux-gnu
# OpenBLAS and LAPACK are reached through Debian's alternatives links, which dpkg -x does not make.
for pair in "openblas-pthread/libblas.so.3 libblas.so.3" "openblas-pthread/libblas.so libblas.so" \
            "openblas-pthread/liblapack.so.3 liblapack.so.3" "openblas-pthread/liblapack.so liblapack.so"; do
  set -- $pair; [ -e "$lib/$1" ] && [ ! -e "$lib/$2" ] && ln -s "$1" "$lib/$2"
done
cat <<ENV
export CMAKE_PREFIX_PATH=$prefix/usr:\${CMAKE_PREFIX_PATH:-}
export CPATH=$prefix/usr/include:$prefix/usr/include/hdf5/openmpi:$prefix/usr/lib/x86_64-linux-gnu/openmpi/include:\${CPATH:-}
export LIBRARY_PATH=$lib:$lib/openblas-pthread:$lib/hdf5/openmpi:\${LIBRARY_PATH:-}
export LD_LIBRARY_PATH=$lib:$lib/openblas-pthread:$lib/hdf5/openmpi:$lib/openmpi/lib:\${LD_LIBRARY_PATH:-}
export PKG_CONFIG_PATH=$lib/pkgconfig:$prefix/usr/share/pkgconfig:\${PKG_CONFIG_PATH:-}
export OPAL_PREFIX=$prefix/usr
export PATH=$prefix/usr/bin:\$PATH
ENV
