# The study's closing table, for a person at a terminal, from
# summarize --group-by recipe,depth (read with jq -rs -L pipeline):
# per recipe and depth, how many seeds memorised and generalised, the
# generalisation step over those that did (mean ± sd), final test accuracy,
# peak sharpness and the LLC at the last checkpoint.  An LLC whose chains
# left the basin is not an estimate: flagged runs are counted, never
# averaged in.
include "format";

def row: [(.[0] | rpad(10)), (.[1] | lpad(5)), (.[2] | lpad(9)), (.[3] | lpad(11)),
          (.[4] | lpad(16)), (.[5] | lpad(12)), (.[6] | lpad(18)), "  " + .[7]] | join("  ");

def llc:
  if .llc_final.n == 0 then "—"
  elif .llc_final_flagged == .llc_final.n then "flagged (\(.llc_final_flagged)/\(.runs))"
  else (.llc_final_unflagged | pm)
    + (if .llc_final_flagged > 0 then " (\(.llc_final_flagged)/\(.runs) flagged, left out)" else "" end)
  end;

map(select(.record == "group"))
| (["recipe", "depth", "memorised", "generalised", "generalised at", "final test", "peak sharpness λ₁", "LLC at the end"] | row),
  (.[] | [.recipe // "—", (.depth | tostring), "\(.memorised)/\(.runs)", "\(.generalised)/\(.runs)",
          (.generalisation_step | pm(0)), (.final_test_acc | pm(2)), (.peak_sharpness | pm), llc] | row)
