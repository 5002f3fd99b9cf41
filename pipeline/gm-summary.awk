# replicate-gm: one run's curves.tsv, hessian.tsv and llc.tsv (in that
# order) -> one TSV row: the last log point's epoch, losses and accuracies,
# the first epoch each accuracy reached 99%, the last checkpoint's top
# Hessian eigenvalue and LLC.  An LLC that llc-estimate's health rule
# flags is no estimate: NaN, with the rule's reasons in llc_flags ("-"
# when healthy).  The caller sets run.
FNR == 1 { file++; next }
file == 1 {
	ep = $1; trl = $3; tel = $4; tra = $5; tea = $6; sn = $7
	if (tr99 == "" && $5 + 0 >= 99) tr99 = $1
	if (te99 == "" && $6 != "NaN" && $6 + 0 >= 99) te99 = $1
}
file == 2 { lam = $2; hstep = $1 }
file == 3 { llc = $4 == 1 ? "NaN" : $2; lflags = $7; lstep = $1 }
END {
	print "run\tepochs\ttrain_loss\ttest_loss\ttrain_acc\ttest_acc\ttrain99_epoch\ttest99_epoch\tspectral_norm_last\tlambda1\tllc\tckpt_step\tllc_flags"
	printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", run, ep, trl, tel, tra, tea,
	    tr99 == "" ? "NaN" : tr99, te99 == "" ? "NaN" : te99, sn, lam, llc, hstep, lflags
}
