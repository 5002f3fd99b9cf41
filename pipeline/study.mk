# pipeline/study.mk: the study, included by the top-level Makefile.
#
# data -> one training run per (recipe, depth, seed) with log-spaced
# checkpoints -> hess-eig and gop-spectrum over each run's checkpoints, and
# llc-estimate over those of the LLC_RECIPES runs -> summaries -> plots.
# The LLC's sampler is calibrated per depth (an epsilon x nbeta grid on the
# last checkpoint of each depth's first seed), and one layer's LLC is
# followed through training at LLC_LAYER_DEPTHS.  Every output depends on the tool binaries that make
# it and on a stamp holding the parameters it was made with, so changing a
# parameter (make STEPS=...) redoes exactly what it affects and a second
# `make all` does nothing.  Every recipe writes to a temporary name and
# renames; $(RUN) prefixes every training and analysis command.
#
# Recipes:
#   grok  the measured grokking configuration: train-mlp's defaults
#         (one-hot, AdamW lr 1e-3, wd 2, full batch) on FRAC of the pairs
#   seed  the seed study's literal configuration, the control: raw integer
#         inputs, Adam lr 1e-3, no weight decay, SEED_FRAC of the pairs
#   nanda the transformer of Nanda et al. (progress measures): train-transformer's
#         defaults (AdamW lr 1e-3, wd 1, betas (0.9, 0.98), warm-up 10, full
#         batch, '=' token, causal attention) at p = NANDA_P on NANDA_FRAC of
#         the pairs, LAYERS blocks (the depth axis of the transformers)
#   pizza Zhong et al.'s training script: one block, no '=' token, full
#         attention, AdamW wd 2, p = PIZZA_P, PIZZA_FRAC of the pairs; one
#         recipe pizza-a<alpha> per attention coefficient in PIZZA_ALPHAS
#         (0: constant attention)
# progress-measures runs on the checkpoints of every PM_RECIPES run.

STUDY ?= small

P_small := 59
FRAC_small := 0.5
STEPS_small := 8000
SEEDS_small := 0 1 2
CKPT_POINTS_small := 8

P_full := 97
FRAC_full := 0.3
STEPS_full := 30000
SEEDS_full := 0 1 2 3 4
CKPT_POINTS_full := 30

# The transformers.  Full: the papers' configurations, 20,000 steps (Nanda
# reports the clean-up by step 13,000 at p = 113), every checkpoint
# analysed.  Small: the same recipes at p = 31 (nanda on half of the
# pairs, as the small MLPs), 5,000 steps, one seed, 8 checkpoints, so
# that the study stays near 30 minutes on 2 cores (README "The study"
# gives the measurements behind this).  There the GOP, the LLC and the
# progress measures read step 0 and the checkpoints from TFM_CKPT_FROM
# on: 0, 38, 130, 439, 1,481 and 5,000 of the nine, each costing the six
# runs about the same.  The three left out are the warm-up's: step 1 is
# step 0's point (the first update has learning rate 0) and steps 3 and
# 11 come before any small transformer memorises (steps 47-75).  hess-eig
# keeps them: Adam's preconditioned sharpness peaks there, its moments
# still small.  Every run record and the by-depth table are as with all
# nine (docs/design.md, "The study's time").
NANDA_P_small := 31
NANDA_FRAC_small := 0.5
PIZZA_P_small := 31
TFM_STEPS_small := 5000
TFM_SEEDS_small := 0
TFM_CKPT_POINTS_small := 8
TFM_CKPT_FROM_small := 30
NANDA_P_full := 113
NANDA_FRAC_full := 0.3
PIZZA_P_full := 59
TFM_STEPS_full := 20000
TFM_SEEDS_full := $(SEEDS_full)
TFM_CKPT_POINTS_full := 30
TFM_CKPT_FROM_full := 0

