# pipeline/replicate-g9.mk: `make replicate-g9`, the Geometry of Grok's
# gradient-outer-product tracking on Power et al.'s setups, in the parts
# that fit this project's MLP.  Included by the Makefile.
#
# Their replication of Power et al. (openai/grok's scripts/train.py as its
# run script and hparams.yaml set it): p = 97, x + y (and their other
# operators; here x - y too, gen-modadd --op sub), AdamW lr 1e-3 betas
# (0.9, 0.98), 10 warm-up steps, weight decay 1, minibatches of
# min(512, ceil(n_train / 2)), 100,000 steps; a 2-layer transformer
# there, our MLP (G9_DEPTH x 128, one-hot) here.  Their script passes
# --train_data_pct=0.5, which openai/grok reads as a percentage: 47 of
# the 9,409 pairs (their log: 47 training, 9,362 validation rows, 2
# batches an epoch), on which x + y memorises and never generalises,
# theirs and ours alike (plots/README.md).  We train on G9_FRAC = 0.5 of
# the pairs, the fraction "0.5" reads as (batches of 512);
# G9_FRAC=0.005 G9_BATCH=24 is their run as written.
# Their GOP framework's configs use AdamW (torch.optim.AdamW), Adam
# (torch.optim.Adam) and SGD (torch.optim.SGD, no momentum) with weight
# decays from 0 to 5; we run each optimiser at weight decay 0, 0.1 and 1.
# The decay is each optimiser's own, as torch applies it: AdamW's
# decoupled (theta *= 1 - lr wd, openai/grok's CustomAdamW "to_zero"
# form), Adam's and SGD's an L2 term in the gradient (g += wd theta, the
# "honest" form); train-mlp's --optim adam|adamw|sgd --wd are those
# updates (tools/lib/optim.h).  Adam and AdamW at Power et al.'s lr 1e-3
# and betas; SGD at G9_SGD_LR.  Their only SGD rate, 0.01, is for a
# linear teacher-student on MSE (Levi et al.'s config), and on this MLP
# it fits 1.3% of the training set in 10,000 steps; 0.5 is our choice,
# a rate that memorises x + y within the default's steps (at step 5,100,
# weight decay 0) and keeps SGD's L2 factor 1 - lr wd positive at every
# weight decay (at lr 1 and wd 1 it is 0).
#
# What is tracked: train-mlp's log at every G9_LOG_EVERY steps has the
# per-example gradient statistics of the whole training set from the log
# pass's own backward (example_grad_norm_mean, _max, example_grad_sq_mean
# = tr GOP, noise_scale; docs/design.md, "Per-example gradient norms in
# the log"), and gop-spectrum's statistics (trace, Frobenius norm, top 10
# eigenvalues, rank, smallest eigenvalue, the centred covariance's; with
# G9_FULL=1 each layer's too) on the MLP's checkpoints every
# G9_CKPT_EVERY steps and the transformer's at G9_TFM_CKPT_POINTS
# log-spaced steps (below).
# They track the GOP every epoch (an epoch is 10 steps here: 4,705 pairs
# in batches of 512); the log's trace is its every-step part.
#
# Their model itself, beside the MLP: openai/grok's transformer (2 layers,
# d_model 128, 4 heads, ReLU MLP of 4 d_model, causal attention, dropout 0)
# as train-transformer builds it (Nanda et al.'s: no LayerNorm, where
# openai/grok's blocks have one; the input "x y =" and the answer read at
# '=', where theirs is "<eos> x op y = z <eos>" with the loss on z), on the
# same settings (G9_FRAC of the pairs, AdamW betas (0.9, 0.98), 10 warm-up
# steps, batch min(512, ceil(n_train / 2)), each weight decay) at
# p = G9_TFM_P: at p = 97 one run is hours on a core, at 23 a minute.  The
# transformer's log has no per-example norms (its shared weights make them
# a per-example pass), so its GOP comes from gop-spectrum alone.
#
# Default: the MLP's whole grid (x + y and x - y, Adam, AdamW and SGD,
# the three weight decays: 18 runs, 11 CPU-minutes measured) at p = 97
# and the transformer's x + y AdamW runs (3; with x - y's, 6 took 10.8
# minutes) at G9_TFM_P,
# G9_STEPS = 10,000 steps.  G9_FULL=1: 100,000 steps as Power et al., the
# transformer on the same grid as the MLP (18 runs of each model), each
# layer's GOP too.  G9_TFM_OPS= leaves the transformer out, G9_OPS= the
# MLP; G9_TFM_OPTIMS picks the transformer's optimisers.
# Runs: $(G9R)/<op>/<optim>-wd<wd>-s<seed>/ (the MLP),
# $(G9R)/tfm-<op>/<optim>-wd<wd>-s<seed>/ (the transformer).
# $(RUN) prefixes every command.

