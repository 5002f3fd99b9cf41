# pipeline/replicate-ap.mk: `make replicate-ap`, the "01-grokking-hessian"
# depth study (the seed study's train.py) in its literal configuration, and
# beside it the configuration that does grok.  Included by the Makefile.
#
# literal  train.py as written: p = 97, every pair, AP_FRAC = 10% of them
#          for training (one split, seeded by AP_DATA_SEED), the two raw
#          integers as inputs, MLP of depth 1..7 x 128 ReLU units,
#          cross-entropy, Adam lr 1e-3 without weight decay, the full batch,
#          10,000 steps; losses and accuracy every 100 steps, the top
#          Hessian eigenvalue and the gradient norm every 1,000.
#          On top: each checkpoint keeps Adam's state (--ckpt-optim) and
#          hess-eig --precond compares lambda_max(P^-1 H) with Adam's
#          stability threshold 38/lr: whether the literal runs' loss
#          spikes come at the optimiser's edge of stability.
# grok     our grok recipe at the same p and depths: one-hot inputs, AdamW
#          lr 1e-3 wd 2, full batch, on AP_GROK_FRAC of the pairs (the full
#          study's fraction: the grok recipe is measured there).
#
# Runs: $(APR)/<recipe>/d<depth>-s<seed>/ (log.jsonl, ckpt/, hessian.jsonl,
# curves.tsv, hessian.tsv); tables $(APR)/runs.tsv, by-depth.tsv; plots
# $(APPL)/<recipe>/ under the source's own names (hessian_vs_depth.png,
# loss_vs_steps.png, grad_norm_vs_steps.png, test_acc_vs_steps.png) and
# ours, precond_vs_steps.png (the preconditioned sharpness over its
# threshold).
# Stamps as in the study: a changed parameter redoes what it affects.
# $(RUN) prefixes every training and analysis command (CLUSTER=slurm).

AP_P ?= 97
AP_FRAC ?= 0.1
AP_GROK_FRAC ?= 0.3
AP_DATA_SEED ?= 0
AP_DEPTHS ?= 1 2 3 4 5 6 7
AP_SEEDS ?= 0 1 2
AP_STEPS ?= 10000
AP_LOG_EVERY ?= 100
AP_HESS_EVERY ?= 1000
AP_RECIPES ?= literal grok
AP_HESS_FLAGS ?= --top 1 --converge value --precond
APR ?= results/replicate-ap
APPL ?= plots/replicate-ap
AP_STAMP := $(APR)/.stamps

# train.py's MLP(n_hidden_layers=d): Linear(2, 128), ReLU, ..., Linear(128, 97);
# torch.optim.Adam(lr=1e-3) (weight_decay 0); F.cross_entropy on the full batch.
ap_literal_TRAIN := --tag ap-literal --width 128 --encoding int --loss ce --optim adam --lr 1e-3 --wd 0 --batch full
ap_literal_DATA := -p $(AP_P) --frac $(AP_FRAC) --seed $(AP_DATA_SEED)
ap_grok_TRAIN := --tag ap-grok --width 128 --encoding onehot --loss ce --optim adamw --lr 1e-3 --wd 2 --batch full
ap_grok_DATA := -p $(AP_P) --frac $(AP_GROK_FRAC) --seed $(AP_DATA_SEED)
# --ckpt-optim: the optimiser's state in each checkpoint, for --precond
# (it changes no bit of the training).
ap_train = --steps $(AP_STEPS) --log-every $(AP_LOG_EVERY) --ckpt-every $(AP_HESS_EVERY) --ckpt-optim $(ap_$(1)_TRAIN)

