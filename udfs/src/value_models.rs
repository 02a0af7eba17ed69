//! The customer value models behind `bg_nbd_*` and `gamma_gamma_*`: the BG/NBD purchase model
//! (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way") and the Gamma-Gamma spend
//! model (Fader & Hardie, note 025), with the likelihoods, the predictions and the fitting the
//! Python `lifetimes` package uses, so that answers agree with it (checked against its CDNOW
//! sample in tests/python/test_value_models.py).
//!
//! Fitting minimises the mean negative log-likelihood (plus `penalizer · Σ parameter²`, as
//! `lifetimes` applies it) over the logarithms of the parameters with BFGS (the method
//! `lifetimes` gets from scipy; see [`minimise`] for why it is not argmin's) from the same start
//! (every log-parameter 0.1), with analytic gradients. BG/NBD times are scaled so that the oldest customer's age is 1 during the
//! fit, as `lifetimes` does; only `alpha` depends on the time unit and is scaled back. Rows are
//! first condensed to distinct `(frequency, recency, t)` with weights, which changes nothing in
//! the likelihood and makes the fit cost grow with distinct histories, not customers.

/// BG/NBD parameters: purchase rates are Gamma(r, alpha); the chance of dropping out after each
/// purchase is Beta(a, b).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BgNbd {
    pub(crate) r: f64,
    pub(crate) alpha: f64,
    pub(crate) a: f64,
    pub(crate) b: f64,
}

/// Gamma-Gamma parameters: a customer's mean spend is Gamma(q, v)-distributed in its scale,
/// each purchase Gamma(p, ·) around it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GammaGamma {
    pub(crate) p: f64,
    pub(crate) q: f64,
    pub(crate) v: f64,
}

/// One customer's purchase history: repeat purchases, time of the last one after the first, and
/// time from the first to the end of observation (`lifetimes`' frequency, recency, T).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct History {
    pub(crate) frequency: f64,
    pub(crate) recency: f64,
    pub(crate) t: f64,
}

impl History {
    /// A history from `[frequency, recency, t]`.
    pub(crate) fn from_slice(h: &[f64]) -> Self {
        Self {
            frequency: h[0],
            recency: h[1],
            t: h[2],
        }
    }
}

/// Why a model cannot be fitted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FitError {
    /// The data cannot identify the model (says why).
    Degenerate(String),
    /// The optimiser stopped without meeting its tolerance.
    NotConverged(String),
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Degenerate(why) => write!(f, "{why}"),
            Self::NotConverged(why) => write!(
                f,
                "the fit did not converge ({why}); a penalizer (for example 0.001) often helps"
            ),
        }
    }
}

/// `lifetimes`' gradient tolerance and starting point.
const TOLERANCE: f64 = 1e-7;
const START: f64 = 0.1;
const MAX_ITERATIONS: u64 = 1000;

/// Distinct rows with how often each occurs.
fn condense<T: Copy, K: Ord>(rows: &[T], key: impl Fn(&T) -> K) -> (Vec<T>, Vec<f64>) {
    let mut sorted: Vec<&T> = rows.iter().collect();
    sorted.sort_by_key(|row| key(row));
    let mut distinct: Vec<T> = Vec::new();
    let mut weights: Vec<f64> = Vec::new();
    let mut last: Option<K> = None;
    for row in sorted {
        let k = key(row);
        if last.as_ref() == Some(&k) {
            *weights.last_mut().expect("a row before") += 1.0;
        } else {
            distinct.push(*row);
            weights.push(1.0);
            last = Some(k);
        }
    }
    (distinct, weights)
}

/// A negative log-likelihood over log-parameters, with its gradient.
trait Likelihood {
    /// The value and gradient at `log_params`.
    fn value_and_gradient(&self, log_params: &[f64]) -> (f64, Vec<f64>);
}

/// A log-parameter beyond this (a parameter past e^20 ≈ 5e8 or below its inverse) is running
/// off to a boundary where the likelihood has its supremum but no maximum.
const DIVERGED: f64 = 20.0;

/// Steps a line search tries before it gives up.
const LINE_SEARCH_STEPS: usize = 60;