G9_FULL ?=
G9_P ?= 97
G9_FRAC ?= 0.5
G9_DEPTH ?= 2
G9_WDS ?= 0 0.1 1
G9_SEEDS ?= 0
G9_SGD_LR ?= 0.5
G9_LOG_EVERY ?= 50
G9_BATCH ?= 512
G9_TFM_P ?= 23
G9_TFM_MODEL ?= --layers 2 --d-model 128 --heads 4 --d-mlp 512 --act relu --attention causal --eq-token
G9_OPS ?= add sub
G9_OPTIMS ?= adam adamw sgd
ifeq ($(G9_FULL),1)
G9_TFM_OPS ?= add sub
G9_TFM_OPTIMS ?= $(G9_OPTIMS)
G9_STEPS ?= 100000
G9_CKPT_EVERY ?= 2000
G9_GOP_FLAGS ?= --top 10 --per-layer
else
G9_TFM_OPS ?= add
G9_TFM_OPTIMS ?= adamw
G9_STEPS ?= 10000
G9_CKPT_EVERY ?= 1000
G9_GOP_FLAGS ?= --top 10
endif
G9R ?= results/replicate-g9
G9PL ?= plots/replicate-g9
G9_STAMP := $(G9R)/.stamps

# openai/grok: AdamW(betas=(0.9, 0.98)), LambdaLR warm-up over 10 steps,
# batch min(512, ceil(n_train / 2)) (512 at p = 97; gen-modadd keeps
# round(frac * p^2) training pairs).
G9_TFM_BATCH ?= $(shell awk 'BEGIN { n = int($(G9_FRAC) * $(G9_TFM_P) * $(G9_TFM_P) + 0.5); \
    b = int((n + 1) / 2); print (b < 512 ? b : 512) }')
# The transformer at p = G9_TFM_P memorises its training pairs within the
# first 100 steps (2 steps an epoch at 23), which checkpoints every
# G9_CKPT_EVERY steps see only as its two ends: it logs every
# G9_TFM_LOG_EVERY steps (5 epochs) and checkpoints G9_TFM_CKPT_POINTS
# logarithmically spaced steps (0, 1, 2, 3, 4, 5, 7, 9, 13, ..., 7,279,
# 10,000 at 30 over 10,000 steps), dense through memorisation and sparse
# over the long slow phase.
G9_TFM_LOG_EVERY ?= 10
G9_TFM_CKPT_POINTS ?= 30
g9_sched_mlp = --warmup 10 --warmup-origin 0 --steps $(G9_STEPS) --log-every $(G9_LOG_EVERY) --ckpt-every $(G9_CKPT_EVERY)
g9_sched_tfm = --warmup 10 --warmup-origin 0 --steps $(G9_STEPS) --log-every $(G9_TFM_LOG_EVERY) \
    --ckpt-points $(G9_TFM_CKPT_POINTS)
g9_model_mlp = --depth $(G9_DEPTH) --width 128 --encoding onehot --loss ce --batch $(G9_BATCH)
g9_model_tfm = $(G9_TFM_MODEL) --batch $(G9_TFM_BATCH)
g9_tool_mlp := train-mlp
g9_tool_tfm := train-transformer
g9_adam := --optim adam --lr 1e-3 --beta2 0.98
g9_adamw := --optim adamw --lr 1e-3 --beta2 0.98
g9_sgd = --optim sgd --lr $(G9_SGD_LR)

