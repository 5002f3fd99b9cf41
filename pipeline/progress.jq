# progress-measures records -> TSV, by step: the loss over all pairs and on
# the training pairs, restricted and excluded loss, the key frequencies'
# share of the logits' variance, how many key frequencies, the Gini
# coefficient of the x embedding's Fourier spectrum, distance irrelevance
# and gradient symmetricity (read with `jq -nr -f`: the header once).
"step\tloss_all\tloss_train\trestricted_loss\texcluded_loss\tkey_var_frac\tkeys\tembed_gini\tdistance_irrelevance\tgradient_symmetricity",
([inputs | select(.record == "progress")] | sort_by(.step) | .[]
 | [.step, .loss_all, .loss_train, .restricted_loss, .excluded_loss, .key_var_frac, (.key_freqs | length),
    .embedding.x.gini, .distance_irrelevance, .gradient_symmetricity]
 | map(if . == null then "NaN" else tostring end) | join("\t"))