/// Minimises `likelihood` from `lifetimes`' start with BFGS; the parameters (not their
/// logarithms).
///
/// Every loop is bounded, so a query always ends: at most [`MAX_ITERATIONS`] iterations, each
/// with a Wolfe line search ([`wolfe_step`]) of at most [`LINE_SEARCH_STEPS`] steps. The
/// inverse Hessian estimate is updated only when the step shows positive curvature, and reset
/// to the identity when it stops giving a descent direction — the safeguards scipy's BFGS (so
/// `lifetimes`) has. argmin 0.11's BFGS has neither, and its line searches have no iteration
/// limit: on data that does not identify the model they ran without end. A step must lower the
/// cost strictly: at 100k customers the mean gradient's rounding noise is near the tolerance,
/// and steps that changed nothing once held the search at the minimum until the iteration cap.
/// Parameters running off towards a boundary ([`DIVERGED`]) end the fit at once.
fn minimise<L: Likelihood>(likelihood: &L, dimensions: usize) -> Result<Vec<f64>, FitError> {
    let identity = || -> Vec<Vec<f64>> {
        (0..dimensions)
            .map(|i| {
                (0..dimensions)
                    .map(|j| f64::from(u8::from(i == j)))
                    .collect()
            })
            .collect()
    };
    let mut point = vec![START; dimensions];
    let (mut cost, mut gradient) = likelihood.value_and_gradient(&point);
    if !cost.is_finite() {
        return Err(FitError::NotConverged(
            "the likelihood is not finite at the start".into(),
        ));
    }
    let mut inverse_hessian = identity();
    let mut fresh = true;
    for _ in 0..MAX_ITERATIONS {
        if norm(&gradient) < TOLERANCE {
            return parameters(point);
        }
        let mut direction: Vec<f64> = inverse_hessian
            .iter()
            .map(|row| -dot(row, &gradient))
            .collect();
        if dot(&direction, &gradient) >= 0.0 {
            inverse_hessian = identity();
            fresh = true;
            direction = gradient.iter().map(|g| -g).collect();
        }
        let next = wolfe_step(likelihood, &point, cost, &gradient, &direction);
        let Some((next_point, next_cost, next_gradient)) = next else {
            if !fresh {
                // The estimate points nowhere useful: start again from steepest descent.
                inverse_hessian = identity();
                fresh = true;
                continue;
            }
            // No step lowers the cost: a minimum within what f64 can tell apart.
            return if norm(&gradient) < 1e3 * TOLERANCE {
                parameters(point)
            } else {
                Err(FitError::NotConverged(format!(
                    "no step lowers the likelihood; gradient {:.3e}",
                    norm(&gradient)
                )))
            };
        };
        let s: Vec<f64> = next_point.iter().zip(&point).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = next_gradient
            .iter()
            .zip(&gradient)
            .map(|(a, b)| a - b)
            .collect();
        let curvature = dot(&s, &y);
        if curvature > 1e-10 * dot(&s, &s).sqrt() * dot(&y, &y).sqrt() {
            update_inverse_hessian(&mut inverse_hessian, &s, &y, curvature);
            fresh = false;
        }
        (point, cost, gradient) = (next_point, next_cost, next_gradient);
        if let Some(p) = point.iter().position(|p| p.abs() > DIVERGED) {
            return Err(FitError::NotConverged(format!(
                "parameter {} grows without bound ({:.3e}): the likelihood has no finite \
                 maximum on this data; a penalizer keeps the parameters finite",
                p + 1,
                point[p].exp()
            )));
        }
    }
    Err(FitError::NotConverged(format!(
        "gradient {:.3e} after {MAX_ITERATIONS} iterations",
        norm(&gradient)
    )))
}

