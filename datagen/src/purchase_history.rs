//! A shop's purchase history for one customer, over years: the process the BG/NBD model
//! describes, so that value models (`clv`, `rfm`, `lifecycle`) have something to learn. Each
//! customer buys at a rate of its own (Gamma-distributed, shape 0.8, mean once in 50 days;
//! exponential gaps), may stop after any purchase (a chance of its own, Beta(1, 3): 25% on
//! average), and spends around a mean of its own (Gamma, shape 4, mean 120; each purchase
//! ±50%); one in twelve customers who stop comes back 200–400 days later and buys again (a
//! win-back, which BG/NBD does not model: real shops have them).

use rand::Rng;

const MICROS_PER_DAY: f64 = 86_400_000_000.0;

/// One purchase: when (µs since the epoch) and its revenue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Purchase {
    /// When it happened.
    pub at: i64,
    /// What it was worth.
    pub revenue: f64,
}

/// A Gamma(shape, 1) draw (Marsaglia & Tsang; shapes below 1 boosted by U^(1/shape)).
fn gamma(rng: &mut impl Rng, shape: f64) -> f64 {
    if shape < 1.0 {
        let boost = rng.random::<f64>().powf(1.0 / shape);
        return gamma(rng, shape + 1.0) * boost;
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        // A standard normal draw (Box-Muller).
        let (u1, u2) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
        let x = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let v = (1.0 + c * x).powi(3);
        if v > 0.0 && (1.0 - rng.random::<f64>()).ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A Beta(a, b) draw.
fn beta(rng: &mut impl Rng, a: f64, b: f64) -> f64 {
    let x = gamma(rng, a);
    x / (x + gamma(rng, b))
}

/// The purchases of one customer between `start` and `end` (µs since the epoch), in time order.
pub fn purchase_history(rng: &mut impl Rng, start: i64, end: i64) -> Vec<Purchase> {
    let mut purchases = Vec::new();
    if end <= start {
        return purchases;
    }
    // Purchases per day: Gamma(0.8) scaled to a mean of 1 / 50 days.
    let rate = gamma(rng, 0.8) / (0.8 * 50.0);
    let days_per_purchase = 1.0 / rate.max(1e-6);
    let mut dropout = beta(rng, 1.0, 3.0);
    let mean_spend = gamma(rng, 4.0) * 30.0;
    let mut at = rng.random_range(start..end) as f64;
    while at < end as f64 {
        let revenue = (mean_spend * rng.random_range(0.5..1.5) * 100.0).round() / 100.0;
        purchases.push(Purchase {
            at: at as i64,
            revenue,
        });
        if rng.random_bool(dropout) {
            if !rng.random_bool(1.0 / 12.0) {
                break;
            }
            at += rng.random_range(200.0..400.0) * MICROS_PER_DAY;
            dropout = beta(rng, 1.0, 3.0);
            continue;
        }
        let gap_days = -(1.0 - rng.random::<f64>()).ln() * days_per_purchase;
        at += gap_days.max(1.0 / 1440.0) * MICROS_PER_DAY;
    }
    purchases
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn histories_look_like_a_shop() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (start, end) = (0, (730.0 * MICROS_PER_DAY) as i64);
        let histories: Vec<Vec<Purchase>> = (0..2000)
            .map(|_| purchase_history(&mut rng, start, end))
            .collect();
        let one_time = histories.iter().filter(|h| h.len() == 1).count();
        let loyal = histories.iter().filter(|h| h.len() >= 5).count();
        // Some buy once, some often; every purchase is in the window, in order.
        assert!(
            one_time > 200 && loyal > 200,
            "{one_time} one-time, {loyal} loyal"
        );
        for history in &histories {
            assert!(!history.is_empty());
            assert!(history.windows(2).all(|w| w[0].at <= w[1].at));
            assert!(
                history
                    .iter()
                    .all(|p| p.at >= start && p.at < end && p.revenue > 0.0)
            );
        }
        // A win-back: some customer has a gap of more than 200 days.
        let gap = (200.0 * MICROS_PER_DAY) as i64;
        assert!(
            histories
                .iter()
                .any(|h| h.windows(2).any(|w| w[1].at - w[0].at > gap))
        );
    }
}
