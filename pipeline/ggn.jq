# hess-eig --matrix ggn records, with the same checkpoints' Hessian records
# (--slurpfile hess) -> TSV: step, the Gauss-Newton matrix's top
# eigenvalue, the Hessian's, and their ratio (1: the curvature at the top
# is all the network's first derivatives; above 1: the network's second
# derivative, weighted by the loss's gradient, takes some away; below 1:
# adds some), then the ratio per tensor group where both have --blocks.
($hess | map(select(.record == "hessian")) | map({key: (.step | tostring), value: .}) | from_entries) as $h
| [inputs | select(.record == "hessian" and .matrix == "ggn")] as $r
| (($r[0].blocks // []) | map(.group)) as $g
| (["step", "ggn_lambda1", "hessian_lambda1", "ratio"] + ($g | map("r:" + .)) | join("\t")),
  ($r[] | $h[.step | tostring] as $x
   | [.step, .eigenvalues[0], $x.eigenvalues[0],
      (if $x.eigenvalues[0] then .eigenvalues[0] / $x.eigenvalues[0] else null end)]
     + [range(0; $g | length) as $i
        | ($x.blocks[$i].lambda_max // null) as $d
        | if $d then .blocks[$i].lambda_max / $d else null end]
   | map(if . == null then "NaN" else tostring end) | join("\t"))