AP_RUNDIRS := $(foreach r,$(AP_RECIPES),$(foreach d,$(AP_DEPTHS),$(foreach s,$(AP_SEEDS),$(APR)/$(r)/d$(d)-s$(s))))
AP_LOGS := $(AP_RUNDIRS:%=%/log.jsonl)
AP_HESS := $(AP_RUNDIRS:%=%/hessian.jsonl)
AP_TSVS := $(foreach d,$(AP_RUNDIRS),$(d)/curves.tsv $(d)/hessian.tsv)
AP_PLOT_NAMES := hessian_vs_depth loss_vs_steps grad_norm_vs_steps test_acc_vs_steps precond_vs_steps
AP_PLOTS := $(foreach r,$(AP_RECIPES),$(AP_PLOT_NAMES:%=$(APPL)/$(r)/%.png))

.PHONY: replicate-ap
replicate-ap: $(AP_LOGS) $(AP_TSVS) $(APR)/runs.tsv $(APR)/by-depth.tsv $(APR)/by-depth.txt $(AP_PLOTS)
	@echo
	@echo 'replicate-ap in $(APR): p = $(AP_P), $(AP_STEPS) steps, depths $(AP_DEPTHS), seeds $(AP_SEEDS);'
	@echo 'literal: $(ap_literal_TRAIN) on $(AP_FRAC) of the pairs; grok: $(ap_grok_TRAIN) on $(AP_GROK_FRAC).'
	@echo
	@cat $(APR)/by-depth.txt
	@echo
	@echo 'Plots: $(APPL)/<recipe>/ ($(words $(AP_PLOTS)) files; plots/README.md, "replicate-ap").'

define ap_recipe
$(AP_STAMP)/data-$(1): FORCE
	$$(call stamp,$(ap_$(1)_DATA))
$(AP_STAMP)/train-$(1): FORCE
	$$(call stamp,$(call ap_train,$(1)))
$(APR)/$(1)/data.safetensors: $(AP_STAMP)/data-$(1) $(O)/bin/gen-modadd
	@mkdir -p $$(@D)
	$$(Q)$$(RUN) $(O)/bin/gen-modadd $(ap_$(1)_DATA) -o $$@
endef
$(foreach r,$(AP_RECIPES),$(eval $(call ap_recipe,$(r))))
$(AP_STAMP)/hess: FORCE
	$(call stamp,$(AP_HESS_FLAGS))
$(AP_STAMP)/plots: FORCE
	$(call stamp,$(AP_DEPTHS) $(AP_SEEDS))

# One run: exit 3 (diverged) is a result.  <recipe>/d<depth>-s<seed>.
ap_recipe_of = $(firstword $(subst /, ,$1))
ap_depth_of = $(patsubst d%,%,$(firstword $(subst -, ,$(notdir $1))))
ap_seed_of = $(patsubst s%,%,$(lastword $(subst -, ,$(notdir $1))))
define ap_run
$(APR)/$(1)/log.jsonl: $(APR)/$(call ap_recipe_of,$(1))/data.safetensors \
    $(AP_STAMP)/train-$(call ap_recipe_of,$(1)) $(O)/bin/train-mlp | $(O)/.study-deps
	@rm -rf $$(@D)/ckpt
	@mkdir -p $$(@D)
	$$(Q)$$(RUN) $(O)/bin/train-mlp --data $$< --depth $(call ap_depth_of,$(1)) --seed $(call ap_seed_of,$(1)) \
	    --ckpt-dir $$(@D)/ckpt --quiet $(call ap_train,$(call ap_recipe_of,$(1))) > $$@+ || [ $$$$? -eq 3 ]
	@pipeline/run-line $$@+ $$@ '$(call ap_recipe_of,$(1)) $(subst -, ,$(notdir $(1)))' $(AP_LOGS)
