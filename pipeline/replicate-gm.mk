# pipeline/replicate-gm.mk: enerrio/grokking-mlp's experiments 1-3 (make
# replicate-gm), included by the top-level Makefile.
#
# The source's configuration (config.yaml, data.py, net.py, train.py):
# p = 97, vocabulary p + 2 ("x + y =" as four tokens), embedding 128 shared
# by the four positions, Linear(512, 128), ReLU, Linear(128, 99), Kaiming
# normal weights, zero biases, N(0, 1) embedding (train-mlp --embed 128
# --depth 1 --width 128); cross-entropy on float64 logits; AdamW lr 1e-3,
# betas (0.9, 0.98), eps 1e-8, weight decay 0.01 (PyTorch's default, the
# source sets none); batch 512, reshuffled every epoch, the last partial
# batch kept.  Seeds 21, 5, 10, 30, 42 (config.yaml; exp1-3 used one).
#   exp1  random 80/20 split, 100,000 optimisation steps
#   exp2  random 80/20 split, 20,000 epochs (300,000 steps)
#   exp3  labels < 20 held out (data.py: mask = y < 20), 20,000 epochs
# torch's random_split([0.8, 0.2]) of the 9,409 pairs gives 7,528/1,881
# (floors, then the remainder to the first part); gen-modadd keeps
# round(frac * n), so GM_FRAC 0.8001 gives the same 7,528.
#
# Our analyses on top: hess-eig and llc-estimate at every checkpoint, and
# gop-spectrum on the random split's runs (exp1, exp2) over GM_GOP_ROWS of
# their 7,528 training rows: the n x n Gram of the whole set is two 450 MB
# matrices per checkpoint through the generic per-example route (this
# family has no closed-form Gram).  The subsample is gen-modadd's own: the
# same seed with frac = GM_GOP_ROWS / p^2 keeps the first GM_GOP_ROWS pairs
# of the same seeded permutation, which are the first GM_GOP_ROWS training
# rows of the run's split (a uniform sample of them; tests/replicate-gm.bats
# checks the prefix).  exp3's label split has no seeded order to take a
# prefix of (its training rows are in (x, y) order), so exp3 has no GOP.
#
# GM_EPOCHS shortens exp2 and exp3 (default 2,000 epochs, 30,000 steps);
# GM_EPOCHS=20000 is the source's length.  GM_STEPS is exp1's (default the
# source's 100,000).  Every command runs through $(RUN) (CLUSTER=slurm), and
# every output depends on a stamp of its parameters, as study.mk's do.

GM_P ?= 97
GM_FRAC ?= 0.8001
GM_HOLDOUT ?= 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19
GM_SEEDS ?= 21
GM_STEPS ?= 100000
GM_EPOCHS ?= 2000
# one log point every 10 epochs (150 steps): each costs about an epoch
GM_LOG_EVERY ?= 150
GM_CKPT_POINTS ?= 6
GM_TRAIN ?= --embed 128 --depth 1 --width 128 --optim adamw --lr 1e-3 \
    --beta1 0.9 --beta2 0.98 --eps 1e-8 --wd 0.01 --batch 512
GM_HESS_FLAGS ?= --top 3 --converge value
# The LLC's step from each checkpoint, as the study's chains (study.mk's
# LLC_FLAGS): at 91,107 parameters the MALA bound sets it at every
# checkpoint, epsilon ~ 1e-4 (9e-5 at step 0, where lambda_max = 38), and
# the same-minibatch acceptance is 0.96-0.97; the earlier fixed 1e-3 was
# accepted at 0.53-0.76 (all 35 records of the default and full-length
# runs flagged mala).  A relaxation time of
# 1 / (epsilon gamma) = 100-113 steps, so the burn-in of 1000 is 9-10 of
# them; what needs the length is the draws: the loss's slow directions up
# to step 486 (epoch 32) gave R-hat 1.011-1.047 and drift |z| up to 11 at
# 1000 draws (exp3's R-hat over 1.01 at every checkpoint), and on exp2's
# first five checkpoints 1.013-1.022 at 4000 and 1.006-1.009 at 6000;
# 8000 keep R-hat <= 1.007 and |z| <= 2.1 at every checkpoint of exp1-3.
# 4 x 9000 steps a record, 17-21 s (6 minutes for the 21 records at the
# default length, 22 times the steps of the earlier 4 x 400).  What stays
# flagged (exploded) is the posterior's, not the step's (plots/README.md,
# "replicate-gm").
GM_LLC_FLAGS ?= --chains 4 --draws 8000 --burn-in 1000 --epsilon auto --margin 100 --min-relax 3
GM_GOP_ROWS ?= 1500
GM_GOP_FLAGS ?= --top 10