# The operators' directories: <op> for the MLP, tfm-<op> for the transformer.
# Each directory's optimisers: G9_OPTIMS for the MLP's, G9_TFM_OPTIMS for tfm-<op>.
G9_DIRS := $(G9_OPS) $(G9_TFM_OPS:%=tfm-%)
g9_optims_of = $(if $(filter tfm-%,$1),$(G9_TFM_OPTIMS),$(G9_OPTIMS))
G9_RUNDIRS := $(foreach o,$(G9_DIRS),$(foreach a,$(call g9_optims_of,$(o)),$(foreach w,$(G9_WDS),$(foreach s,$(G9_SEEDS),$(G9R)/$(o)/$(a)-wd$(w)-s$(s)))))
G9_LOGS := $(G9_RUNDIRS:%=%/log.jsonl)
G9_GOPS := $(G9_RUNDIRS:%=%/gop.jsonl)
G9_TSVS := $(foreach d,$(G9_RUNDIRS),$(d)/curves.tsv $(d)/norms.tsv $(d)/gop.tsv)
G9_PLOTS := $(foreach o,$(G9_DIRS),$(foreach a,$(call g9_optims_of,$(o)),$(G9PL)/$(o)-$(a).png))

.PHONY: replicate-g9
replicate-g9: $(G9_LOGS) $(G9_TSVS) $(G9R)/runs.tsv $(G9_PLOTS)
	@echo
	@echo 'replicate-g9 in $(G9R): p = $(G9_P), $(G9_FRAC) of the pairs, MLP depth $(G9_DEPTH),'
	@echo 'ops $(or $(G9_OPS),none), optimisers $(G9_OPTIMS), wd $(G9_WDS), $(G9_STEPS) steps, seeds $(G9_SEEDS);'
	@echo 'the transformer at p = $(G9_TFM_P), batch $(G9_TFM_BATCH): ops $(or $(G9_TFM_OPS),none), optimisers $(G9_TFM_OPTIMS).'
	@column -t -s '	' $(G9R)/runs.tsv | cut -c1-160
	@echo 'Plots: $(G9PL)/ ($(words $(G9_PLOTS)) files; plots/README.md, "replicate-g9").'

g9_op_of = $(firstword $(subst /, ,$1))
g9_optim_of = $(firstword $(subst -, ,$(notdir $1)))
g9_wd_of = $(patsubst wd%,%,$(word 2,$(subst -, ,$(notdir $1))))
g9_seed_of = $(patsubst s%,%,$(lastword $(subst -, ,$(notdir $1))))
# the family of a directory (tfm-<op>: the transformer), its operator and modulus
g9_fam_of = $(if $(filter tfm-%,$1),tfm,mlp)
g9_opname = $(patsubst tfm-%,%,$1)
g9_p_of = $(if $(filter tfm-%,$1),$(G9_TFM_P),$(G9_P))
# g9_train FAMILY OPTIM: the training flags but the seed and weight decay
g9_train = $(g9_model_$(1)) $(g9_sched_$(1)) $(g9_$(2))

define g9_op
$(G9_STAMP)/data-$(1): FORCE
	$$(call stamp,-p $(call g9_p_of,$(1)) --op $(call g9_opname,$(1)) --frac $(G9_FRAC))
$(G9R)/$(1)/data.safetensors: $(G9_STAMP)/data-$(1) $(O)/bin/gen-modadd
	@mkdir -p $$(@D)
	$$(Q)$$(RUN) $(O)/bin/gen-modadd -p $(call g9_p_of,$(1)) --op $(call g9_opname,$(1)) --frac $(G9_FRAC) -o $$@
endef
$(foreach o,$(G9_DIRS),$(eval $(call g9_op,$(o))))
define g9_optim
$(G9_STAMP)/train-$(1)-$(2): FORCE
	$$(call stamp,$(call g9_train,$(1),$(2)))
endef
$(foreach a,$(G9_OPTIMS),$(eval $(call g9_optim,mlp,$(a))))
$(foreach a,$(G9_TFM_OPTIMS),$(eval $(call g9_optim,tfm,$(a))))
$(G9_STAMP)/gop: FORCE
	$(call stamp,$(G9_GOP_FLAGS))
$(G9_STAMP)/plots: FORCE
	$(call stamp,$(G9_WDS) $(G9_SEEDS))

