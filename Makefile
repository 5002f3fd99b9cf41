# grokkit: tools for studying grokking, and the study that uses them.
#
#   make            build the tools into $(O)/bin
#   make -j all     build the tools and reproduce the study (pipeline/study.mk)
#   make test       run every test (installs what is missing), then print
#                   "N passed, N failed"
#   make help       list every target and parameter
#   make V=1 ...    print every command (quiet by default, as git's build)
#
# Build outputs go under $(O) (default build/); a second tree with
# sanitizers is built as $(O)/asan by `make test`.

.DELETE_ON_ERROR:
.SUFFIXES:
.DEFAULT_GOAL := tools
SHELL := /bin/bash

O       ?= build
# One spelling per build tree: an absolute O inside this directory is made
# relative, so the targets recorded in the .d files match the next make's
# however it is given O (else a changed header would not rebuild its objects).
override O := $(patsubst $(CURDIR)/%,%,$(abspath $(O)))
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
DESTDIR ?=
CFLAGS  ?= -O2 -g -fno-math-errno
# SAN=address,undefined builds with sanitizers (make test does this in $(O)/asan).
SAN     ?=
# CI builds treat warnings as errors.
WERROR  := $(if $(filter true 1,$(CI)),-Werror)

TOOLS   := gen-modadd train-mlp train-transformer hess-eig gop-spectrum llc-estimate progress-measures summarize
LIBSRC  := $(wildcard tools/lib/*.c)
UNITSRC := $(wildcard tests/unit/test_*.c)

BINS    := $(TOOLS:%=$(O)/bin/%)
LIBOBJ  := $(LIBSRC:%.c=$(O)/obj/%.o)
UNITS   := $(UNITSRC:tests/unit/%.c=$(O)/test/%)

# pkg-config runs once, and only after ensure-deps has installed it.
PKG_CFLAGS = $(eval PKG_CFLAGS := $$(shell pkg-config --cflags openblas lapacke jansson))$(PKG_CFLAGS)
PKG_LIBS   = $(eval PKG_LIBS := $$(shell pkg-config --libs openblas lapacke jansson))$(PKG_LIBS)

SANFLAGS   = $(if $(SAN),-fsanitize=$(SAN) -fno-omit-frame-pointer -fno-sanitize-recover=all)
# GCC's -O2 vectorises only loops whose trip count is a multiple of the
# vector width; the dynamic cost model lets the elementwise kernels (ReLU,
# bias sums, gathers) vectorise too.  It changes no result: without
# -ffast-math, floating-point reductions keep their order.
VECFLAGS   = $(if $(filter gcc cc,$(notdir $(CC))),-fvect-cost-model=dynamic)
ALL_CFLAGS = -std=c11 $(CFLAGS) $(VECFLAGS) -Wall -Wextra -Wpedantic $(WERROR) $(SANFLAGS) \
             -Itools/lib $(PKG_CFLAGS)
ALL_LDLIBS = $(SANFLAGS) $(PKG_LIBS) -lm

# Quiet by default, as git's build: a line per file made (CC, AR, LINK,
# GEN), a line per finished run of the study and its closing table; V=1
# prints every command instead.  Errors and the tools' own messages show
# either way.
V ?=
ifeq ($(V),1)
Q          :=
QUIET_CC   :=
QUIET_AR   :=
QUIET_LINK :=
QUIET_GEN  :=
else
Q          := @
QUIET_CC    = @echo '   ' CC $<;
QUIET_AR    = @echo '   ' AR $@;
QUIET_LINK  = @echo '   ' LINK $@;
QUIET_GEN   = @echo '   ' GEN $@;
endif

.PHONY: fuzz fuzz-targets units tools all test check-ref same-science bench install uninstall clean clean-results help deps demo mutate
.PHONY: replicate-ap replicate-g9

tools: $(BINS)

# `all` builds the tools and the study (pipeline/study.mk); `demo` is one
# default training run at p = 97, depth 2, which groks, with its checkpoints.
# $(RUN) prefixes every training and analysis command (e.g. RUN='srun -n1').
# CLUSTER=slurm makes each of them a SLURM job of one task on one CPU:
# inside an allocation (pipeline/study.sbatch) a step of it on CPUs of its
# own (--exclusive), outside one a job of its own (where --exclusive would
# ask for a whole node).
CLUSTER ?=
ifeq ($(CLUSTER),slurm)
RUN ?= srun $(if $(SLURM_JOB_ID),--exclusive )--nodes=1 --ntasks=1 --cpus-per-task=1 --quiet
else ifneq ($(CLUSTER),)
$(error CLUSTER=$(CLUSTER): the one cluster this knows is CLUSTER=slurm)
endif
RUN ?=
DEMO := results/demo/d2-s0

all: tools study

demo: $(DEMO)/log.jsonl | $(O)/.study-deps
	@echo "demo: $$(jq -rs -f pipeline/grok-steps.jq $<)"

data/modadd-p97.safetensors: $(O)/bin/gen-modadd
	@mkdir -p $(@D)
	$(QUIET_GEN)$(RUN) $(O)/bin/gen-modadd -p 97 -o $@

$(DEMO)/log.jsonl: data/modadd-p97.safetensors $(O)/bin/train-mlp
	@rm -rf $(@D)/ckpt
	@mkdir -p $(@D)
	$(QUIET_GEN)$(RUN) $(O)/bin/train-mlp --data $< --depth 2 --seed 0 --ckpt-dir $(@D)/ckpt --quiet > $@+
	@mv -f $@+ $@

# Dependencies install themselves once; `make deps` checks again.  The
# study's install waits for the build's (order-only), so that make -j never
# starts two: ensure-deps serialises installs too (a lock), but a graph
# that cannot race is the first line.
$(O)/.study-deps: tools/ensure-deps | $(O)/.deps
	@mkdir -p $(@D)
	$(Q)tools/ensure-deps study
	@touch $@

$(O)/.deps: tools/ensure-deps
	@mkdir -p $(@D)
	$(Q)tools/ensure-deps build
	@touch $@

deps:
	tools/ensure-deps test

# A stamp that changes only when the flags do, so that a changed flag
# rebuilds everything and an unchanged one nothing (as git's Makefile).
$(O)/FLAGS: FORCE | $(O)/.deps
	@mkdir -p $(@D)
	@echo '$(CC) $(ALL_CFLAGS) $(ALL_LDLIBS)' > $@+
	@if cmp -s $@+ $@; then rm -f $@+; else mv -f $@+ $@; fi

$(O)/obj/%.o: %.c $(O)/FLAGS | $(O)/.deps
	@mkdir -p $(@D)
	$(QUIET_CC)$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(O)/libgrok.a: $(LIBOBJ)
	@rm -f $@
	$(QUIET_AR)$(AR) rcs $@ $^

$(O)/bin/%: $(O)/obj/tools/%.o $(O)/libgrok.a
	@mkdir -p $(@D)
	$(QUIET_LINK)$(CC) $(CFLAGS) -o $@+ $^ $(ALL_LDLIBS)
	@mv -f $@+ $@

$(O)/test/%: $(O)/obj/tests/unit/%.o $(O)/libgrok.a
	@mkdir -p $(@D)
	$(QUIET_LINK)$(CC) $(CFLAGS) -o $@+ $^ $(ALL_LDLIBS)
	@mv -f $@+ $@

# Benchmarks against PyTorch, measured in the same run (not a timed test).
$(O)/bench/bench_step: $(O)/obj/tests/bench/bench_step.o $(O)/libgrok.a
	@mkdir -p $(@D)
	$(QUIET_LINK)$(CC) $(CFLAGS) -o $@+ $^ $(ALL_LDLIBS)
	@mv -f $@+ $@

$(O)/bench/bench_eig: $(O)/obj/tests/bench/bench_eig.o $(O)/libgrok.a
	@mkdir -p $(@D)
	$(QUIET_LINK)$(CC) $(CFLAGS) -o $@+ $^ $(ALL_LDLIBS)
	@mv -f $@+ $@

BENCH_DATA = $(O)/bench/modadd-p97.safetensors
$(BENCH_DATA): $(O)/bin/gen-modadd
	@mkdir -p $(@D)
	$(O)/bin/gen-modadd -p 97 -o $@

# BENCH_FLAGS: run.py's options, e.g. --only train,hess --reps 5.
BENCH_FLAGS ?=
bench: tools $(O)/bench/bench_step $(O)/bench/bench_eig $(BENCH_DATA)
	tools/ensure-deps ref
	$(PYTHON) tests/bench/run.py $(BENCH_FLAGS) $(O)/bin $(O)/bench $(BENCH_DATA) $(O)/bench/bench.jsonl

# Fuzzing (clang's libFuzzer with ASan and UBSan): every reader of outside
# data.  `make fuzz` runs each target FUZZ_SECONDS; `make test` runs them
# briefly.
FUZZ_SECONDS ?= 180
TEST_FUZZ_SECONDS ?= 15
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,$(O)/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_LIBSRC  := $(filter-out tools/lib/blas.c tools/lib/analysis.c tools/lib/train.c,$(LIBSRC))

$(O)/fuzz/%: tests/fuzz/%.c $(FUZZ_LIBSRC) $(wildcard tools/lib/*.h) | $(O)/.deps
	@mkdir -p $(@D)
	$(QUIET_LINK)clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -Itools/lib $(PKG_CFLAGS) \
	    -o $@+ $< $(FUZZ_LIBSRC) $(PKG_LIBS) -lm
	@mv -f $@+ $@

# fuzz_summarize compiles the tool's own source in.
$(O)/fuzz/fuzz_summarize: tools/summarize.c

fuzz-targets: $(FUZZ_TARGETS)

fuzz: tools fuzz-targets
	tests/fuzz/run $(O) $(FUZZ_SECONDS)

# The whole suite: unit tests and bats on the normal build, then again on a
# sanitizer build; tests/run prints the final "N passed, N failed".
test: deps
	$(MAKE) O=$(O) tools units fuzz-targets
	$(MAKE) O=$(O)/asan SAN=address,undefined tools units
	tools/ensure-deps ref
	PYTHON=$(PYTHON) FUZZ_SECONDS=$(TEST_FUZZ_SECONDS) tests/run $(O) $(O)/asan

units: $(UNITS)

# Objects that only pattern rules name are intermediate on a fresh tree:
# make would delete them after linking, and the next make, which knows
# them from their .d files, would build them all again.  Keep them.
.SECONDARY: $(TOOLS:%=$(O)/obj/tools/%.o) $(UNITSRC:%.c=$(O)/obj/%.o) \
    $(O)/obj/tests/bench/bench_step.o $(O)/obj/tests/bench/bench_eig.o

# Cross-checks against PyTorch on the same files (Debian's python3-torch).
PYTHON ?= /usr/bin/python3
check-ref: tools $(O)/test/test_transformer $(O)/test/test_mlp_embed
	tools/ensure-deps ref
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	for t in tests/ref/check_*.py; do $(PYTHON) "$$t" $(O)/bin "$$d" || exit 1; done

# The same science as an older commit (BASE) on a tiny study: every record
# and tensor compared, timings and versions aside (tests/same-science).
BASE ?= 8ea4d8c
same-science:
	$(PYTHON) tests/same-science --base $(BASE)

# Mutation testing: each planted bug of tests/mutate/mutants, one at a
# time in a copy of the tree, must make one of the suites named for it
# fail; prints the table of what caught what (MUTANTS="name..." for some).
MUTATE_JOBS ?= 2
mutate: tools units
	tools/ensure-deps ref
	$(PYTHON) tests/mutate/run --build $(O) --jobs $(MUTATE_JOBS) $(MUTANTS)

install: tools
	install -d '$(DESTDIR)$(BINDIR)'
	install -m 0755 $(BINS) '$(DESTDIR)$(BINDIR)'

uninstall:
	rm -f $(TOOLS:%='$(DESTDIR)$(BINDIR)'/%)

clean:
	rm -rf $(O)

clean-results:
	rm -rf results data/*.safetensors $(filter-out plots/README.md,$(wildcard plots/*))

help:
	@echo 'Targets:'
	@echo '  tools (default)  build every tool into $(O)/bin'
	@echo '  all              build the tools and reproduce the study (STUDY=small|full)'
	@echo '  demo             one default run at p = 97, depth 2, that groks'
	@echo '  replicate-gm     enerrio/grokking-mlp'"'"'s exp1-3 (GM_EPOCHS=$(GM_EPOCHS); 20000 is the source'"'"'s length)'
	@echo '  clean-results    remove generated data, results and plots'
	@echo 'Study parameters (make all NAME=value; a change redoes what depends on it):'
	@echo '  STUDY=$(STUDY) P=$(P) FRAC=$(FRAC) SEED_FRAC=$(SEED_FRAC) STEPS=$(STEPS)'
	@echo '  DEPTHS="$(DEPTHS)" SEEDS="$(SEEDS)" CKPT_POINTS=$(CKPT_POINTS) RECIPES="$(RECIPES)"'
	@echo '  HESS_FLAGS="$(HESS_FLAGS)" GOP_FLAGS="$(GOP_FLAGS)"'
	@echo '  LLC_RECIPES="$(LLC_RECIPES)" LLC_FLAGS="$(LLC_FLAGS)"'
	@echo '  LLC_CAL_SCALES="$(LLC_CAL_SCALES)" LLC_CAL_MARGINS="$(LLC_CAL_MARGINS)" LLC_CAL_NBETAS="$(LLC_CAL_NBETAS)" LLC_CAL_FLAGS="$(LLC_CAL_FLAGS)"'
	@echo '  LLC_CAL_DEPTHS="$(LLC_CAL_DEPTHS)" LLC_LAYER_DEPTHS="$(LLC_LAYER_DEPTHS)"'
	@echo '  transformers: NANDA_P=$(NANDA_P) NANDA_FRAC=$(NANDA_FRAC) LAYERS="$(LAYERS)" PIZZA_P=$(PIZZA_P) PIZZA_FRAC=$(PIZZA_FRAC)'
	@echo '  PIZZA_ALPHAS="$(PIZZA_ALPHAS)" TFM_STEPS=$(TFM_STEPS) TFM_SEEDS="$(TFM_SEEDS)" TFM_CKPT_POINTS=$(TFM_CKPT_POINTS) TFM_CKPT_FROM=$(TFM_CKPT_FROM)'
	@echo '  TFM_LLC_FLAGS="$(TFM_LLC_FLAGS)" PM_RECIPES="$(PM_RECIPES)" PM_FLAGS="$(PM_FLAGS)"'
	@echo '  WDS="$(WDS)" FRACS="$(FRACS)" (sweeps; empty: the recipe'"'"'s own value)'
	@echo '  CLUSTER=$(CLUSTER) (slurm: every command an srun job)  RUN="$(RUN)"  R=$(R) PL=$(PL)'
	@echo '  V=1 prints every command (default: a line per file made and per finished run)'
	@echo 'More targets:'
	@echo '  test             run every test, plain and under ASan/UBSan, check-ref and SLURM'
	@echo '  bench            speed and memory against PyTorch (train, Hessian, GOP, LLC)'
	@echo '  fuzz             run every fuzz target FUZZ_SECONDS=$(FUZZ_SECONDS) seconds'
	@echo '  check-ref        every tool against PyTorch (or a closed form) on the same data and weights'
	@echo '  same-science     the same records and tensors as commit BASE=$(BASE) on a tiny study'
	@echo '  replicate-ap     the 01-grokking-hessian depth study as written, and our grok recipe beside it:'
	@echo '                   AP_SEEDS="$(AP_SEEDS)" AP_DEPTHS="$(AP_DEPTHS)" AP_STEPS=$(AP_STEPS) APR=$(APR) APPL=$(APPL)'
	@echo '  replicate-g9     the Geometry of Grok'"'"'s GOP tracking on Power et al.'"'"'s setup, the MLP'"'"'s grid of operators,'
	@echo '                   optimisers and weight decays (G9_FULL=1: 100,000 steps, the transformer on the grid too):'
	@echo '                   G9_OPS="$(G9_OPS)" G9_OPTIMS="$(G9_OPTIMS)" G9_WDS="$(G9_WDS)" G9_STEPS=$(G9_STEPS) G9R=$(G9R)'
	@echo '  mutate           plant each bug of tests/mutate/mutants and check a test catches it (MUTATE_JOBS=$(MUTATE_JOBS))'
	@echo '  install          install the tools into $$(DESTDIR)$$(BINDIR)'
	@echo '  uninstall        remove them again'
	@echo '  deps             install missing Debian packages'
	@echo '  clean            remove $(O)'
	@echo 'Build parameters:'
	@echo '  O=$(O)  PREFIX=$(PREFIX)  BINDIR=$(BINDIR)  DESTDIR=$(DESTDIR)'
	@echo '  CFLAGS=$(CFLAGS)  SAN=$(SAN)  CI=$(CI)'

FORCE:

include pipeline/study.mk
include pipeline/replicate-gm.mk
include pipeline/replicate-ap.mk
include pipeline/replicate-g9.mk

-include $(LIBOBJ:.o=.d) $(TOOLS:%=$(O)/obj/tools/%.d) $(UNITSRC:%.c=$(O)/obj/%.d) \
         $(O)/obj/tests/bench/bench_step.d $(O)/obj/tests/bench/bench_eig.d
