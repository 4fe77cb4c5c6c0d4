# Top-level driver: CMake + ctest underneath. `make demo` and `make test` are the quick start.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps configure build test demo bench sanitize clean

all: build

deps:
	@sh scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

configure: deps $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@sh scripts/count_tests.sh $(BUILD)

demo: build
	./$(BUILD)/metalearn demo

# Kernels (GFLOP/s against the measured FMA peak), then metalearn against PyTorch side by side
# (bench/vs_pytorch: six configurations at 2 and 1 threads; needs torch, see bench/README.md).
bench: build
	./$(BUILD)/bench/kernels
	./$(BUILD)/bench/vs_pytorch $(VS_PYTORCH_ARGS)

# MAML accuracy and wall time against the PyTorch reference, side by side (bench/README.md).
# Needs torch + numpy: ML_TORCH_PYTHON, else /work/venv/bin/python, else /usr/bin/python3.
.PHONY: bench-accuracy
bench-accuracy: build
	./$(BUILD)/bench/accuracy

# Seconds per meta-iteration: 1 rank x 2 threads vs 2 MPI ranks x 1 thread (bench/scaling.sh).
.PHONY: bench-scaling
bench-scaling: build
	sh bench/scaling.sh $(BUILD)

# Tests again under AddressSanitizer + UndefinedBehaviorSanitizer (as CI does).
sanitize: deps
	cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DML_SANITIZE=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD)-asan -j $(JOBS)
	cd $(BUILD)-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS)
	@sh scripts/count_tests.sh $(BUILD)-asan

clean:
	rm -rf $(BUILD) $(BUILD)-asan

# MeLU on MovieLens-100K, metalearn vs the PyTorch reference on the same fold: time per
# meta-training epoch and MAE per K (bench/melu_bench.sh [iterations] [threads] [algo]).
.PHONY: bench-melu
bench-melu: build
	sh bench/melu_bench.sh 300 2 maml
