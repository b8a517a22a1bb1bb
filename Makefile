# mptrain — top-level entry points. CMake does the building; this file adds set-up and runs.
#   make demo    install what is missing, build, train the default model on the default corpus
#   make test    install what is missing, build, run the whole test suite
#   make bench   benchmarks (ratios measured side by side; never part of the tests)
BUILD    ?= build
CMAKE_FLAGS ?=
JOBS     ?= $(shell nproc)
export OMPI_ALLOW_RUN_AS_ROOT = 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM = 1
export OMPI_MCA_rmaps_base_oversubscribe = 1

.PHONY: all setup build test demo bench clean
all: build

setup:
	@bash scripts/setup.sh

build:
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: setup
	@$(MAKE) --no-print-directory build
	@cd $(BUILD) && ctest --output-on-failure -j 2 --timeout 900

demo: setup
	@$(MAKE) --no-print-directory build
	@bash scripts/demo.sh $(BUILD)

bench: setup
	@$(MAKE) --no-print-directory build
	@bash bench/run.sh $(BUILD)
	@bash bench/parallel.sh $(BUILD)

clean:
	rm -rf $(BUILD)