/// A step along `direction` meeting the weak Wolfe conditions (enough decrease, and a slope
/// that has flattened enough for the BFGS update to see positive curvature), by bracketing and
/// bisection (Lewis & Overton); the best step with enough decrease if the bracket closes first.
/// `None` when no tried step lowers the cost.
fn wolfe_step<L: Likelihood>(
    likelihood: &L,
    point: &[f64],
    cost: f64,
    gradient: &[f64],
    direction: &[f64],
) -> Option<(Vec<f64>, f64, Vec<f64>)> {
    const DECREASE: f64 = 1e-4;
    const CURVATURE: f64 = 0.9;
    let slope = dot(direction, gradient);
    let (mut low, mut high, mut step) = (0.0, f64::INFINITY, 1.0);
    let mut decreasing = None;
    for _ in 0..LINE_SEARCH_STEPS {
        let candidate: Vec<f64> = point
            .iter()
            .zip(direction)
            .map(|(x, d)| x + step * d)
            .collect();
        let (candidate_cost, candidate_gradient) = likelihood.value_and_gradient(&candidate);
        // Strictly lower: near a minimum `DECREASE * step * slope` vanishes beside `cost`, and a
        // step that changes nothing must not count as progress.
        let lower = candidate_cost < cost && candidate_cost <= cost + DECREASE * step * slope;
        if !candidate_cost.is_finite() || !lower {
            high = step;
        } else if dot(direction, &candidate_gradient) < CURVATURE * slope {
            low = step;
            decreasing = Some((candidate, candidate_cost, candidate_gradient));
        } else {
            return Some((candidate, candidate_cost, candidate_gradient));
        }
        step = if high.is_finite() {
            (low + high) / 2.0
        } else {
            2.0 * low
        };
    }
    decreasing
}

