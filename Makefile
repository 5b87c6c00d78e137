# diffkit — thin wrapper over CMake/ctest. Everything real lives in CMakeLists.txt.
#   make deps       install missing Debian/Ubuntu packages (as root), or print the apt-get command
#   make build      Release build into build/ (CUDA too when nvcc is found; see DIFFKIT_CUDA)
#   make test       deps + build + the CPU test suite (ctest); GPU tests report "skipped" without a GPU
#   make demo       deps + build + the demo pipeline on the bundled tiny model pair
#   make bench      benchmark programs (side by side with the reference implementations)
#   make gpu-check  on a GPU machine: engine build, GPU tests and GPU benchmarks (tools/gpu_check.sh)
#   make asan-test  the test suite under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=
GENERATOR := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")

# Debian 12 / Ubuntu 24.04 package names. The CUDA toolkit is not among them: it is used when present
# (nvcc on PATH, in $CUDA_HOME or /usr/local/cuda).
DEB_PACKAGES := build-essential cmake ninja-build pkg-config git ca-certificates \
  openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools libyaml-dev libcjson-dev libonig-dev \
  libutf8proc-dev libopenblas-dev liblapacke-dev zlib1g-dev libcurl4-openssl-dev libssl-dev libmicrohttpd-dev clang python3 \
  python3-h5py python3-numpy chromium

.PHONY: deps build configure test demo bench gpu-check asan-test clean

deps:
	@if ! command -v dpkg-query >/dev/null 2>&1; then \
	  echo "deps: not a Debian/Ubuntu system; install the equivalents of: $(DEB_PACKAGES)"; exit 0; fi; \
	missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "deps: all required packages are installed"; \
	elif [ "$$(id -u)" = 0 ]; then echo "deps: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: missing packages:$$missing"; echo "run:  sudo apt-get install -y$$missing"; exit 1; fi

configure:
	cmake -S . -B $(BUILD) $(GENERATOR) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: deps
	$(MAKE) --no-print-directory build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: deps
	$(MAKE) --no-print-directory build
	bash tools/demo.sh $(BUILD)

bench: deps
	$(MAKE) --no-print-directory build
	bash tools/bench.sh $(BUILD)

gpu-check:
	bash tools/gpu_check.sh

asan-test: deps
	$(MAKE) --no-print-directory build BUILD=build-asan CMAKE_ARGS="-DDIFFKIT_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug $(CMAKE_ARGS)"
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)

clean:
	rm -rf $(BUILD) build-asan
