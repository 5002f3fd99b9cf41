# Number formatting for the study's terminal lines (jq has no printf).
# fixed(d): the number rounded to d decimals, zeros kept ("0.30").
def fixed($d):
  if $d <= 0 then (round | tostring)
  else (. * pow(10; $d) | round) as $n
    | ($n | fabs) as $a
    | (pow(10; $d)) as $s
    | (($a % $s) | tostring) as $f
    | (if $n < 0 then "-" else "" end) + (($a / $s) | floor | tostring) + "."
      + ("0" * ($d - ($f | length)) // "") + $f
  end;
# Three significant figures or so, as a reader wants them: 38361, 128, 5.61, 0.504.
def decimals: fabs as $a
  | if $a >= 100 or $a == 0 then 0 elif $a >= 10 then 1 elif $a >= 1 then 2 else 3 end;
def sig: fixed(decimals);
# A {mean, std, ...} from summarize as "m ± s" (with s as precise as m), "m" for one value, "—" for none.
def pm($d):
  if .mean == null then "—"
  elif .std == null then (.mean | fixed($d))
  else "\(.mean | fixed($d)) ± \(.std | fixed($d))" end;
def pm: if .mean == null then "—" else pm(.mean | decimals) end;
# Pad to width w, text left (rpad) or right (lpad); length counts code points.
def rpad($w): . + (" " * ($w - length) // "");
def lpad($w): (" " * ($w - length) // "") + .;