P ?= $(P_$(STUDY))
FRAC ?= $(FRAC_$(STUDY))
SEED_FRAC ?= 0.1
STEPS ?= $(STEPS_$(STUDY))
SEEDS ?= $(SEEDS_$(STUDY))
DEPTHS ?= 1 2 3 4 5 6 7
CKPT_POINTS ?= $(CKPT_POINTS_$(STUDY))
RECIPES ?= grok seed nanda pizza
NANDA_P ?= $(NANDA_P_$(STUDY))
NANDA_FRAC ?= $(NANDA_FRAC_$(STUDY))
PIZZA_P ?= $(PIZZA_P_$(STUDY))
PIZZA_FRAC ?= 0.8
PIZZA_ALPHAS ?= 0 0.5 1
LAYERS ?= 1 2 3
TFM_STEPS ?= $(TFM_STEPS_$(STUDY))
TFM_SEEDS ?= $(TFM_SEEDS_$(STUDY))
TFM_CKPT_POINTS ?= $(TFM_CKPT_POINTS_$(STUDY))
TFM_CKPT_FROM ?= $(TFM_CKPT_FROM_$(STUDY))
PM_FLAGS ?=
# The curvature views: per tensor group (--blocks; 20 probes of the trace
# shared with the whole one), the gradient's share in the top-3 span and the
# preconditioned sharpness from each checkpoint's optimiser state (the
# training keeps it: TRAIN_FLAGS).  GGN_FLAGS: the Gauss-Newton matrix's top
# eigenvalue, a second call (ggn.jsonl); per block for the families in
# GGN_BLOCKS (mlp, tfm), none by default: a ReLU MLP's layer blocks of the
# GGN are its Hessian's, and the transformer's cost as much again as its
# Hessian blocks, a block product there being a whole product (on a p = 31
# checkpoint: GGN blocks 11 CPU-s against 2.4 for the Hessian's top 3).
HESS_FLAGS ?= --top 3 --converge value --blocks --probes 20 --alignment --precond
# A transformer's block product is a whole product (the MLP's starts and
# stops at its layer; its trace terms need only the R-forward), so each
# probe costs it a whole product per block and one for the whole trace:
# on the 2-block nanda run at p = 31, 1,973 products over its 9
# checkpoints at 20 probes, 945 fewer at 5 (the former --top 3 call: 139).
TFM_HESS_FLAGS ?= $(HESS_FLAGS) --probes 5
GGN_FLAGS ?= --matrix ggn --top 1 --converge value
GGN_BLOCKS ?=
GGN_BLOCK_FLAGS ?= --blocks --probes 20
TRAIN_FLAGS ?= --ckpt-optim
# --full: the entropy effective rank the GOP plots draw needs the whole spectrum.
GOP_FLAGS ?= --top 10 --full
LLC_RECIPES ?= grok nanda pizza
PM_RECIPES ?= grok seed nanda pizza
# The MLPs' step size from each checkpoint (llc-estimate --epsilon auto):
# the smaller of 4 / (margin (nbeta lambda_max + gamma)), stable in the
# sharpest direction, and the step whose MALA acceptance on a Gaussian of
# the checkpoint's parameter count is 0.97 (eps gamma ~ d^(-1/3)), which
# sets it wherever lambda_max is small (every depth's first checkpoints,
# depths 1-2 throughout).  Chains of 1000 draws after 1000 steps: the
# localisation relaxes in 1 / (eps gamma) = 60-110 steps at the MALA
# bound's step, and at 300 + 300 the flat checkpoints' R-hat was
# 1.010-1.013.  --min-relax 3 flags (short) a burn-in under 3 of those
# relaxation times: the sharp checkpoints of depths 4-7, whose lambda_max
# allows a step that relaxes in 400 to 110,000 steps.  nbeta and gamma
# stay devinterp's (32 / ln 32, 100): there depths 1-2 and every depth's
# first checkpoints have a local, healthy lambda-hat, and from step 170 on
# the tempered posterior of depths 3-6 (and of most of depth 7's) is not
# local (flagged nonlocal: its mean loss rise lambda-hat / nbeta passes
# ln p) at any nbeta we could reach;
# gamma 10^4 makes it local but reads depths 1-2 as 0 (plots/README.md,
# "The LLC's scale").
LLC_FLAGS ?= --chains 4 --draws 1000 --burn-in 1000 --epsilon auto --margin 100 --min-relax 3
# The transformers' step from each checkpoint too: the fixed 1e-5 of the
# earlier 4 chains of 200 + 200 steps relaxed the localisation in 1,000
# steps, five times the burn-in.  At epsilon auto (the MALA bound, eps
# gamma 0.005-0.008 at 0.2-0.6 million parameters) it relaxes in 131 steps
# at one block and 164-2,908 at two and three; 2 chains of 400 + 400 are
# the earlier 1,600 steps a checkpoint, with a burn-in of 3 relaxation
# times at one block (short flags the others).  At gamma 100 their
# posterior is not local around memorisation (nanda's with two blocks
# from initialisation), and 4 chains of 300 + 400 took 2.7 times the
# earlier records' time (loaded) for no healthy record (plots/README.md).
TFM_LLC_FLAGS ?= --chains 2 --draws 400 --burn-in 400 --epsilon auto --margin 100 --min-relax 3
# The calibration grid: epsilon auto's step times each scale (1 is the
# study's step, 4 past it, 1/4 under it) at each margin, times each nbeta
# (default: llc-estimate's, batch / ln batch), 2 chains of the study's
# length (at 300 + 300 steps depth 2's last checkpoint gives 5.4 at the
# study's own step against 6.1 from the study's chains: not yet relaxed).
# The study's own point is scale 1 at LLC_FLAGS's margin and the default
# nbeta.
LLC_CAL_SCALES ?= 4 2 1 0.5 0.25
LLC_CAL_MARGINS ?= 100
LLC_CAL_NBETAS ?= default 100
LLC_CAL_FLAGS ?= --chains 2
LLC_CAL_DEPTHS ?= $(DEPTHS)
# Per-layer LLC (--restrict each layer in turn) through training, seed 0:
# depth 2 is the depth that groks in the small study.
LLC_LAYER_DEPTHS ?= 2

ifeq ($(P),)
$(error STUDY=$(STUDY) is not a study: use STUDY=small or STUDY=full)
endif

R ?= results/$(STUDY)
PL ?= plots/$(STUDY)
STAMP := $(R)/.stamps

# Sweeps beyond depth and seed: WDS (weight decays) and FRACS (training
# fractions), each empty for the recipe's own value.  A swept value joins
# the run's name: results/<recipe>/d<depth>-s<seed>[_wd<wd>][_f<frac>], and
# the data set's: data/<recipe>[_f<frac>].safetensors.
WDS ?=
FRACS ?=
VARIANTS := $(foreach w,$(or $(WDS),@),$(foreach f,$(or $(FRACS),@),$(if $(WDS),_wd$(w))$(if $(FRACS),_f$(f))@))
variant = $(subst @,,$1)
FIRST_VARIANT := $(call variant,$(firstword $(VARIANTS)))