GM_R ?= results/replicate-gm
GM_PL ?= plots/replicate-gm
GM_STAMP := $(GM_R)/.stamps
GM_EXPS := exp1 exp2 exp3
GM_RUNS := $(foreach e,$(GM_EXPS),$(foreach s,$(GM_SEEDS),$(e)/s$(s)))

# Per experiment: its data set and its length.
gm_data_exp1 := random
gm_data_exp2 := random
gm_data_exp3 := label
gm_len_exp1 = --steps $(GM_STEPS)
gm_len_exp2 = --epochs $(GM_EPOCHS)
gm_len_exp3 = --epochs $(GM_EPOCHS)
gm_flags_random = -p $(GM_P) --frac $(GM_FRAC)
gm_flags_label = -p $(GM_P) --split label --holdout $(GM_HOLDOUT)
gm_exp = $(firstword $(subst /, ,$1))
gm_seed = $(patsubst s%,%,$(notdir $1))
gm_data_of = $(GM_R)/data/$(gm_data_$(call gm_exp,$1))-s$(call gm_seed,$1).safetensors

GM_LOGS := $(GM_RUNS:%=$(GM_R)/%/log.jsonl)
GM_CURVES := $(GM_RUNS:%=$(GM_R)/%/curves.tsv)
GM_HESS := $(GM_RUNS:%=$(GM_R)/%/hessian.tsv)
GM_LLCS := $(GM_RUNS:%=$(GM_R)/%/llc.tsv)
# The runs on the random split get a GOP (exp3's label split has no seeded order to subsample).
GM_GOP_RUNS := $(foreach r,$(GM_RUNS),$(if $(filter random,$(gm_data_$(call gm_exp,$(r)))),$(r)))
GM_GOPS := $(GM_GOP_RUNS:%=$(GM_R)/%/gop.tsv)
# gen-modadd keeps round(frac * p^2) pairs: frac = rows / p^2 keeps exactly GM_GOP_ROWS.
gm_gop_frac := $(shell awk 'BEGIN { printf "%.12f", $(GM_GOP_ROWS) / ($(GM_P) * $(GM_P)) }')
GM_PLOT_KINDS := losslinear losslog acclinear acclog specnorm update
GM_PLOTS := $(foreach r,$(GM_RUNS),$(foreach k,$(GM_PLOT_KINDS) pca,$(GM_PL)/$(subst /,-,$(r))-$(k).png))

# Kept although only intermediate: the data sets, the stamps and the JSON-lines.
.SECONDARY: $(sort $(foreach r,$(GM_RUNS),$(call gm_data_of,$(r)))) \
    $(GM_RUNS:%=$(GM_R)/%/hessian.jsonl) $(GM_RUNS:%=$(GM_R)/%/llc.jsonl) \
    $(GM_GOP_RUNS:%=$(GM_R)/%/gop.jsonl) $(GM_STAMP)/gop $(GM_STAMP)/data-gop \
    $(sort $(foreach r,$(GM_GOP_RUNS),$(GM_R)/data/gop-s$(call gm_seed,$(r)).safetensors)) \
    $(GM_STAMP)/data-random $(GM_STAMP)/data-label $(GM_EXPS:%=$(GM_STAMP)/train-%) \
    $(GM_STAMP)/hess $(GM_STAMP)/llc