$(APR)/$(1)/hessian.jsonl: $(APR)/$(1)/log.jsonl $(AP_STAMP)/hess $(O)/bin/hess-eig
	$$(Q)ls $$(@D)/ckpt/*.safetensors | $$(RUN) $(O)/bin/hess-eig \
	    --data $(APR)/$(call ap_recipe_of,$(1))/data.safetensors $(AP_HESS_FLAGS) > $$@+
	@mv -f $$@+ $$@
endef
$(foreach d,$(AP_RUNDIRS),$(eval $(call ap_run,$(d:$(APR)/%=%))))

$(APR)/%/curves.tsv: $(APR)/%/log.jsonl pipeline/curves.jq
	$(Q)jq -nr -f pipeline/curves.jq $< > $@+ && mv -f $@+ $@
$(APR)/%/hessian.tsv: $(APR)/%/hessian.jsonl pipeline/hessian.jq
	$(Q)jq -nr -f pipeline/hessian.jq $< > $@+ && mv -f $@+ $@

$(APR)/runs.tsv: $(AP_LOGS) $(AP_HESS) $(O)/bin/summarize
	$(Q)$(O)/bin/summarize --tsv $(AP_LOGS) $(AP_HESS) > $@+ && mv -f $@+ $@
$(APR)/by-depth.tsv: $(AP_LOGS) $(AP_HESS) $(O)/bin/summarize
	$(Q)$(O)/bin/summarize --group-by recipe,depth --tsv $(AP_LOGS) $(AP_HESS) > $@+ && mv -f $@+ $@
$(APR)/by-depth.jsonl: $(AP_LOGS) $(AP_HESS) $(O)/bin/summarize
	$(Q)$(O)/bin/summarize --group-by recipe,depth $(AP_LOGS) $(AP_HESS) > $@+ && mv -f $@+ $@
$(APR)/by-depth.txt: $(APR)/by-depth.jsonl pipeline/by-depth-table.jq pipeline/format.jq
	$(Q)jq -rs -L pipeline -f pipeline/by-depth-table.jq $< > $@+ && mv -f $@+ $@

# Per run of a recipe: depth, seed, the top eigenvalue at the last
# checkpoint and its largest over training (hessian_vs_depth's points).
define ap_table_rule
$(APR)/$(1)/hessian-by-depth.tsv: $(foreach d,$(AP_RUNDIRS),$(if $(filter $(APR)/$(1)/%,$(d)),$(d)/hessian.tsv))
	$$(Q){ printf 'depth\tseed\tlambda1_last\tlambda1_max\n'; \
	for f in $$^; do r=$$$${f%/hessian.tsv}; r=$$$${r##*/d}; \
	    awk -F '\t' -v d=$$$${r%-s*} -v s=$$$${r#*-s} 'NR > 1 { last = $$$$2; if (max == "" || $$$$2 > max) max = $$$$2 } \
	        END { printf "%s\t%s\t%s\t%s\n", d, s, last, max }' $$$$f; done; } > $$@+ && mv -f $$@+ $$@
endef
$(foreach r,$(AP_RECIPES),$(eval $(call ap_table_rule,$(r))))

# The plots of a recipe: every seed of every depth (one colour per depth).
define ap_plot_rule
$(APPL)/$(1)/%.png: pipeline/plot-ap.gp pipeline/style.gp $(AP_STAMP)/plots $(APR)/$(1)/hessian-by-depth.tsv \
    $(foreach d,$(AP_RUNDIRS),$(if $(filter $(APR)/$(1)/%,$(d)),$(d)/curves.tsv $(d)/hessian.tsv)) | $(O)/.study-deps
	@mkdir -p $$(@D)
	$$(Q)gnuplot -e "dir='$(APR)/$(1)'; recipe='$(1)'; depths='$(AP_DEPTHS)'; seeds='$(AP_SEEDS)'; \
	    kind='$$*'; out='$$@+'" pipeline/plot-ap.gp $$(PLOT_QUIET) && mv -f $$@+ $$@
endef
$(foreach r,$(AP_RECIPES),$(eval $(call ap_plot_rule,$(r))))

.SECONDARY: $(foreach r,$(AP_RECIPES),$(AP_STAMP)/data-$(r) $(APR)/$(r)/data.safetensors)
