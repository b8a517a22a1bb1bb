# mptrain — top-level entry points. CMake does the building; this file adds set-up and runs.
#   make demo    install what is missing, build, train the default model on the default corpus
#   make test    install what is missing, build, run the whole test suite
#   make bench   benchmarks (ratios measured side by side; never part of the tests)
#   make test-asan      the whole suite built with AddressSanitizer + UBSan (build-asan/);
#                       ASAN_TESTS=REGEX runs the tests it matches, ASAN_EXCLUDE=REGEX all
#                       but those (.ci/run does both)
#   make test-valgrind  the single-rank unit tests, and the mptrain tool on one rank
#                       (tests/valgrind_cli.sh, ctest t_valgrind_cli), under valgrind memcheck
#                       (build-valgrind/); VALGRIND_TESTS=REGEX likewise
#   make fuzz           each libFuzzer target of tests/fuzz for FUZZ_SECONDS (build-fuzz/)
BUILD    ?= build
CMAKE_FLAGS ?=
JOBS     ?= $(shell nproc)
export OMPI_ALLOW_RUN_AS_ROOT = 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM = 1
export OMPI_MCA_rmaps_base_oversubscribe = 1
# OpenBLAS's kernel set, fixed as CI fixes it (read when the library loads; a caller's value wins)
export OPENBLAS_CORETYPE ?= Haswell

.PHONY: all setup build test demo bench clean test-asan test-valgrind fuzz
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

# Sanitizer runs. OpenMPI keeps some allocations until exit, many made from plugins it has
# unloaded by then: with the full (slow) unwinder on malloc their stacks reach OpenMPI's own
# libraries, which tests/lsan.supp names (see there). t_clang_build and t_fuzz are build checks with their
# own build directories, and t_multihost needs network namespaces: none of them runs here.
ASAN_BUILD ?= build-asan
ASAN_TESTS ?=
ASAN_JOBS ?= 2
ASAN_EXCLUDE ?=
test-asan: export ASAN_OPTIONS = detect_leaks=1:fast_unwind_on_malloc=0:check_initialization_order=1:strict_init_order=1
test-asan: export LSAN_OPTIONS = suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0
test-asan: export UBSAN_OPTIONS = print_stacktrace=1:halt_on_error=1
test-asan: setup
	@cmake -S . -B $(ASAN_BUILD) -DMPT_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@cd $(ASAN_BUILD) && ctest --output-on-failure -j $(ASAN_JOBS) --timeout 1800 \
	  -E '^(t_clang_build|t_multihost|t_fuzz)$$$(if $(ASAN_EXCLUDE),|$(ASAN_EXCLUDE))' \
	  $(if $(ASAN_TESTS),-R '$(ASAN_TESTS)')

# valgrind: the unit tests (no MPI) and t_valgrind_cli (mptrain, one rank, Open MPI's own leaks
# suppressed by tests/valgrind_mpi.supp), built without -march=native so that memcheck knows
# every instruction; any memcheck error or definite leak fails the test (tests/valgrind.supp).
VALGRIND_BUILD ?= build-valgrind
VALGRIND_TESTS ?= ^(test_.*|t_valgrind_cli)$$
test-valgrind: setup
	@cmake -S . -B $(VALGRIND_BUILD) -DMPT_VALGRIND=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(VALGRIND_BUILD) -j $(JOBS)
	@cd $(VALGRIND_BUILD) && OMP_NUM_THREADS=2 ctest --output-on-failure -j 2 --timeout 3600 \
	  -R '$(VALGRIND_TESTS)'

# A longer fuzzing session than the suite's t_fuzz (FUZZ_SECONDS per target, default 300).
FUZZ_SECONDS ?= 300
fuzz: setup
	@bash bench/fuzz.sh $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD)