.PHONY: replicate-gm replicate-gm-train
replicate-gm: $(GM_CURVES) $(GM_HESS) $(GM_LLCS) $(GM_GOPS) $(GM_PLOTS) $(GM_R)/summary.tsv
	@echo 'replicate-gm: $(GM_R)/summary.tsv, plots in $(GM_PL)/ (plots/README.md, "replicate-gm").'
replicate-gm-train: $(GM_LOGS)

define gm_stamp
@mkdir -p $(@D)
@echo '$(1)' > $@+
@if cmp -s $@+ $@; then rm -f $@+; else mv -f $@+ $@; fi
endef

$(GM_STAMP)/data-%: FORCE
	$(call gm_stamp,$(gm_flags_$*))
$(GM_STAMP)/train-%: FORCE
	$(call gm_stamp,$(GM_TRAIN) $(gm_len_$*) --log-every $(GM_LOG_EVERY) --ckpt-points $(GM_CKPT_POINTS))
$(GM_STAMP)/hess: FORCE
	$(call gm_stamp,$(GM_HESS_FLAGS))
$(GM_STAMP)/llc: FORCE
	$(call gm_stamp,$(GM_LLC_FLAGS))
$(GM_STAMP)/gop: FORCE
	$(call gm_stamp,$(GM_GOP_FLAGS))
$(GM_STAMP)/data-gop: FORCE
	$(call gm_stamp,-p $(GM_P) --frac $(gm_gop_frac))

# The random split's permutation is seeded with the run's seed, as the
# source seeds random_split with it; the label split has no randomness.
$(GM_R)/data/random-s%.safetensors: $(GM_STAMP)/data-random $(O)/bin/gen-modadd
	@mkdir -p $(@D)
	$(Q)$(RUN) $(O)/bin/gen-modadd $(gm_flags_random) --seed $* -o $@
$(GM_R)/data/gop-s%.safetensors: $(GM_STAMP)/data-gop $(O)/bin/gen-modadd
	@mkdir -p $(@D)
	$(Q)$(RUN) $(O)/bin/gen-modadd -p $(GM_P) --frac $(gm_gop_frac) --seed $* -o $@
$(GM_R)/data/label-s%.safetensors: $(GM_STAMP)/data-label $(O)/bin/gen-modadd
	@mkdir -p $(@D)
	$(Q)$(RUN) $(O)/bin/gen-modadd $(gm_flags_label) -o $@


.SECONDEXPANSION:
$(GM_R)/%/log.jsonl: $$(call gm_data_of,$$*) $(GM_STAMP)/train-$$(call gm_exp,$$*) $(O)/bin/train-mlp
	@rm -rf $(@D)/ckpt
	@mkdir -p $(@D)
	$(Q)$(RUN) $(O)/bin/train-mlp --data $< $(GM_TRAIN) $(gm_len_$(call gm_exp,$*)) \
	    --seed $(call gm_seed,$*) --log-every $(GM_LOG_EVERY) --ckpt-dir $(@D)/ckpt \
	    --ckpt-points $(GM_CKPT_POINTS) --tag gm-$(call gm_exp,$*) --quiet > $@+ || [ $$? -eq 3 ]
	@mv -f $@+ $@

$(GM_R)/%/curves.tsv: $(GM_R)/%/log.jsonl pipeline/gm-curves.jq
	$(Q)jq -nr -f pipeline/gm-curves.jq $< > $@+ && mv -f $@+ $@