/// H ← (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ, ρ = 1 / (yᵀ s).
fn update_inverse_hessian(h: &mut [Vec<f64>], s: &[f64], y: &[f64], curvature: f64) {
    let rho = 1.0 / curvature;
    let hy: Vec<f64> = h.iter().map(|row| dot(row, y)).collect();
    let yhy = dot(y, &hy);
    for i in 0..s.len() {
        for j in 0..s.len() {
            h[i][j] += rho * ((1.0 + rho * yhy) * s[i] * s[j] - hy[i] * s[j] - s[i] * hy[j]);
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The largest absolute component: the gradient norm scipy's BFGS (so `lifetimes`) stops on.
fn norm(vector: &[f64]) -> f64 {
    vector.iter().fold(0.0, |largest, g| largest.max(g.abs()))
}

/// The parameters at a minimum found over their logarithms.
fn parameters(log_params: Vec<f64>) -> Result<Vec<f64>, FitError> {
    let params: Vec<f64> = log_params.iter().map(|p| p.exp()).collect();
    if params.iter().all(|p| p.is_finite() && *p > 0.0) {
        Ok(params)
    } else {
        Err(FitError::NotConverged("a parameter is out of range".into()))
    }
}

/// The minimised objective and its gradient over log-parameters, from the weighted sums of the
/// log-likelihood (`total`) and of its gradient over the parameters (`grad`): the negated mean
/// plus `penalizer · Σ parameter²`, as `lifetimes` has it. d/d(log p) = p · d/dp.
fn objective(
    total: f64,
    weight_sum: f64,
    grad: &[f64],
    params: &[f64],
    penalizer: f64,
) -> (f64, Vec<f64>) {
    let gradient = grad
        .iter()
        .zip(params)
        .map(|(g, p)| -g * p / weight_sum + 2.0 * penalizer * p * p)
        .collect();
    let penalty = penalizer * params.iter().map(|p| p * p).sum::<f64>();
    (-total / weight_sum + penalty, gradient)
}

/// Distinct rows, how often each occurs, and the penalizer: what a likelihood sums over.
struct Weighted<R> {
    rows: Vec<R>,
    weights: Vec<f64>,
    penalizer: f64,
}

impl<R> Weighted<R> {
    fn new((rows, weights): (Vec<R>, Vec<f64>), penalizer: f64) -> Self {
        Self {
            rows,
            weights,
            penalizer,
        }
    }
}

/// BG/NBD over customer histories.
impl Likelihood for Weighted<History> {
    fn value_and_gradient(&self, log_params: &[f64]) -> (f64, Vec<f64>) {
        let params: Vec<f64> = log_params.iter().map(|p| p.exp()).collect();
        let (r, alpha, a, b) = (params[0], params[1], params[2], params[3]);
        let (mut total, mut weight_sum) = (0.0, 0.0);
        let mut grad = [0.0; 4];
        let (ln_alpha, psi_r, psi_ab) = (alpha.ln(), digamma(r), digamma(a + b));
        let (lg_r, lg_b, lg_ab) = (ln_gamma(r), ln_gamma(b), ln_gamma(a + b));
        for (row, &w) in self.rows.iter().zip(&self.weights) {
            let x = row.frequency;
            let a1 = ln_gamma(r + x) - lg_r + r * ln_alpha;
            let a2 = lg_ab + ln_gamma(b + x) - lg_b - ln_gamma(a + b + x);
            let a3 = -(r + x) * (alpha + row.t).ln();
            let bx = b + x.max(1.0) - 1.0;
            let a4 = a.ln() - bx.ln() - (r + x) * (row.recency + alpha).ln();
            let (ln_sum, w3, w4) = if x > 0.0 {
                let top = a3.max(a4);
                let sum = (a3 - top).exp() + (a4 - top).exp();
                (
                    top + sum.ln(),
                    (a3 - top).exp() / sum,
                    (a4 - top).exp() / sum,
                )
            } else {
                (a3, 1.0, 0.0)
            };
            total += w * (a1 + a2 + ln_sum);
            weight_sum += w;
            let psi_abx = digamma(a + b + x);
            let d_r = digamma(r + x) - psi_r + ln_alpha
                - w3 * (alpha + row.t).ln()
                - w4 * (row.recency + alpha).ln();
            let d_alpha =
                r / alpha - w3 * (r + x) / (alpha + row.t) - w4 * (r + x) / (row.recency + alpha);
            let d_a = psi_ab - psi_abx + w4 / a;
            let d_b = psi_ab + digamma(b + x) - digamma(b) - psi_abx - w4 / bx;
            for (g, d) in grad.iter_mut().zip([d_r, d_alpha, d_a, d_b]) {
                *g += w * d;
            }
        }
        objective(total, weight_sum, &grad, &params, self.penalizer)
    }
}

/// Fits BG/NBD to customer histories (lifetimes' `BetaGeoFitter().fit`).
pub(crate) fn fit_bg_nbd(histories: &[History], penalizer: f64) -> Result<BgNbd, FitError> {
    if !histories.iter().any(|h| h.frequency > 0.0) {
        return Err(FitError::Degenerate(
            "no customer has a repeat purchase (every frequency is 0)".into(),
        ));
    }
    let oldest = histories.iter().map(|h| h.t).fold(0.0, f64::max);
    if oldest <= 0.0 {
        return Err(FitError::Degenerate("every customer's age t is 0".into()));
    }
    let scale = 1.0 / oldest;
    let scaled: Vec<History> = histories
        .iter()
        .map(|h| History {
            frequency: h.frequency,
            recency: h.recency * scale,
            t: h.t * scale,
        })
        .collect();
    let distinct = condense(&scaled, |h| {
        (h.frequency.to_bits(), h.recency.to_bits(), h.t.to_bits())
    });
    let mut fitted = BgNbd::from_slice(&minimise(&Weighted::new(distinct, penalizer), 4)?);
    fitted.alpha /= scale;
    Ok(fitted)
}

/// Gamma-Gamma over (frequency, mean spend of the repeat purchases).
impl Likelihood for Weighted<(f64, f64)> {
    fn value_and_gradient(&self, log_params: &[f64]) -> (f64, Vec<f64>) {
        let params: Vec<f64> = log_params.iter().map(|p| p.exp()).collect();
        let (p, q, v) = (params[0], params[1], params[2]);
        let (mut total, mut weight_sum) = (0.0, 0.0);
        let mut grad = [0.0; 3];
        let (lg_q, psi_q, ln_v) = (ln_gamma(q), digamma(q), v.ln());
        for (&(x, m), &w) in self.rows.iter().zip(&self.weights) {
            let px = p * x;
            let xmv = x * m + v;
            let ll = ln_gamma(px + q) - ln_gamma(px) - lg_q
                + q * ln_v
                + (px - 1.0) * m.ln()
                + px * x.ln()
                - (px + q) * xmv.ln();
            total += w * ll;
            weight_sum += w;
            let psi_pxq = digamma(px + q);
            let d_p = x * (psi_pxq - digamma(px) + m.ln() + x.ln() - xmv.ln());
            let d_q = psi_pxq - psi_q + ln_v - xmv.ln();
            let d_v = q / v - (px + q) / xmv;
            for (g, d) in grad.iter_mut().zip([d_p, d_q, d_v]) {
                *g += w * d;
            }
        }
        objective(total, weight_sum, &grad, &params, self.penalizer)
    }
}

/// Fits Gamma-Gamma to the customers with repeat purchases (lifetimes' `GammaGammaFitter().fit`):
/// `rows` are (frequency, mean spend of repeat purchases); rows with frequency 0 are left out.
pub(crate) fn fit_gamma_gamma(rows: &[(f64, f64)], penalizer: f64) -> Result<GammaGamma, FitError> {
    let repeat: Vec<(f64, f64)> = rows.iter().copied().filter(|(x, _)| *x > 0.0).collect();
    if repeat.is_empty() {
        return Err(FitError::Degenerate(
            "no customer has a repeat purchase (every frequency is 0)".into(),
        ));
    }
    if repeat.iter().all(|(_, m)| *m <= 0.0) {
        return Err(FitError::Degenerate("every monetary value is 0".into()));
    }
    let distinct = condense(&repeat, |(x, m)| (x.to_bits(), m.to_bits()));
    Ok(GammaGamma::from_slice(&minimise(
        &Weighted::new(distinct, penalizer),
        3,
    )?))
}

impl BgNbd {
    /// The parameters' names, in order.
    pub(crate) const FIELDS: &'static [&'static str] = &["r", "alpha", "a", "b"];

    /// The parameters from `[r, alpha, a, b]`.
    pub(crate) fn from_slice(p: &[f64]) -> Self {
        Self {
            r: p[0],
            alpha: p[1],
            a: p[2],
            b: p[3],
        }
    }

    /// The probability the customer is still alive (lifetimes' `conditional_probability_alive`).
    pub(crate) fn p_alive(&self, h: History) -> f64 {
        if h.frequency == 0.0 {
            return 1.0;
        }
        let log_div = (self.r + h.frequency) * ((self.alpha + h.t) / (self.alpha + h.recency)).ln()
            + (self.a / (self.b + h.frequency.max(1.0) - 1.0)).ln();
        1.0 / (1.0 + log_div.exp())
    }

    /// Expected purchases in the next `horizon` (lifetimes'
    /// `conditional_expected_number_of_purchases_up_to_time`, equation 10 of the paper).
    pub(crate) fn expected_purchases(&self, horizon: f64, h: History) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let x = h.frequency;
        let (ha, hb, hc) = (r + x, b + x, a + b + x - 1.0);
        let z = horizon / (alpha + h.t + horizon);
        let ln_hyp = ln_hyp2f1(ha, hb, hc, z);
        let first = (a + b + x - 1.0) / (a - 1.0);
        let second =
            1.0 - (ln_hyp + (r + x) * ((alpha + h.t) / (alpha + horizon + h.t)).ln()).exp();
        let denominator = 1.0
            + if x > 0.0 {
                (a / (b + x - 1.0)) * ((alpha + h.t) / (alpha + h.recency)).powf(r + x)
            } else {
                0.0
            };
        first * second / denominator
    }
}

impl GammaGamma {
    /// The parameters' names, in order.
    pub(crate) const FIELDS: &'static [&'static str] = &["p", "q", "v"];

    /// The parameters from `[p, q, v]`.
    pub(crate) fn from_slice(p: &[f64]) -> Self {
        Self {
            p: p[0],
            q: p[1],
            v: p[2],
        }
    }

    /// The expected mean spend per purchase (lifetimes' `conditional_expected_average_profit`):
    /// between the customer's own mean and the population's, weighted by its frequency.
    pub(crate) fn expected_value(&self, frequency: f64, monetary_value: f64) -> f64 {
        let GammaGamma { p, q, v } = *self;
        let individual = p * frequency / (p * frequency + q - 1.0);
        let population = v * p / (q - 1.0);
        (1.0 - individual) * population + individual * monetary_value
    }
}

