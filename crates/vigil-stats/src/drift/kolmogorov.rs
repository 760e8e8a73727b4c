//! Null distributions of the two-sample Kolmogorov-Smirnov statistic, ported from SciPy 1.17
//! (`scipy.stats._stats_py`, `_stats_pythran`, `_ksstats`) so p-values agree with
//! `scipy.stats.ks_2samp(method="auto")`.

use statrs::function::gamma::ln_gamma;

/// `ks_2samp` uses the exact distribution when both samples have at most this many values.
pub const MAX_EXACT_N: u64 = 10_000;

/// How a p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Exact lattice-path count (both samples `<= MAX_EXACT_N`).
    Exact,
    /// The Kolmogorov distribution at the effective size, by the same formula as SciPy's branch
    /// (Durbin matrix, one-sided Smirnov sum, Pelz-Good series or a closed form).
    Asymptotic,
}

/// Two-sided p-value of the statistic `d` for sample sizes `n1`, `n2`, following `ks_2samp`'s
/// `auto` method. Returns the statistic rounded as SciPy's exact branch rounds it (to a multiple
/// of `1/lcm(n1, n2)`), the p-value and how it was computed.
pub fn ks_2samp_p_value(d: f64, n1: u64, n2: u64) -> (f64, f64, Method) {
    if n1.max(n2) <= MAX_EXACT_N {
        let g = gcd(n1, n2);
        let lcm = (n1 / g) * n2;
        let h = (d * lcm as f64).round_ties_even() as u64;
        let d = h as f64 / lcm as f64;
        if h == 0 {
            return (d, 1.0, Method::Exact);
        }
        let p = if n1 == n2 { prob_outside_square(n1, h) } else { outer_prob_inside(n1, n2, g, h) };
        if (0.0..=1.0).contains(&p) {
            return (d, p, Method::Exact);
        }
    }
    let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
    let en = (m * n / (m + n)).round_ties_even();
    let (p, method) = kolmogorov_sf(en, d);
    (d, p.clamp(0.0, 1.0), method)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// P(D_{n,n} >= h/n) for equal sample sizes, by SciPy's Horner-like alternating sum.
fn prob_outside_square(n: u64, h: u64) -> f64 {
    let (n, h) = (n as i64, h as i64);
    let mut p = 0.0;
    let mut k = n / h;
    while k >= 0 {
        let mut p1 = 1.0;
        for j in 0..h {
            p1 = (n - k * h - j) as f64 * p1 / (n + k * h + j + 1) as f64;
        }
        p = p1 * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// Proportion of lattice paths from (0,0) to (m,n) leaving the band |x/m - y/n| < h/lcm, by the
/// "inside method" recursion on 1 - p (Hodges; Viehmann 2021), as SciPy's pythran kernel.
fn outer_prob_inside(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (m, n, g, h) = (m as i64, n as i64, g as i64, h as i64);
    let (mg, ng) = (m / g, n / g);
    let mut minj: i64 = 0;
    let mut maxj: i64 = ((h as f64 / mg as f64).ceil() as i64).min(n + 1);
    let mut curlen = maxj - minj;
    let len_a = (2 * maxj + 2).min(n + 1) as usize;
    let mut a = vec![1.0f64; len_a];
    a[minj as usize..(maxj as usize).min(len_a)].iter_mut().for_each(|v| *v = 0.0);
    for i in 1..=m {
        let (lastminj, lastlen) = (minj, curlen);
        minj = ((((ng * i - h) as f64) / mg as f64).floor() as i64 + 1).max(0).min(n);
        maxj = ((((ng * i + h) as f64) / mg as f64).ceil() as i64).min(n + 1);
        if maxj <= minj {
            return 1.0;
        }
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        for jj in 0..(maxj - minj) {
            let j = jj + minj;
            val = (a[(jj + minj - lastminj) as usize] * i as f64 + val * j as f64) / (i + j) as f64;
            a[jj as usize] = val;
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            let from = (maxj - minj) as usize;
            let to = (from + (lastlen - curlen) as usize).min(len_a);
            a[from..to].iter_mut().for_each(|v| *v = 1.0);
        }
    }
    a[(maxj - minj - 1) as usize]
}

/// Survival function of the one-sample two-sided Kolmogorov statistic D_n (`scipy.stats.kstwo`),
/// following SciPy's `_kolmogn` branch structure (Simard & L'Ecuyer 2011).
pub fn kolmogorov_sf(n: f64, x: f64) -> (f64, Method) {
    use Method::*;
    if x >= 1.0 {
        return (0.0, Asymptotic);
    }
    if x <= 0.0 {
        return (1.0, Asymptotic);
    }
    let t = n * x;
    if t <= 1.0 {
        // Ruben-Gambino: 1/2n <= x <= 1/n.
        if t <= 0.5 {
            return (1.0, Asymptotic);
        }
        let cdf = if n <= 140.0 {
            (1..=n as u64).map(|i| i as f64 * (1.0 / n) * (2.0 * t - 1.0)).product()
        } else {
            (ln_gamma(n + 1.0) - n * n.ln() + n * (2.0 * t - 1.0).ln()).exp()
        };
        return (1.0 - cdf, Asymptotic);
    }
    if t >= n - 1.0 {
        return (2.0 * (1.0 - x).powf(n), Asymptotic);
    }
    if x >= 0.5 {
        return (2.0 * smirnov(n, x), Asymptotic);
    }
    let nxx = t * x;
    if n <= 140.0 {
        if nxx <= 4.0 {
            // SciPy uses the Durbin matrix up to nxx = 0.754693 and Pomeranz's recursion above;
            // both are exact, vigil uses the Durbin matrix for the whole range.
            return (1.0 - durbin_cdf(n as u64, x), Asymptotic);
        }
        return (2.0 * smirnov(n, x), Asymptotic);
    }
    if nxx >= 370.0 {
        return (0.0, Asymptotic);
    }
    if nxx >= 2.2 {
        return (2.0 * smirnov(n, x), Asymptotic);
    }
    if n <= 100_000.0 && n * x.powf(1.5) <= 1.4 {
        return (1.0 - durbin_cdf(n as u64, x), Asymptotic);
    }
    (1.0 - pelz_good_cdf(n, x), Asymptotic)
}

/// P(D_n <= d) by Durbin's matrix method as Marsaglia, Tsang & Wang (2003) compute it (a port of
/// SciPy's `_kolmogn_DMTW`): with `k = ceil(n d)`, `h = k - n d`, the answer is
/// `n!/n^n (H^n)[k-1][k-1]` for a `(2k-1)`-square matrix `H`, powers scaled by 2^128 to avoid
/// overflow.
pub fn durbin_cdf(n: u64, d: f64) -> f64 {
    if d >= 1.0 {
        return 1.0;
    }
    let nd = n as f64 * d;
    if nd <= 0.5 {
        return 0.0;
    }
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let m = 2 * k - 1;
    let mut v: Vec<f64> = (1..=m).map(|j| 1.0 - h.powi(j as i32)).collect();
    let mut w = vec![0.0; m];
    let mut fac = 1.0;
    for j in 1..=m {
        w[j - 1] = fac;
        fac /= j as f64;
        v[j - 1] *= fac;
    }
    let tt = (2.0 * h - 1.0).max(0.0).powi(m as i32) - 2.0 * h.powi(m as i32);
    v[m - 1] = (1.0 + tt) * fac;
    let mut hm = vec![0.0; m * m];
    for i in 1..m {
        for r in (i - 1)..m {
            hm[r * m + i] = w[r - (i - 1)];
        }
    }
    for r in 0..m {
        hm[r * m] = v[r];
    }
    for c in 0..m {
        hm[(m - 1) * m + c] = v[m - 1 - c];
    }
    let matmul = |a: &[f64], b: &[f64]| -> Vec<f64> {
        let mut out = vec![0.0; m * m];
        for i in 0..m {
            for l in 0..m {
                let a_il = a[i * m + l];
                if a_il != 0.0 {
                    for j in 0..m {
                        out[i * m + j] += a_il * b[l * m + j];
                    }
                }
            }
        }
        out
    };
    let scale = 2f64.powi(128);
    let mut pwr: Vec<f64> = (0..m * m).map(|i| if i / m == i % m { 1.0 } else { 0.0 }).collect();
    let (mut nn, mut expnt, mut h_expnt) = (n, 0i64, 0i64);
    while nn > 0 {
        if nn % 2 == 1 {
            pwr = matmul(&pwr, &hm);
            expnt += h_expnt;
        }
        hm = matmul(&hm, &hm);
        h_expnt *= 2;
        if hm[(k - 1) * m + (k - 1)].abs() > scale {
            hm.iter_mut().for_each(|x| *x /= scale);
            h_expnt += 128;
        }
        nn /= 2;
    }
    let mut p = pwr[(k - 1) * m + (k - 1)];
    for i in 1..=n {
        p = i as f64 * p / n as f64;
        if p.abs() < 1.0 / scale {
            p *= scale;
            expnt -= 128;
        }
    }
    ldexp(p, expnt).clamp(0.0, 1.0)
}

/// `x * 2^e` without overflowing the intermediate power.
fn ldexp(mut x: f64, mut e: i64) -> f64 {
    while e != 0 {
        let step = e.clamp(-1000, 1000);
        x *= 2f64.powi(step as i32);
        e -= step;
    }
    x
}

/// Kolmogorov limiting survival function with Stephens' correction (Numerical Recipes' `qks`):
/// `2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 l^2)`, `l = (sqrt(n) + 0.12 + 0.11 / sqrt(n)) x`.
/// Fast (a few terms) and accurate to about 1e-3 absolute for moderate `n`; meant for large `l`.
pub fn kolmogorov_limit_sf(n: f64, x: f64) -> f64 {
    let l = (n.sqrt() + 0.12 + 0.11 / n.sqrt()) * x;
    if l < 0.2 {
        return 1.0;
    }
    let (mut total, mut sign) = (0.0, 1.0);
    for k in 1..=100 {
        let term = sign * (-2.0 * (k * k) as f64 * l * l).exp();
        total += term;
        if term.abs() <= 1e-16 * total.abs() {
            break;
        }
        sign = -sign;
    }
    (2.0 * total).clamp(0.0, 1.0)
}

/// One-sided Smirnov survival function P(D_n^+ >= x), exact Birnbaum-Tingey sum evaluated in
/// log space: `x * sum_{j=0}^{floor(n(1-x))} C(n,j) (1-x-j/n)^(n-j) (x+j/n)^(j-1)`.
pub fn smirnov(n: f64, x: f64) -> f64 {
    if x >= 1.0 {
        return 0.0;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let jmax = (n * (1.0 - x)).floor() as u64;
    let ln_n1 = ln_gamma(n + 1.0);
    let mut total = 0.0;
    for j in 0..=jmax {
        let jf = j as f64;
        let a = 1.0 - x - jf / n;
        if a <= 0.0 {
            continue;
        }
        let ln_c = ln_n1 - ln_gamma(jf + 1.0) - ln_gamma(n - jf + 1.0);
        total += (ln_c + (n - jf) * a.ln() + (jf - 1.0) * (x + jf / n).ln()).exp();
    }
    (x * total).clamp(0.0, 1.0)
}

/// Pelz-Good (1976) approximation of P(D_n <= x), a port of SciPy's `_kolmogn_PelzGood`.
pub fn pelz_good_cdf(n: f64, x: f64) -> f64 {
    use std::f64::consts::PI;
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let (pi2, pi4, pi6) = (PI * PI, PI.powi(4), PI.powi(6));
    let sqrt2pi = (2.0 * PI).sqrt();
    let z = n.sqrt() * x;
    let (z2, z3, z4, z6) = (z * z, z.powi(3), z.powi(4), z.powi(6));
    let qlog = -pi2 / 8.0 / z2;
    if qlog < f64::MIN_POSITIVE.ln() {
        return 0.0;
    }
    let q = qlog.exp();
    let (k1a, k1b) = (-z2, pi2 / 4.0);
    let (k2a, k2b, k2c) =
        (6.0 * z6 + 2.0 * z4, (2.0 * z4 - 5.0 * z2) * pi2 / 4.0, pi4 * (1.0 - 2.0 * z2) / 16.0);
    let k3d = pi6 * (5.0 - 30.0 * z2) / 64.0;
    let k3c = pi4 * (-60.0 * z2 + 212.0 * z4) / 16.0;
    let k3b = pi2 * (135.0 * z4 - 96.0 * z6) / 4.0;
    let k3a = -30.0 * z6 - 90.0 * z.powi(8);
    let mut k = [0.0f64; 4];
    let maxk = (16.0 * z / PI).ceil() as i64;
    for kk in (1..=maxk).rev() {
        let m = (2 * kk - 1) as f64;
        let (m2, m4, m6) = (m * m, m.powi(4), m.powi(6));
        let qpower = q.powf(8.0 * kk as f64);
        let coeffs = [1.0, k1a + k1b * m2, k2a + k2b * m2 + k2c * m4, k3a + k3b * m2 + k3c * m4 + k3d * m6];
        for (acc, c) in k.iter_mut().zip(coeffs) {
            *acc = *acc * qpower + c;
        }
    }
    let div = [z, 6.0 * z4, 72.0 * z.powi(7), 6480.0 * z.powi(10)];
    for (acc, d) in k.iter_mut().zip(div) {
        *acc = *acc * q * sqrt2pi / d;
    }
    let q = (-pi2 / 2.0 / z2).exp();
    let (mut k2extra, mut k3extra) = (0.0, 0.0);
    let sqrt3z = 3f64.sqrt() * z;
    for kk in (1..=maxk).rev() {
        let ks = kk as f64;
        let qp = q.powf(ks * ks);
        k2extra += ks * ks * qp;
        let kspi = PI * ks;
        k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ks * ks * qp;
    }
    k[2] += k2extra * pi2 * sqrt2pi / (-36.0 * z3);
    k[3] += k3extra * pi2 * sqrt2pi / (216.0 * z6);
    k.iter().enumerate().map(|(i, v)| v / n.powf(i as f64 / 2.0)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_limit_tracks_the_exact_tail() {
        for &(n, x) in &[(5000.0, 0.03), (20_000.0, 0.012), (800.0, 0.06), (100.0, 0.2)] {
            let (exact, _) = kolmogorov_sf(n, x);
            let fast = kolmogorov_limit_sf(n, x);
            assert!((exact - fast).abs() < 1e-3, "n={n} x={x}: {exact} vs {fast}");
        }
    }

    #[test]
    fn exact_small_cases() {
        // ks_2samp([1,2,3], [4,5,6]): D = 1, p = 0.1
        let (d, p, m) = ks_2samp_p_value(1.0, 3, 3);
        assert_eq!((d, m), (1.0, Method::Exact));
        assert!((p - 0.1).abs() < 1e-12, "{p}");
    }
}
