/*
 * chains: convergence diagnostics of MCMC draws, for the LLC's SGLD chains
 * (Vehtari, Gelman, Simpson, Carpenter and Buerkner 2021, "Rank-
 * normalization, folding, and localization: an improved R-hat for
 * assessing convergence of MCMC", Bayesian Analysis 16(2), 667-718; the
 * estimators as Stan and ArviZ compute them).
 *
 * Draws are C chains of n each, chain c's at x[c n .. c n + n - 1]
 * (llc-estimate's loss trace layout).  Every function returns NaN when
 * the draws are too few (fewer than 4 per chain for the split
 * statistics) or not all finite: a chain that stopped has no diagnostic.
 *
 * Split: each chain is cut into its first and second halves (the middle
 * draw dropped when n is odd) and the halves are treated as 2C chains, so
 * a chain that drifts disagrees with itself.
 *
 * R-hat compares the between-chain and within-chain variances of the
 * split chains: with W the mean within-chain variance and B/m the variance
 * of the chain means (m draws a chain), var+ = (m - 1)/m W + B/m and
 * R-hat = sqrt(var+ / W).  It tends to 1 as the chains agree; Vehtari et
 * al. recommend trusting draws only below 1.01.
 *
 * Effective sample size: C n / tau, tau = 1 + 2 sum_t rho_t, with the
 * multi-chain autocorrelation rho_t = 1 - (W - mean_c acov_c(t)) / var+
 * summed by Geyer's initial monotone sequence (pairs rho_2k + rho_2k+1
 * truncated at the first negative pair and made non-increasing), the
 * autocovariances by FFT.  tau is at least 1 / log10(C n), as in Stan.
 */
#ifndef CHAINS_H
#define CHAINS_H

/*
 * Rank-normalised split R-hat: the larger of R-hat on the normal scores
 * of the pooled ranks (bulk) and on those of |x - median| (folded: tails
 * and scale), Vehtari et al.'s recommended diagnostic.
 */
double chains_rhat(const double *x, int C, long n);

/* Split R-hat on the draws themselves (Gelman et al., BDA3 section 11.4). */
double chains_rhat_basic(const double *x, int C, long n);

/* Bulk ESS: split, rank-normalised (Vehtari et al.'s ESS for the centre of the distribution). */
double chains_ess_bulk(const double *x, int C, long n);

/*
 * ESS of the mean: split, on the draws themselves.  The Monte Carlo
 * standard error of the pooled mean is sqrt(var / ESS) (chains_mcse_mean),
 * so this is the ESS of lambda-hat = nbeta (mean draw - L(w*)).
 */
double chains_ess_mean(const double *x, int C, long n);

/* sqrt(pooled variance / chains_ess_mean): the standard error of the mean of all draws. */
double chains_mcse_mean(const double *x, int C, long n);

/* ESS of one chain (not split): n / tau. */
double chain_ess(const double *x, long n);

/*
 * A chain's drift between its halves: second - first half mean, in units
 * of its standard error under stationarity, sqrt(2 min(v1/ess1,
 * v2/ess2)) (each half's variance and single-chain ESS; the steadier
 * half's stands for both, because a trend inside a half inflates that
 * half's own variance and autocorrelation and would hide itself).  A
 * stationary chain has |z| of order one; a chain still relaxing or
 * leaving the basin shows a large z of the sign of the trend.  Fields NaN
 * when n < 8 or a draw is not finite.
 */
struct chain_drift {
	double first, second;  /* half means */
	double diff;           /* second - first */
	double se;             /* its standard error */
	double z;              /* diff / se */
};
void chain_half_drift(const double *x, long n, struct chain_drift *out);

/* The standard normal quantile function (probit), p in (0, 1); NaN outside. */
double normal_quantile(double p);

#endif
