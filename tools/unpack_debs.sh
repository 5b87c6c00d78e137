#!/usr/bin/env bash
# unpack_debs.sh — on a lent GPU machine (or in the rehearsal, tools/gpu_check_rehearsal.sh): unpack the carried
# Debian packages into a private prefix (never into /) and print the environment that points the compilers,
# pkg-config, CMake and the loader at it, and at nothing else.
#   usage: eval "$(bash tools/unpack_debs.sh [DIR] [PREFIX])"    (default: .debs /opt/dk)
# `dpkg -x` only unpacks files: it runs no maintainer script, so what those scripts make is made here:
#   - Debian "alternatives" links (libblas.so.3, liblapack.so*, libopenblas.so*, mpicc, mpirun, h5pcc, hdf5.pc,
#     blas.pc, lapack.pc, openblas.pc): the links the packages' postinst scripts would register;
#   - the .pc files name /usr: they are rewritten to name the prefix;
#   - OpenBLAS's cblas.h lives in include/x86_64-linux-gnu/openblas-pthread, on no default include path.
# PKG_CONFIG_LIBDIR names the prefix's folders only, so pkg-config never answers from the machine's own .pc files
# (the rehearsal relies on that to prove the packages are complete). Open MPI from a moved prefix needs
# OPAL_PREFIX.
set -euo pipefail
dir=${1:-.debs}; prefix=${2:-/opt/dk}
ls "$dir"/*.deb >/dev/null 2>&1 || { echo "unpack_debs.sh: no .deb files in $dir (make them with tools/prepare_debs.sh)" >&2; exit 1; }
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
for f in "$dir"/*.deb; do dpkg -x "$f" "$prefix"; done
usr=$prefix/usr
lib=$usr/lib/x86_64-linux-gnu

# link NAME -> TARGET inside the prefix when TARGET was unpacked and NAME was not (relative links, so the
# prefix can move)
alt() {
  local name=$1 target=$2
  [ -e "$(dirname "$name")/$target" ] && [ ! -e "$name" ] && ln -s "$target" "$name"
  return 0
}
for so in libblas.so.3 libblas.so liblapack.so.3 liblapack.so libopenblas.so.0 libopenblas.so; do
  alt "$lib/$so" "openblas-pthread/$so"
done
for tool in mpicc mpicxx mpiexec mpirun h5pcc; do alt "$usr/bin/$tool" "$tool.openmpi"; done
find "$prefix" -name '*.pc' -type f -exec sed -i \
  "s|=/usr|=$usr|g; s|-I/usr|-I$usr|g; s|-L/usr|-L$usr|g; s|-Wl,-rpath,/usr|-Wl,-rpath,$usr|g" {} +
mkdir -p "$lib/pkgconfig"
alt "$lib/pkgconfig/openblas.pc" ../openblas-pthread/pkgconfig/openblas.pc
alt "$lib/pkgconfig/blas.pc"     ../openblas-pthread/pkgconfig/blas-openblas.pc
alt "$lib/pkgconfig/lapack.pc"   ../openblas-pthread/pkgconfig/lapack-openblas.pc
alt "$lib/pkgconfig/hdf5-mpi.pc" hdf5-openmpi.pc
alt "$lib/pkgconfig/hdf5.pc"     hdf5-mpi.pc
# Open MPI's compiler wrappers read their flags from share/openmpi/*-wrapper-data.txt relative to OPAL_PREFIX;
# HDF5's h5pcc sets prefix="/usr" in its body.
[ -f "$usr/bin/h5pcc.openmpi" ] && sed -i "s|^prefix=\"/usr\"|prefix=\"$usr\"|" "$usr/bin/h5pcc.openmpi"

incs=$usr/include:$usr/include/x86_64-linux-gnu/openblas-pthread:$usr/include/x86_64-linux-gnu:$usr/include/hdf5/openmpi:$lib/openmpi/include
# (a few packages, e.g. libcom-err2, libkeyutils1, libnl-3-200, still ship their libraries under /lib, not /usr/lib)
libs=$lib:$lib/openblas-pthread:$lib/hdf5/openmpi:$lib/openmpi/lib:$prefix/lib/x86_64-linux-gnu
cat <<ENV
export CMAKE_PREFIX_PATH=$usr\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}
export CPATH=$incs\${CPATH:+:\$CPATH}
export LIBRARY_PATH=$libs\${LIBRARY_PATH:+:\$LIBRARY_PATH}
export LD_LIBRARY_PATH=$libs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export PKG_CONFIG_LIBDIR=$lib/pkgconfig:$lib/openblas-pthread/pkgconfig:$usr/share/pkgconfig
unset PKG_CONFIG_PATH
export OPAL_PREFIX=$usr
export PATH=$usr/bin:\$PATH
ENV
