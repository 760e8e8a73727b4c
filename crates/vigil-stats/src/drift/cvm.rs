//! Two-sample Cramér-von Mises test.

use std::collections::HashMap;

use statrs::function::gamma::ln_gamma;

use super::{sorted_finite, Statistic};
use crate::error::{require, Result};

/// Both samples at most this size: exact p-value (as SciPy's `method="auto"`).
pub const MAX_EXACT_N: usize = 20;

/// Two-sample Cramér-von Mises test, as `scipy.stats.cramervonmises_2samp(reference, current)`:
/// with midranks `r_i` of the sorted reference and `s_j` of the sorted current in the pooled
/// sample, `U = n sum_i (r_i - i)^2 + m sum_j (s_j - j)^2` and
/// `T = U / (n m N) - (4 n m - 1) / (6 N)` (Anderson 1962), `N = n + m`. Higher `T` means more
/// drift; drift when `p < threshold`. The p-value is exact (enumerating the null distribution of
/// `U`, Xiao et al. 2006) when both samples have at most 20 values, and otherwise comes from
/// the limiting distribution of the normalised statistic, summed until a term is below 1e-7 as
/// SciPy does. Non-finite values are ignored; fewer than two finite values on a side:
/// `NotEnoughData`.
pub fn cramer_von_mises(reference: &[f64], current: &[f64]) -> Result<Statistic> {
    let (x, y) = (sorted_finite(reference), sorted_finite(current));
    require(2, x.len() as u64)?;
    require(2, y.len() as u64)?;
    let (nx, ny) = (x.len(), y.len());
    let ranks = pooled_midranks(&x, &y);
    let sq = |r: &[f64]| r.iter().enumerate().map(|(i, &r)| (r - (i + 1) as f64).powi(2)).sum::<f64>();
    let u = nx as f64 * sq(&ranks[..nx]) + ny as f64 * sq(&ranks[nx..]);
    let (k, n) = ((nx * ny) as f64, (nx + ny) as f64);
    let t = u / (k * n) - (4.0 * k - 1.0) / (6.0 * n);
    let p = if nx.max(ny) > MAX_EXACT_N { p_asymptotic(t, nx as f64, ny as f64) } else { p_exact(u, nx, ny) };
    Ok(Statistic::exact(t, Some(p)))
}

/// Average ranks (1-based) of `x` then `y` (both sorted) within the pooled sample.
fn pooled_midranks(x: &[f64], y: &[f64]) -> Vec<f64> {
    let mut pooled: Vec<(f64, usize)> = x.iter().chain(y).copied().zip(0..).collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut ranks = vec![0.0; pooled.len()];
    let mut start = 0;
    while start < pooled.len() {
        let mut end = start + 1;
        while end < pooled.len() && pooled[end].0 == pooled[start].0 {
            end += 1;
        }
        let mid = (start + 1 + end) as f64 / 2.0;
        for &(_, idx) in &pooled[start..end] {
            ranks[idx] = mid;
        }
        start = end;
    }
    ranks
}

fn p_asymptotic(t: f64, nx: f64, ny: f64) -> f64 {
    let (k, n) = (nx * ny, nx + ny);
    let et = (1.0 + 1.0 / n) / 6.0;
    let vt = (n + 1.0) * (4.0 * k * n - 3.0 * (nx * nx + ny * ny) - 2.0 * k) / (45.0 * n * n * 4.0 * k);
    let tn = 1.0 / 6.0 + (t - et) / (45.0 * vt).sqrt();
    if tn < 0.003 {
        return 1.0;
    }
    (1.0 - cdf_cvm_inf(tn)).max(0.0)
}

