# hess-eig --blocks records -> TSV, one row per checkpoint: step, then per
# tensor group (named in the header, in the model's order) its diagonal
# block's top eigenvalue, then the same groups' share of the trace (block
# trace over the sum of the block traces, on the same probes): where the
# curvature sits.  Without --blocks (HESS_FLAGS without it) the header
# "step" alone: the plot then draws the whole λ_1 only.
[inputs | select(.record == "hessian" and .blocks != null)] as $r
| (($r[0].blocks // []) | map(.group)) as $g
| (["step"] + ($g | map("l:" + .)) + ($g | map("t:" + .)) | join("\t")),
  ($r[] | (.blocks | map(.trace) | add) as $t
   | [.step] + (.blocks | map(.lambda_max)) + (.blocks | map(if $t != 0 then .trace / $t else null end))
   | map(if . == null then "NaN" else tostring end) | join("\t"))