$(GM_R)/%/hessian.jsonl: $(GM_R)/%/log.jsonl $(GM_STAMP)/hess $(O)/bin/hess-eig
	$(Q)ls $(@D)/ckpt/*.safetensors | $(RUN) $(O)/bin/hess-eig \
	    --data $(call gm_data_of,$*) $(GM_HESS_FLAGS) > $@+
	@mv -f $@+ $@
$(GM_R)/%/llc.jsonl: $(GM_R)/%/log.jsonl $(GM_STAMP)/llc $(O)/bin/llc-estimate
	$(Q)ls $(@D)/ckpt/*.safetensors | $(RUN) $(O)/bin/llc-estimate \
	    --data $(call gm_data_of,$*) $(GM_LLC_FLAGS) > $@+
	@mv -f $@+ $@
# --any-data: the subsample is not the data set the checkpoints name.
$(GM_R)/%/gop.jsonl: $(GM_R)/%/log.jsonl $(GM_STAMP)/gop $$(GM_R)/data/gop-s$$(call gm_seed,$$*).safetensors $(O)/bin/gop-spectrum
	$(Q)ls $(@D)/ckpt/*.safetensors | $(RUN) $(O)/bin/gop-spectrum \
	    --data $(GM_R)/data/gop-s$(call gm_seed,$*).safetensors --any-data $(GM_GOP_FLAGS) > $@+
	@mv -f $@+ $@
$(GM_R)/%/gop.tsv: $(GM_R)/%/gop.jsonl pipeline/gop.jq
	$(Q)jq -nr -f pipeline/gop.jq $< > $@+ && mv -f $@+ $@
$(GM_R)/%/hessian.tsv: $(GM_R)/%/hessian.jsonl pipeline/hessian.jq
	$(Q)jq -nr -f pipeline/hessian.jq $< > $@+ && mv -f $@+ $@
$(GM_R)/%/llc.tsv: $(GM_R)/%/llc.jsonl pipeline/llc.jq
	$(Q)jq -nr --arg e '' -f pipeline/llc.jq $< > $@+ && mv -f $@+ $@

# One row per run: the last log point's numbers, the first epoch each
# accuracy passed 99%, and the last checkpoint's sharpness and LLC.
$(GM_R)/summary.tsv: $(GM_CURVES) $(GM_HESS) $(GM_LLCS) pipeline/gm-summary.awk
	$(Q)for r in $(GM_RUNS); do \
	    awk -v run=$$r -f pipeline/gm-summary.awk $(GM_R)/$$r/curves.tsv \
	        $(GM_R)/$$r/hessian.tsv $(GM_R)/$$r/llc.tsv; \
	done | awk 'NR == 1 || !/^run/' > $@+ && mv -f $@+ $@

# Plots: <exp>-s<seed>-<kind>.png, static pattern rules over the lists
# (an implicit rule would let the curves' rule take the PCA's plots).
gm_run_of_plot = $(word 1,$(subst -, ,$1))/$(word 2,$(subst -, ,$1))
gm_title = $(subst /s, seed ,$(call gm_run_of_plot,$1))
GM_PCA_PLOTS := $(filter %-pca.png,$(GM_PLOTS))
GM_CURVE_PLOTS := $(filter-out %-pca.png,$(GM_PLOTS))
$(GM_CURVE_PLOTS): $(GM_PL)/%.png: $$(GM_R)/$$(call gm_run_of_plot,$$*)/curves.tsv pipeline/gm-plot.gp pipeline/style.gp
	@mkdir -p $(@D)
	$(Q)k=$(lastword $(subst -, ,$*)); \
	case $$k in losslinear|losslog) w=loss;; acclinear|acclog) w=acc;; *) w=$$k;; esac; \
	case $$k in *log) s=log;; *) s=linear;; esac; \
	gnuplot -e "tsv='$<'; exp='$(call gm_title,$*)'; what='$$w'; scale='$$s'; out='$@+'" \
	    pipeline/gm-plot.gp && mv -f $@+ $@

# The embedding's 2-D PCA at the last checkpoint (the source's
# wts_dimred_embed.png): the circle a grokked embedding draws.
$(GM_R)/%/pca.tsv: $(GM_R)/%/log.jsonl pipeline/embed-pca
	$(Q)pipeline/embed-pca $$(ls $(@D)/ckpt/*.safetensors | tail -1) > $@+ && mv -f $@+ $@
$(GM_PCA_PLOTS): $(GM_PL)/%-pca.png: $$(GM_R)/$$(call gm_run_of_plot,$$*)/pca.tsv pipeline/gm-plot.gp pipeline/style.gp
	@mkdir -p $(@D)
	$(Q)gnuplot -e "tsv='$<'; exp='$(call gm_title,$*)'; what='pca'; scale='linear'; out='$@+'" \
	    pipeline/gm-plot.gp && mv -f $@+ $@