# g9_run RUN FAMILY: RUN is <dir>/<optim>-wd<wd>-s<seed>
define g9_run
$(G9R)/$(1)/log.jsonl: $(G9R)/$(call g9_op_of,$(1))/data.safetensors \
    $(G9_STAMP)/train-$(2)-$(call g9_optim_of,$(1)) $(O)/bin/$(g9_tool_$(2)) | $(O)/.study-deps
	@rm -rf $$(@D)/ckpt
	@mkdir -p $$(@D)
	$$(Q)$$(RUN) $(O)/bin/$(g9_tool_$(2)) --data $$< --seed $(call g9_seed_of,$(1)) --wd $(call g9_wd_of,$(1)) \
	    --tag g9-$(call g9_op_of,$(1))-$(call g9_optim_of,$(1)) --ckpt-dir $$(@D)/ckpt --quiet \
	    $(call g9_train,$(2),$(call g9_optim_of,$(1))) > $$@+ || [ $$$$? -eq 3 ]
	@pipeline/run-line $$@+ $$@ '$(subst /, ,$(subst -, ,$(1)))' $(G9_LOGS)
$(G9R)/$(1)/gop.jsonl: $(G9R)/$(1)/log.jsonl $(G9_STAMP)/gop $(O)/bin/gop-spectrum
	$$(Q)ls $$(@D)/ckpt/*.safetensors | $$(RUN) $(O)/bin/gop-spectrum \
	    --data $(G9R)/$(call g9_op_of,$(1))/data.safetensors $(G9_GOP_FLAGS) > $$@+
	@mv -f $$@+ $$@
endef
$(foreach d,$(G9_RUNDIRS),$(eval $(call g9_run,$(d:$(G9R)/%=%),$(call g9_fam_of,$(call g9_op_of,$(d:$(G9R)/%=%))))))

$(G9R)/%/curves.tsv: $(G9R)/%/log.jsonl pipeline/curves.jq
	$(Q)jq -nr -f pipeline/curves.jq $< > $@+ && mv -f $@+ $@
$(G9R)/%/norms.tsv: $(G9R)/%/log.jsonl pipeline/norms.jq
	$(Q)jq -nr -f pipeline/norms.jq $< > $@+ && mv -f $@+ $@
$(G9R)/%/gop.tsv: $(G9R)/%/gop.jsonl pipeline/gop.jq
	$(Q)jq -nr -f pipeline/gop.jq $< > $@+ && mv -f $@+ $@
$(G9R)/runs.tsv: $(G9_LOGS) $(G9_GOPS) $(O)/bin/summarize
	$(Q)$(O)/bin/summarize --tsv $(G9_LOGS) $(G9_GOPS) > $@+ && mv -f $@+ $@

# One plot per (operator, optimiser): its weight decays side by side.
define g9_plot_rule
$(G9PL)/$(1)-$(2).png: pipeline/plot-g9.gp pipeline/style.gp $(G9_STAMP)/plots \
    $(foreach w,$(G9_WDS),$(G9R)/$(1)/$(2)-wd$(w)-s$(firstword $(G9_SEEDS))/curves.tsv \
    $(G9R)/$(1)/$(2)-wd$(w)-s$(firstword $(G9_SEEDS))/norms.tsv $(G9R)/$(1)/$(2)-wd$(w)-s$(firstword $(G9_SEEDS))/gop.tsv) | $(O)/.study-deps
	@mkdir -p $$(@D)
	$$(Q)gnuplot -e "dir='$(G9R)/$(1)'; op='$(call g9_opname,$(1))'; optim='$(2)'; wds='$(G9_WDS)'; \
	    seed='$(firstword $(G9_SEEDS))'; family='$(call g9_fam_of,$(1))'; p=$(call g9_p_of,$(1)); \
	    out='$$@+'" pipeline/plot-g9.gp $$(PLOT_QUIET) && mv -f $$@+ $$@
endef
$(foreach o,$(G9_DIRS),$(foreach a,$(call g9_optims_of,$(o)),$(eval $(call g9_plot_rule,$(o),$(a)))))

.SECONDARY: $(foreach o,$(G9_DIRS),$(G9_STAMP)/data-$(o) $(G9R)/$(o)/data.safetensors)
