#!/usr/bin/env bash
# prepare_debs.sh — downloads the Debian packages a lent GPU machine lacks, into a folder that travels with the
# working tree (`carry`). That machine has CUDA, cmake, ninja and python3 with torch/transformers, but none of our C
# libraries. Kept in the project (synced with the workplace's shared/device copy) so that the GPU check and its
# bare-machine rehearsal (tools/gpu_check_rehearsal.sh) need nothing outside the checkout.
#   usage: bash tools/prepare_debs.sh [DIR] [core|full]     (default: .debs core)
#   core = what the engine, tokenizer and kernels link (cJSON, Oniguruma, utf8proc, libyaml, OpenBLAS, LAPACKE),
#          plus pkg-config and zlib's headers, which CMake always asks for
#   full = core + Open MPI + parallel HDF5 + libcurl + libmicrohttpd (everything the jobs link; gpu_check step 3b), and the
#          libraries these load in turn (Debian's HDF5 links libcurl, which pulls TLS, Kerberos, LDAP, ...)
# Only glibc, libstdc++, libgcc_s and the libraries of dpkg/bash/coreutils (zlib, zstd, xz, bzip2, ...) are
# assumed present on the GPU machine; tools/gpu_check_rehearsal.sh checks with ldd that nothing else is needed.
# .debs/ is git-ignored. Exit 0 when every package was downloaded, 1 otherwise (apt's message is shown).
set -euo pipefail
dir=${1:-.debs}; set_=${2:-core}
case "$set_" in core|full) ;; *) echo "prepare_debs.sh: package set \"$set_\": expected core or full" >&2; exit 2;; esac
core="libcjson1 libcjson-dev libonig5 libonig-dev libutf8proc2 libutf8proc-dev libyaml-0-2 libyaml-dev
 libopenblas0 libopenblas0-pthread libopenblas-dev libopenblas-pthread-dev libgfortran5 libquadmath0
 liblapacke liblapacke-dev liblapack3 libblas3 liblapack-dev libblas-dev
 pkgconf pkgconf-bin libpkgconf3 zlib1g-dev"
full="libopenmpi3 libopenmpi-dev openmpi-bin openmpi-common libhdf5-openmpi-103-1 libhdf5-openmpi-dev
 libhdf5-openmpi-hl-100 hdf5-helpers libsz2 libaec0 libhwloc15 libevent-core-2.1-7 libevent-pthreads-2.1-7
 libfabric1 libucx0 libpmix2 libmunge2 libnuma1 libibverbs1 librdmacm1 libpsm2-2 libpsm-infinipath1
 libnl-3-200 libnl-route-3-200 libltdl7 libpciaccess0 libxnvctrl0 libcurl4 libcurl4-openssl-dev
 libnghttp2-14 libidn2-0 librtmp1 libssh2-1 libpsl5 libssl3 libssl-dev libgssapi-krb5-2 libldap-2.5-0 libbrotli1 libudev1
 libunistring2 libgnutls30 libhogweed6 libnettle8 libgmp10 libkrb5-3 libk5crypto3 libcom-err2 libkrb5support0
 libsasl2-2 libp11-kit0 libtasn1-6 libkeyutils1 libffi8 libmicrohttpd12 libmicrohttpd-dev"
pkgs=$core; [ "$set_" = full ] && pkgs="$core $full"
mkdir -p "$dir"
# apt-get download writes into the current folder; as root it warns that it runs unsandboxed (harmless).
(cd "$dir" && apt-get download $pkgs 2>&1 >/dev/null | grep -v 'unsandboxed as root' >&2 || true)
missing=""
for p in $pkgs; do ls "$dir/${p}_"*.deb >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then echo "prepare_debs.sh: could not download:$missing (is apt's package list current? apt-get update)" >&2; exit 1; fi
echo "$(ls "$dir"/*.deb | wc -l) packages ($set_), $(du -sh "$dir" | cut -f1) in $dir"