/// Limiting CDF of the Cramér-von Mises statistic (Csörgő & Faraway 1996, eq. 1.2), summed term by
/// term until a term drops below 1e-7, like SciPy's `_cdf_cvm_inf`.
fn cdf_cvm_inf(x: f64) -> f64 {
    let pi15 = std::f64::consts::PI.powf(1.5);
    let mut total = 0.0;
    for k in 0.. {
        let kf = k as f64;
        let u = (ln_gamma(kf + 0.5) - ln_gamma(kf + 1.0)).exp() / (pi15 * x.sqrt());
        let y = 4.0 * kf + 1.0;
        let q = y * y / (16.0 * x);
        // exp(-q) K_{1/4}(q) = exp(-2q) * kve(q)
        let z = u * y.sqrt() * (-2.0 * q).exp() * bessel_kve(0.25, q);
        total += z;
        if z.abs() < 1e-7 {
            break;
        }
    }
    total
}

/// Exponentially scaled modified Bessel function of the second kind, `e^q K_nu(q)`, from
/// `integral_0^inf exp(-q (cosh t - 1)) cosh(nu t) dt` by the trapezoidal rule, which converges
/// geometrically for this analytic, doubly-exponentially decaying integrand (step 0.05: error far
/// below 1e-15).
pub(crate) fn bessel_kve(nu: f64, q: f64) -> f64 {
    let h = 0.05;
    let f = |t: f64| (-q * (t.cosh() - 1.0)).exp() * (nu * t).cosh();
    let mut total = 0.5 * f(0.0);
    let mut t = h;
    loop {
        let v = f(t);
        total += v;
        if v < 1e-18 * total {
            break;
        }
        t += h;
    }
    total * h
}

/// Exact p-value `P(U >= u)` by counting lattice paths (Xiao, Gordon & Yakovlev 2006, as SciPy's
/// `_pval_cvm_2samp_exact`): over paths from (0,0) to (n,m), the statistic is a sum of
/// `(a v - b u)^2` over visited points, with `a = lcm/m`, `b = lcm/n`.
fn p_exact(u_stat: f64, m: usize, n: usize) -> f64 {
    let lcm = {
        let (mut a, mut b) = (m, n);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        m / a * n
    };
    let (a, b) = ((lcm / m) as i64, (lcm / n) as i64);
    let mn = (m * n) as f64;
    let zeta =
        floor_div((lcm * lcm * (m + n)) as f64 * (6.0 * u_stat - mn * (4.0 * mn - 1.0)), 6.0 * mn * mn);
    // gs[v]: frequency table of path sums reaching (u, v), row by row in u.
    let mut gs: Vec<HashMap<i64, u64>> = vec![HashMap::new(); m + 1];
    gs[0].insert(0, 1);
    for u in 0..=n as i64 {
        let mut next: Vec<HashMap<i64, u64>> = Vec::with_capacity(m + 1);
        let mut tmp: HashMap<i64, u64> = HashMap::new();
        for (v, g) in gs.iter().enumerate() {
            for (&val, &freq) in g {
                *tmp.entry(val).or_default() += freq;
            }
            let res = (a * v as i64 - b * u).pow(2);
            tmp = tmp.into_iter().map(|(val, f)| (val + res, f)).collect();
            next.push(tmp.clone());
        }
        gs = next;
    }
    let combinations = (1..=m as u64).fold(1u128, |c, i| c * (n as u128 + i as u128) / i as u128) as f64;
    let hits: u64 = gs[m].iter().filter(|(&v, _)| v as f64 >= zeta).map(|(_, &f)| f).sum();
    hits as f64 / combinations
}

/// Floor division as numpy/Python define it for floats (via fmod, exact for integral values).
fn floor_div(a: f64, b: f64) -> f64 {
    let mut m = a % b;
    let mut div = (a - m) / b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        m += b;
        div -= 1.0;
    }
    let _ = m;
    if div == 0.0 {
        return 0.0f64.copysign(a / b);
    }
    let mut fl = div.floor();
    if div - fl > 0.5 {
        fl += 1.0;
    }
    fl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kve_matches_known_values() {
        // scipy.special.kve(0.25, 1.0) and kve(0.25, 0.01)
        assert!((bessel_kve(0.25, 1.0) - 1.1708721016781265).abs() < 1e-12, "{}", bessel_kve(0.25, 1.0));
        assert!((bessel_kve(0.25, 0.01) - 6.227707994041582).abs() < 1e-12, "{}", bessel_kve(0.25, 0.01));
    }
}