/// ln Γ(x) for x > 0.
pub(crate) fn ln_gamma(x: f64) -> f64 {
    libm::lgamma(x)
}

/// ψ(x), the digamma function, for x > 0: recurrence up to 6, then the asymptotic series.
pub(crate) fn digamma(mut x: f64) -> f64 {
    let mut result = 0.0;
    while x < 10.0 {
        result -= 1.0 / x;
        x += 1.0;
    }
    let f = 1.0 / (x * x);
    result + x.ln()
        - 0.5 / x
        - f * (1.0 / 12.0
            - f * (1.0 / 120.0 - f * (1.0 / 252.0 - f * (1.0 / 240.0 - f * (1.0 / 132.0)))))
}

/// ln ₂F₁(a, b; c; z) for 0 ≤ z < 1, by the Gauss series; when that overflows or converges too
/// slowly, by Euler's transformation ₂F₁(a,b;c;z) = (1−z)^(c−a−b) ₂F₁(c−a, c−b; c; z), as
/// `lifetimes` falls back to.
fn ln_hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    match gauss_series(a, b, c, z) {
        Some(sum) if sum > 0.0 => sum.ln(),
        _ => {
            let transformed = gauss_series(c - a, c - b, c, z).unwrap_or(f64::NAN);
            transformed.ln() + (c - a - b) * (1.0 - z).ln()
        }
    }
}