# The parts of a run's directory, <recipe>/d<depth>-s<seed>[_wd<wd>][_f<frac>].
recipe_of = $(firstword $(subst /, ,$1))
run_parts = $(subst _, ,$(notdir $1))
depth_of = $(patsubst d%,%,$(firstword $(subst -, ,$(firstword $(call run_parts,$1)))))
seed_of = $(patsubst s%,%,$(lastword $(subst -, ,$(firstword $(call run_parts,$1)))))
wd_of = $(patsubst wd%,%,$(filter wd%,$(call run_parts,$1)))
frac_of = $(patsubst f%,%,$(filter f%,$(call run_parts,$1)))
# The data set of a run: its recipe's, at its fraction when FRACS sweeps it.
data_of = $(call stem_of,$(call recipe_of,$1))$(if $(call frac_of,$1),_f$(call frac_of,$1))

# Per recipe: the training tool and its flags, the depths (transformer
# blocks for the transformers), seeds, steps and checkpoints; per data set
# stem (grok, seed, nanda, pizza): p and the training fraction.
PIZZA_RECIPES := $(PIZZA_ALPHAS:%=pizza-a%)
RECIPE_LIST := $(patsubst pizza,$(PIZZA_RECIPES),$(RECIPES))
TFM_RECIPES := nanda $(PIZZA_RECIPES)
grok_P := $(P)
grok_FRAC := $(FRAC)
grok_TRAIN := --tag grok
seed_P := $(P)
seed_FRAC := $(SEED_FRAC)
seed_TRAIN := --tag seed --encoding int --optim adam --wd 0
nanda_P := $(NANDA_P)
nanda_FRAC := $(NANDA_FRAC)
nanda_TRAIN := --tag nanda
pizza_P := $(PIZZA_P)
pizza_FRAC := $(PIZZA_FRAC)
define pizza_recipe
pizza-a$(1)_TRAIN := --tag pizza-a$(1) --no-eq-token --attention full --wd 2 --attn-coeff $(1)
pizza-a$(1)_DATA := pizza
pizza-a$(1)_DEPTHS := 1
endef
$(foreach a,$(PIZZA_ALPHAS),$(eval $(call pizza_recipe,$(a))))
nanda_DEPTHS := $(LAYERS)
family_of = $(if $(filter $(TFM_RECIPES),$1),tfm,mlp)
llc_flags_of = $(if $(filter $(TFM_RECIPES),$1),$(TFM_LLC_FLAGS),$(LLC_FLAGS))
hess_flags_of = $(if $(filter $(TFM_RECIPES),$1),$(TFM_HESS_FLAGS),$(HESS_FLAGS))
tool_of = $(if $(filter $(TFM_RECIPES),$1),train-transformer,train-mlp)
depth_flag = $(if $(filter $(TFM_RECIPES),$1),--layers,--depth)
depths_of = $(if $(filter $(TFM_RECIPES),$1),$($1_DEPTHS),$(DEPTHS))
seeds_of = $(if $(filter $(TFM_RECIPES),$1),$(TFM_SEEDS),$(SEEDS))
steps_of = $(if $(filter $(TFM_RECIPES),$1),$(TFM_STEPS),$(STEPS))
ckpts_of = $(if $(filter $(TFM_RECIPES),$1),$(TFM_CKPT_POINTS),$(CKPT_POINTS))
# The checkpoints gop-spectrum, llc-estimate and progress-measures read
# for run <recipe>/<dir>, one path a line: every one, or for a
# transformer step 0 and those from TFM_CKPT_FROM on (0: every one).
# Their transformer outputs depend on a stamp of it.
analysed_from = $(if $(filter $(TFM_RECIPES),$1),$(filter-out 0,$(TFM_CKPT_FROM)))
ckpt_list = ls $(R)/$1/ckpt/*.safetensors$(if $(call analysed_from,$(call recipe_of,$1)), \
    | awk -F step- '$$NF + 0 == 0 || $$NF + 0 >= $(TFM_CKPT_FROM)')
ckpt_stamp = $(if $(filter $(TFM_RECIPES),$(call recipe_of,$1)),$(STAMP)/ckpts-tfm)
stem_of = $(or $($1_DATA),$1)
# gen-modadd's flags for data/<stem>.safetensors, stem <recipe's stem>[_f<frac>].
data_flags = -p $($(firstword $(subst _, ,$1))_P) --frac $(or $(patsubst f%,%,$(filter f%,$(subst _, ,$1))),$($(firstword $(subst _, ,$1))_FRAC))

RUNDIRS := $(foreach r,$(RECIPE_LIST),$(foreach d,$(call depths_of,$(r)),$(foreach s,$(call seeds_of,$(r)),$(foreach v,$(VARIANTS),$(R)/$(r)/d$(d)-s$(s)$(call variant,$(v))))))
LOGS := $(RUNDIRS:%=%/log.jsonl)
HESS := $(RUNDIRS:%=%/hessian.jsonl)
GOPS := $(RUNDIRS:%=%/gop.jsonl)
GGNS := $(RUNDIRS:%=%/ggn.jsonl)
# (pizza in LLC_RECIPES or PM_RECIPES names every pizza-a<alpha>.)
LLC_LIST := $(filter $(RECIPE_LIST),$(patsubst pizza,$(PIZZA_RECIPES),$(LLC_RECIPES)))
PM_LIST := $(filter $(RECIPE_LIST),$(patsubst pizza,$(PIZZA_RECIPES),$(PM_RECIPES)))
LLC_RUNDIRS := $(foreach r,$(LLC_LIST),$(filter $(R)/$(r)/%,$(RUNDIRS)))
PM_RUNDIRS := $(foreach r,$(PM_LIST),$(filter $(R)/$(r)/%,$(RUNDIRS)))
PMS := $(PM_RUNDIRS:%=%/progress.jsonl)
# The seed recipe's integer inputs have no embedding to take the spectrum of.
FOURIER_LIST := $(filter-out seed,$(PM_LIST))
LLCS := $(LLC_RUNDIRS:%=%/llc.jsonl)
TSVS := $(foreach d,$(RUNDIRS),$(d)/curves.tsv $(d)/hessian.tsv $(d)/gop.tsv $(d)/blocks.tsv $(d)/ggn.tsv) $(LLC_RUNDIRS:%=%/llc.tsv) $(PM_RUNDIRS:%=%/progress.tsv)
# The study's own margin (llc-estimate's default 20 when LLC_FLAGS names none).
LLC_MARGIN := $(or $(lastword $(patsubst --margin=%,%,$(filter --margin=%,$(subst --margin ,--margin=,$(LLC_FLAGS))))),20)
LLC_CAL_RECIPE := $(firstword $(filter-out $(TFM_RECIPES),$(LLC_LIST)))
llc_cal_run = $(R)/$(LLC_CAL_RECIPE)/d$(1)-s$(firstword $(SEEDS))$(FIRST_VARIANT)
LLC_CAL := $(if $(LLC_CAL_RECIPE),$(R)/llc-calibration.tsv)
LLC_LAYERS := $(if $(LLC_CAL_RECIPE),$(foreach d,$(filter $(DEPTHS),$(LLC_LAYER_DEPTHS)),$(call llc_cal_run,$(d))/llc-layers.tsv))
# Dead units are the MLP's (ReLU units of the hidden layers).
plot_kinds = accuracy loss sharpness $(if $(filter $(TFM_RECIPES),$1),,dead-units) grad-norm gop-spectral gop-rank gop-spectrum
PLOTS := $(foreach r,$(RECIPE_LIST),$(foreach k,$(call plot_kinds,$(r)),$(PL)/$(r)-$(k).png)) \
         $(foreach r,$(RECIPE_LIST),$(PL)/$(r)-layers.png $(PL)/$(r)-ggn.png) \
         $(foreach r,$(LLC_LIST),$(PL)/$(r)-llc.png) \
         $(foreach r,$(PM_LIST),$(PL)/$(r)-progress.png) $(foreach r,$(FOURIER_LIST),$(PL)/$(r)-fourier.png) \
         $(if $(LLC_CAL),$(PL)/llc-calibration.png) $(if $(LLC_LAYERS),$(PL)/$(LLC_CAL_RECIPE)-llc-layers.png) \
         $(PL)/by-depth.png

DATA := $(sort $(foreach d,$(RUNDIRS),$(R)/data/$(call data_of,$(d:$(R)/%=%)).safetensors))
# With a sweep, groups by every swept key too (by-depth pools over them).
comma := ,
SWEPT := $(if $(WDS),$(comma)wd)$(if $(FRACS),$(comma)frac)
BY_GROUP := $(if $(SWEPT),$(R)/by-group.tsv $(R)/by-group.jsonl)

# At the end, the by-depth table and where the plots are, every time: it is
# what the study found.
study: $(DATA) $(LOGS) $(TSVS) $(LLC_CAL) $(LLC_LAYERS) $(R)/runs.jsonl $(R)/runs.tsv $(R)/by-depth.tsv $(R)/by-depth.jsonl \
    $(BY_GROUP) $(PLOTS) $(R)/by-depth.txt
	@echo
	@echo 'The study in $(R): p = $(P), $(STEPS) steps, depths $(DEPTHS), seeds $(SEEDS).'
	$(if $(filter nanda,$(RECIPE_LIST)),@echo 'nanda: p = $(NANDA_P)$(comma) $(TFM_STEPS) steps$(comma) layers $(LAYERS)$(comma) seeds $(TFM_SEEDS).')
	$(if $(filter $(PIZZA_RECIPES),$(RECIPE_LIST)),@echo 'pizza: p = $(PIZZA_P)$(comma) $(TFM_STEPS) steps$(comma) one layer$(comma) alpha $(PIZZA_ALPHAS)$(comma) seeds $(TFM_SEEDS).')
	@echo 'Memorised, generalised: seeds whose train, resp. test, accuracy reached 0.99.'
	$(if $(filter $(TFM_RECIPES),$(RECIPE_LIST)),@echo 'Depth: hidden layers of an MLP$(comma) blocks of a transformer.')
	@echo
	@cat $(R)/by-depth.txt
	@echo
	@echo 'Plots: $(PL)/ ($(words $(PLOTS)) files; plots/README.md says what each shows).'
	@echo 'Tables: $(R)/runs.tsv (per run), $(R)/by-depth.tsv (per recipe and depth).'

# A stamp's content is its parameters; it is rewritten only when they change.
define stamp
@mkdir -p $(@D)
@echo '$(1)' > $@+
@if cmp -s $@+ $@; then rm -f $@+; else mv -f $@+ $@; fi
endef

$(STAMP)/data-%: FORCE
	$(call stamp,$(call data_flags,$*))
define recipe_stamps
$(STAMP)/train-$(1): FORCE
	$$(call stamp,$(call tool_of,$(1)) $$($(1)_TRAIN) $$(TRAIN_FLAGS) --steps $(call steps_of,$(1)) --ckpt-points $(call ckpts_of,$(1)))
endef
$(foreach r,$(RECIPE_LIST),$(eval $(call recipe_stamps,$(r))))
$(STAMP)/hess-mlp: FORCE
	$(call stamp,$(HESS_FLAGS))
$(STAMP)/hess-tfm: FORCE
	$(call stamp,$(TFM_HESS_FLAGS))
$(STAMP)/ggn-mlp: FORCE
	$(call stamp,$(GGN_FLAGS) $(if $(filter mlp,$(GGN_BLOCKS)),$(GGN_BLOCK_FLAGS)))
$(STAMP)/ggn-tfm: FORCE
	$(call stamp,$(GGN_FLAGS) $(if $(filter tfm,$(GGN_BLOCKS)),$(GGN_BLOCK_FLAGS)))
$(STAMP)/ckpts-tfm: FORCE
	$(call stamp,$(TFM_CKPT_FROM))
$(STAMP)/gop: FORCE
	$(call stamp,$(GOP_FLAGS))
$(STAMP)/llc-mlp: FORCE
	$(call stamp,$(LLC_FLAGS))
$(STAMP)/llc-tfm: FORCE
	$(call stamp,$(TFM_LLC_FLAGS))
$(STAMP)/pm: FORCE
	$(call stamp,$(PM_FLAGS))
$(STAMP)/llc-cal: FORCE
	$(call stamp,$(LLC_FLAGS) $(LLC_CAL_FLAGS) $(LLC_CAL_SCALES) $(LLC_CAL_MARGINS) $(LLC_CAL_NBETAS) $(LLC_CAL_RECIPE))
$(STAMP)/plots: FORCE
	$(call stamp,$(DEPTHS) $(LAYERS) $(RECIPE_LIST) $(FIRST_VARIANT))

$(R)/data/%.safetensors: $(STAMP)/data-% $(O)/bin/gen-modadd
	@mkdir -p $(@D)
	$(Q)$(RUN) $(O)/bin/gen-modadd $(call data_flags,$*) -o $@

# Training: exit 3 (diverged) is a result, not a failure of the study.
# pipeline/run-line renames the log into place and prints the run's line
# ([k/N] name, memorised and generalised steps, final test accuracy, time).
.SECONDEXPANSION:
$(R)/%/log.jsonl: $(R)/data/$$(call data_of,$$*).safetensors \
    $(STAMP)/train-$$(firstword $$(subst /, ,$$*)) $(O)/bin/$$(call tool_of,$$(firstword $$(subst /, ,$$*))) | $(O)/.study-deps
	@rm -rf $(@D)/ckpt
	@mkdir -p $(@D)
	$(Q)$(RUN) $(O)/bin/$(call tool_of,$(call recipe_of,$*)) --data $< $(call depth_flag,$(call recipe_of,$*)) $(call depth_of,$*) \
	    --seed $(call seed_of,$*) --steps $(call steps_of,$(call recipe_of,$*)) --ckpt-dir $(@D)/ckpt \
	    --ckpt-points $(call ckpts_of,$(call recipe_of,$*)) --quiet \
	    $($(call recipe_of,$*)_TRAIN) $(TRAIN_FLAGS) $(if $(call wd_of,$*),--wd $(call wd_of,$*)) > $@+ || [ $$? -eq 3 ]
	@pipeline/run-line $@+ $@ '$(call recipe_of,$*) $(subst -, ,$(subst _, ,$(notdir $*)))' $(LOGS)

$(R)/%/hessian.jsonl: $(R)/%/log.jsonl $(STAMP)/hess-$$(call family_of,$$(firstword $$(subst /, ,$$*))) $(O)/bin/hess-eig
	$(Q)ls $(@D)/ckpt/*.safetensors | $(RUN) $(O)/bin/hess-eig \
	    --data $(R)/data/$(call data_of,$*).safetensors $(call hess_flags_of,$(call recipe_of,$*)) > $@+
	@mv -f $@+ $@

# The Gauss-Newton matrix's spectra on the same checkpoints (per block for
# the families in GGN_BLOCKS).
$(R)/%/ggn.jsonl: $(R)/%/log.jsonl $(STAMP)/ggn-$$(call family_of,$$(firstword $$(subst /, ,$$*))) $(O)/bin/hess-eig
	$(Q)ls $(@D)/ckpt/*.safetensors | $(RUN) $(O)/bin/hess-eig \
	    --data $(R)/data/$(call data_of,$*).safetensors $(GGN_FLAGS) \
	    $(if $(filter $(call family_of,$(call recipe_of,$*)),$(GGN_BLOCKS)),$(GGN_BLOCK_FLAGS)) > $@+
	@mv -f $@+ $@

$(R)/%/gop.jsonl: $(R)/%/log.jsonl $(STAMP)/gop $$(call ckpt_stamp,$$*) $(O)/bin/gop-spectrum
	@rm -rf $(@D)/spectrum
	@mkdir -p $(@D)/spectrum
	$(Q)$(call ckpt_list,$*) | $(RUN) $(O)/bin/gop-spectrum \
	    --data $(R)/data/$(call data_of,$*).safetensors $(GOP_FLAGS) \
	    --spectrum $(@D)/spectrum/step-{step}.safetensors > $@+
	@mv -f $@+ $@

$(R)/%/llc.jsonl: $(R)/%/log.jsonl $(STAMP)/llc-$$(call family_of,$$(firstword $$(subst /, ,$$*))) $$(call ckpt_stamp,$$*) $(O)/bin/llc-estimate
	$(Q)$(call ckpt_list,$*) | $(RUN) $(O)/bin/llc-estimate \
	    --data $(R)/data/$(call data_of,$*).safetensors $(call llc_flags_of,$(call recipe_of,$*)) > $@+
	@mv -f $@+ $@

# The epsilon x nbeta grid on the last checkpoint of one depth (devinterp's
# epsilon-beta analysis): where lambda-hat plateaus in epsilon and the
# chains are healthy is the range to trust; the study's point is marked.
$(R)/llc-calibration-d%.tsv: $$(call llc_cal_run,$$*)/log.jsonl $(STAMP)/llc-cal $(O)/bin/llc-estimate pipeline/llc-cal.jq
	$(Q)set -eo pipefail; run=$(call llc_cal_run,$*); ck=$$(ls $$run/ckpt/*.safetensors | tail -1); \
	for nb in $(LLC_CAL_NBETAS); do for m in $(LLC_CAL_MARGINS); do for f in $(LLC_CAL_SCALES); do \
	    $(RUN) $(O)/bin/llc-estimate --data $(R)/data/$(call data_of,$(LLC_CAL_RECIPE)/d$*-s$(firstword $(SEEDS))$(FIRST_VARIANT)).safetensors \
	        $(LLC_FLAGS) $(LLC_CAL_FLAGS) --epsilon auto --margin $$m --eps-scale $$f \
	        $$([ $$nb = default ] || echo --nbeta $$nb) $$ck \
	    | jq -nr --arg depth $* --arg chosen $$([ $$nb = default ] && [ $$m = $(LLC_MARGIN) ] && [ $$f = 1 ] && echo 1 || echo 0) -f pipeline/llc-cal.jq; \
	done; done; done | awk 'NR == 1 || !/^depth/' > $@+
	@mv -f $@+ $@
$(R)/llc-calibration.tsv: $(foreach d,$(filter $(DEPTHS),$(LLC_CAL_DEPTHS)),$(R)/llc-calibration-d$(d).tsv)
	$(Q)awk 'FNR > 1 || NR == 1' $^ > $@+ && mv -f $@+ $@

# One layer's LLC at every checkpoint, the others held at w* (--restrict),
# for each layer in turn.
$(R)/%/llc-layers.tsv: $(R)/%/log.jsonl $(STAMP)/llc-mlp $(O)/bin/llc-estimate pipeline/llc.jq
	$(Q)set -eo pipefail; for l in $$(seq 0 $(call depth_of,$*)); do \
	    ls $(@D)/ckpt/*.safetensors | $(RUN) $(O)/bin/llc-estimate --data $(R)/data/$(call data_of,$*).safetensors \
	        $(LLC_FLAGS) --restrict layers.$$l | jq -nr --arg e '' -f pipeline/llc.jq | sed "s/^/$$l\t/"; \
	done | awk 'NR == 1 || !/^[0-9]+\tstep/' | sed '1s/^0/layer/' > $@+
	@mv -f $@+ $@

# The mechanistic measures (restricted and excluded loss, key frequencies,
# the embedding's Fourier spectrum, the pizza measures) per checkpoint.
$(R)/%/progress.jsonl: $(R)/%/log.jsonl $(STAMP)/pm $$(call ckpt_stamp,$$*) $(O)/bin/progress-measures
	$(Q)$(call ckpt_list,$*) | $(RUN) $(O)/bin/progress-measures \
	    --data $(R)/data/$(call data_of,$*).safetensors $(PM_FLAGS) > $@+
	@mv -f $@+ $@

$(R)/%/progress.tsv: $(R)/%/progress.jsonl pipeline/progress.jq
	$(Q)jq -nr -f pipeline/progress.jq $< > $@+ && mv -f $@+ $@
# The embedding's spectrum at the first, memorisation and last checkpoints.
$(R)/%/fourier.tsv: $(R)/%/progress.jsonl $(R)/%/log.jsonl pipeline/fourier.jq
	$(Q)jq -nr --slurpfile log $(@D)/log.jsonl -f pipeline/fourier.jq $< > $@+ && mv -f $@+ $@

$(R)/%/curves.tsv: $(R)/%/log.jsonl pipeline/curves.jq
	$(Q)jq -nr -f pipeline/curves.jq $< > $@+ && mv -f $@+ $@
$(R)/%/hessian.tsv: $(R)/%/hessian.jsonl pipeline/hessian.jq
	$(Q)jq -nr -f pipeline/hessian.jq $< > $@+ && mv -f $@+ $@
$(R)/%/blocks.tsv: $(R)/%/hessian.jsonl pipeline/blocks.jq
	$(Q)jq -nr -f pipeline/blocks.jq $< > $@+ && mv -f $@+ $@
$(R)/%/ggn.tsv: $(R)/%/ggn.jsonl $(R)/%/hessian.jsonl pipeline/ggn.jq
	$(Q)jq -nr --slurpfile hess $(@D)/hessian.jsonl -f pipeline/ggn.jq $< > $@+ && mv -f $@+ $@
$(R)/%/gop.tsv: $(R)/%/gop.jsonl pipeline/gop.jq
	$(Q)jq -nr -f pipeline/gop.jq $< > $@+ && mv -f $@+ $@
$(R)/%/llc.tsv: $(R)/%/llc.jsonl pipeline/llc.jq
	$(Q)jq -nr --arg e '' -f pipeline/llc.jq $< > $@+ && mv -f $@+ $@

SUMMARY_INPUTS := $(LOGS) $(HESS) $(GOPS) $(LLCS) $(PMS)

$(R)/runs.jsonl: $(SUMMARY_INPUTS) $(O)/bin/summarize
	$(Q)$(O)/bin/summarize $(SUMMARY_INPUTS) > $@+ && mv -f $@+ $@
$(R)/runs.tsv: $(SUMMARY_INPUTS) $(O)/bin/summarize
	$(Q)$(O)/bin/summarize --tsv $(SUMMARY_INPUTS) > $@+ && mv -f $@+ $@
$(R)/by-depth.jsonl: $(SUMMARY_INPUTS) $(O)/bin/summarize
	$(Q)$(O)/bin/summarize --group-by recipe,depth $(SUMMARY_INPUTS) > $@+ && mv -f $@+ $@
$(R)/by-depth.tsv: $(SUMMARY_INPUTS) $(O)/bin/summarize
	$(Q)$(O)/bin/summarize --group-by recipe,depth --tsv $(SUMMARY_INPUTS) > $@+ && mv -f $@+ $@
$(R)/by-group.jsonl: $(SUMMARY_INPUTS) $(O)/bin/summarize
	$(Q)$(O)/bin/summarize --group-by recipe,depth$(SWEPT) $(SUMMARY_INPUTS) > $@+ && mv -f $@+ $@
$(R)/by-group.tsv: $(SUMMARY_INPUTS) $(O)/bin/summarize
	$(Q)$(O)/bin/summarize --group-by recipe,depth$(SWEPT) --tsv $(SUMMARY_INPUTS) > $@+ && mv -f $@+ $@

# A run's GOP spectrum at initialisation, memorisation, generalisation
# (when reached) and the end, side by side (largest first).
$(R)/%/spectra.tsv: $(R)/%/gop.jsonl $(R)/%/log.jsonl pipeline/spectra pipeline/st-column
	$(Q)pipeline/spectra $(@D) > $@+ && mv -f $@+ $@

# gnuplot warns of every curve without a point (a depth that never
# generalised has no generalisation marker) and of an axis over one value
# (a recipe with one seed at one depth): expected here, so quiet unless V=1.
ifeq ($(V),1)
PLOT_QUIET :=
else
PLOT_QUIET := 2> >(grep -vE 'warning: Skipping data file with no valid points|Warning: empty [xy]2? range' >&2)
endif

# A recipe's plots draw its first seed at every depth (blocks, for the
# transformers); the GOP spectrum plot draws depth 2 (or the one depth).
seed1 = $(firstword $(call seeds_of,$1))
spec_depth = $(if $(filter 2,$(call depths_of,$1)),2,$(firstword $(call depths_of,$1)))
unit_of = $(if $(filter $(TFM_RECIPES),$1),layers,depth)
plot_vars = dir='$(R)/$(1)'; seed='$(call seed1,$(1))'; suffix='$(FIRST_VARIANT)'; depths='$(call depths_of,$(1))'; \
    recipe='$(1)'; unit='$(call unit_of,$(1))'; sdepth='$(call spec_depth,$(1))'
run1 = $(R)/$(1)/d$(2)-s$(call seed1,$(1))$(FIRST_VARIANT)

define plot_rule
$(PL)/$(1)-%.png: pipeline/plot-%.gp pipeline/style.gp $(STAMP)/plots \
    $(foreach d,$(call depths_of,$(1)),$(call run1,$(1),$(d))/curves.tsv \
    $(call run1,$(1),$(d))/hessian.tsv $(call run1,$(1),$(d))/gop.tsv) \
    $(call run1,$(1),$(call spec_depth,$(1)))/spectra.tsv $(R)/runs.tsv | $(O)/.study-deps
	@mkdir -p $$(@D)
	$(Q)gnuplot -e "$(call plot_vars,$(1)); runs='$(R)/runs.tsv'; out='$$@+'" \
	    pipeline/plot-$$*.gp $(PLOT_QUIET) && mv -f $$@+ $$@
endef
$(foreach r,$(RECIPE_LIST),$(eval $(call plot_rule,$(r))))

# (Explicit targets: the plot_rule pattern above would match these too.)
define llc_plot_rule
$(PL)/$(1)-llc.png: pipeline/plot-llc.gp pipeline/style.gp $(STAMP)/plots \
    $(foreach d,$(call depths_of,$(1)),$(call run1,$(1),$(d))/llc.tsv) | $(O)/.study-deps
	@mkdir -p $$(@D)
	$(Q)gnuplot -e "$(call plot_vars,$(1)); out='$$@+'" \
	    pipeline/plot-llc.gp $(PLOT_QUIET) && mv -f $$@+ $$@
endef
$(foreach r,$(LLC_LIST),$(eval $(call llc_plot_rule,$(r))))

# Nanda's figure with our curvature on it, and the embedding's spectrum.
define pm_plot_rule
$(PL)/$(1)-progress.png: pipeline/plot-progress.gp pipeline/style.gp $(STAMP)/plots \
    $(foreach d,$(call depths_of,$(1)),$(call run1,$(1),$(d))/curves.tsv $(call run1,$(1),$(d))/progress.tsv \
    $(call run1,$(1),$(d))/hessian.tsv $(if $(filter $(1),$(LLC_LIST)),$(call run1,$(1),$(d))/llc.tsv)) | $(O)/.study-deps
	@mkdir -p $$(@D)
	$(Q)gnuplot -e "$(call plot_vars,$(1)); llc=$(if $(filter $(1),$(LLC_LIST)),1,0); out='$$@+'" \
	    pipeline/plot-progress.gp $(PLOT_QUIET) && mv -f $$@+ $$@
endef
define fourier_plot_rule
$(PL)/$(1)-fourier.png: pipeline/plot-fourier.gp pipeline/style.gp $(STAMP)/plots \
    $(foreach d,$(call depths_of,$(1)),$(call run1,$(1),$(d))/fourier.tsv) | $(O)/.study-deps
	@mkdir -p $$(@D)
	$(Q)gnuplot -e "$(call plot_vars,$(1)); out='$$@+'" \
	    pipeline/plot-fourier.gp $(PLOT_QUIET) && mv -f $$@+ $$@
endef
$(foreach r,$(PM_LIST),$(eval $(call pm_plot_rule,$(r))))

# Which layer gets sharp (per tensor group λ_1, one panel per depth) and
# the Gauss-Newton/Hessian ratio: explicit, as the LLC's.
define curv_plot_rule
$(PL)/$(1)-layers.png: pipeline/plot-layers.gp pipeline/style.gp $(STAMP)/plots $(R)/runs.tsv \
    $(foreach d,$(call depths_of,$(1)),$(call run1,$(1),$(d))/blocks.tsv $(call run1,$(1),$(d))/hessian.tsv) | $(O)/.study-deps
	@mkdir -p $$(@D)
	$(Q)gnuplot -e "$(call plot_vars,$(1)); runs='$(R)/runs.tsv'; out='$$@+'" \
	    pipeline/plot-layers.gp $(PLOT_QUIET) && mv -f $$@+ $$@
$(PL)/$(1)-ggn.png: pipeline/plot-ggn.gp pipeline/style.gp $(STAMP)/plots $(R)/runs.tsv \
    $(foreach d,$(call depths_of,$(1)),$(call run1,$(1),$(d))/ggn.tsv) | $(O)/.study-deps
	@mkdir -p $$(@D)
	$(Q)gnuplot -e "$(call plot_vars,$(1)); runs='$(R)/runs.tsv'; out='$$@+'" \
	    pipeline/plot-ggn.gp $(PLOT_QUIET) && mv -f $$@+ $$@
endef
$(foreach r,$(RECIPE_LIST),$(eval $(call curv_plot_rule,$(r))))
$(foreach r,$(FOURIER_LIST),$(eval $(call fourier_plot_rule,$(r))))

$(PL)/llc-calibration.png: pipeline/plot-llc-calibration.gp pipeline/style.gp $(R)/llc-calibration.tsv | $(O)/.study-deps
	@mkdir -p $(@D)
	$(Q)gnuplot -e "tsv='$(R)/llc-calibration.tsv'; recipe='$(LLC_CAL_RECIPE)'; depths='$(filter $(DEPTHS),$(LLC_CAL_DEPTHS))'; out='$@+'" \
	    pipeline/plot-llc-calibration.gp $(PLOT_QUIET) && mv -f $@+ $@
$(PL)/$(LLC_CAL_RECIPE)-llc-layers.png: pipeline/plot-llc-layers.gp pipeline/style.gp $(LLC_LAYERS) | $(O)/.study-deps
	@mkdir -p $(@D)
	$(Q)gnuplot -e "files='$(LLC_LAYERS)'; recipe='$(LLC_CAL_RECIPE)'; out='$@+'" \
	    pipeline/plot-llc-layers.gp $(PLOT_QUIET) && mv -f $@+ $@

$(R)/by-depth.txt: $(R)/by-depth.jsonl pipeline/by-depth-table.jq pipeline/format.jq
	$(Q)jq -rs -L pipeline -f pipeline/by-depth-table.jq $< > $@+ && mv -f $@+ $@

$(PL)/by-depth.png: pipeline/by-depth.gp pipeline/style.gp $(R)/by-depth.tsv | $(O)/.study-deps
	@mkdir -p $(@D)
	$(Q)gnuplot -e "tsv='$(R)/by-depth.tsv'; recipes='$(RECIPE_LIST)'; out='$@+'" pipeline/by-depth.gp $(PLOT_QUIET) && mv -f $@+ $@

# Files only pattern rules name are intermediate to make, which would delete
# them after use and remake them next time: keep them.
.SECONDARY: $(patsubst $(R)/data/%.safetensors,$(STAMP)/data-%,$(DATA)) $(GGNS) \
    $(foreach r,$(RECIPE_LIST),$(call run1,$(r),$(call spec_depth,$(r)))/spectra.tsv) \
    $(foreach r,$(FOURIER_LIST),$(foreach d,$(call depths_of,$(r)),$(call run1,$(r),$(d))/fourier.tsv))