fn gauss_series(a: f64, b: f64, c: f64, z: f64) -> Option<f64> {
    let (mut term, mut sum) = (1.0_f64, 1.0_f64);
    for n in 0..200_000 {
        let n = f64::from(n);
        term *= (a + n) * (b + n) / ((c + n) * (n + 1.0)) * z;
        sum += term;
        if !sum.is_finite() {
            return None;
        }
        if term.abs() <= 1e-17 * sum.abs() {
            return Some(sum);
        }
    }
    None
}

/// Customers of a simulated shop, for tests: each buys at its own rate (log-uniform between
/// every 8 and every 120 days), may drop out after each purchase (chance 5-50%), and spends
/// around its own mean (log-uniform 10-100); observed for 30-400 days after its first purchase.
/// Returns each history (in days) with the mean value of its repeat purchases (0 if none).
#[cfg(test)]
pub(crate) fn simulated_customers(count: usize, seed: u64) -> Vec<(History, f64)> {
    let mut state = seed;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..count)
        .map(|_| {
            let age = 30.0 + 370.0 * uniform();
            let rate = (-(8f64.ln() + (120f64.ln() - 8f64.ln()) * uniform())).exp();
            let dropout = 0.05 + 0.45 * uniform();
            let mean_spend = (10f64.ln() + (100f64.ln() - 10f64.ln()) * uniform()).exp();
            let (mut now, mut repeats, mut last, mut spent) = (0.0, 0.0, 0.0, 0.0);
            loop {
                now += -uniform().ln() / rate;
                if now > age {
                    break;
                }
                repeats += 1.0;
                last = (now * 100.0_f64).round() / 100.0;
                spent += mean_spend * (0.5 + uniform());
                if uniform() < dropout {
                    break;
                }
            }
            let history = History {
                frequency: repeats,
                recency: last.min(age),
                t: (age * 100.0_f64).round() / 100.0,
            };
            let monetary = if repeats > 0.0 { spent / repeats } else { 0.0 };
            (history, monetary)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, relative: f64) -> bool {
        (a - b).abs() <= relative * b.abs().max(1e-300)
    }

    #[test]
    fn digamma_matches_known_values() {
        // ψ(1) = −γ, ψ(1/2) = −γ − 2 ln 2, ψ(10) from tables.
        let gamma = 0.577_215_664_901_532_9;
        assert!(close(digamma(1.0), -gamma, 1e-13));
        assert!(close(digamma(0.5), -gamma - 2.0 * 2f64.ln(), 1e-13));
        assert!(close(digamma(10.0), 2.251_752_589_066_721, 1e-13));
        assert!(close(digamma(123.4), 4.811_373_775_116_278, 1e-13));
    }

    #[test]
    fn gradients_match_finite_differences() {
        let rows = [[2.0, 0.3, 0.9], [0.0, 0.0, 1.0], [5.0, 0.8, 0.85]]
            .iter()
            .map(|h| History::from_slice(h))
            .collect();
        let bg = Weighted::new((rows, vec![1.0, 2.0, 1.0]), 0.01);
        let gg = Weighted::new(
            (
                vec![(1.0, 20.0), (3.0, 45.5), (7.0, 12.25)],
                vec![1.0, 1.0, 3.0],
            ),
            0.0,
        );
        let check = |l: &dyn Likelihood, at: &[f64]| {
            let (_, gradient) = l.value_and_gradient(at);
            for i in 0..at.len() {
                let h = 1e-6;
                let mut up = at.to_vec();
                let mut down = at.to_vec();
                up[i] += h;
                down[i] -= h;
                let numeric =
                    (l.value_and_gradient(&up).0 - l.value_and_gradient(&down).0) / (2.0 * h);
                assert!(
                    (numeric - gradient[i]).abs() < 1e-6,
                    "{i}: {numeric} vs {}",
                    gradient[i]
                );
            }
        };
        check(&bg, &[-0.5, 0.7, 0.2, 1.1]);
        check(&gg, &[1.5, 1.2, 2.7]);
    }

    #[test]
    fn hypergeometric_branches_agree() {
        // Where both converge, the series and Euler's transformation give one value.
        let (a, b, c, z) = (3.2, 4.5, 9.1, 0.7);
        let direct = gauss_series(a, b, c, z).unwrap().ln();
        let euler = gauss_series(c - a, c - b, c, z).unwrap().ln() + (c - a - b) * (1.0 - z).ln();
        assert!(close(direct, euler, 1e-12), "{direct} vs {euler}");
    }

    #[test]
    fn nothing_to_learn_is_refused() {
        let none = [History {
            frequency: 0.0,
            recency: 0.0,
            t: 10.0,
        }];
        assert!(matches!(
            fit_bg_nbd(&none, 0.0),
            Err(FitError::Degenerate(_))
        ));
        assert!(matches!(
            fit_gamma_gamma(&[(0.0, 5.0)], 0.0),
            Err(FitError::Degenerate(_))
        ));
    }

    /// A likelihood for the optimiser's own tests, counting its evaluations.
    struct Counted<F: Fn(&[f64]) -> (f64, Vec<f64>)>(F, std::cell::Cell<usize>);

    impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> Likelihood for Counted<F> {
        fn value_and_gradient(&self, log_params: &[f64]) -> (f64, Vec<f64>) {
            self.1.set(self.1.get() + 1);
            (self.0)(log_params)
        }
    }

    #[test]
    fn rounding_noise_at_the_minimum_ends_the_search() {
        // Flat to f64 with a gradient just above the tolerance: what a mean over 100k customers
        // looks like at its minimum. No step lowers the cost, so the fit stops there.
        let flat = Counted(|_: &[f64]| (-3.82, vec![1.1e-7; 4]), Default::default());
        let fitted = minimise(&flat, 4).unwrap();
        assert_eq!(fitted, vec![START.exp(); 4]);
        assert!(
            flat.1.get() <= 2 * LINE_SEARCH_STEPS + 1,
            "{}",
            flat.1.get()
        );
    }

    #[test]
    fn a_supremum_without_a_maximum_is_refused_early() {
        // 1 / (1 + x²) falls for ever, slowly: the parameter runs off and the fit says so.
        let falling = Counted(
            |x: &[f64]| {
                let square = 1.0 + x[0] * x[0];
                (1.0 / square, vec![-2.0 * x[0] / (square * square)])
            },
            Default::default(),
        );
        let error = minimise(&falling, 1).unwrap_err().to_string();
        assert!(error.contains("grows without bound"), "{error}");
        assert!(falling.1.get() < 10_000, "{}", falling.1.get());
    }

    #[test]
    fn simulated_shops_are_fitted() {
        let customers = simulated_customers(2000, 3);
        let histories: Vec<History> = customers.iter().map(|(h, _)| *h).collect();
        let fitted = fit_bg_nbd(&histories, 0.0).unwrap();
        assert!(fitted.r > 0.0 && fitted.alpha > 0.0 && fitted.a > 0.0 && fitted.b > 0.0);
        let spend: Vec<(f64, f64)> = customers.iter().map(|(h, m)| (h.frequency, *m)).collect();
        let fitted = fit_gamma_gamma(&spend, 0.0).unwrap();
        // The population's mean spend per purchase is near the simulated one (about 40).
        let mean = fitted.v * fitted.p / (fitted.q - 1.0);
        assert!((20.0..80.0).contains(&mean), "{fitted:?}");
    }
}
