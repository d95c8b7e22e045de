//! The draw's fairness, measured: a shopper's chance of a good position must not depend
//! on when they registered within the window.
//!
//! Each simulated draw compares the arrival times of its winners (positions up to the
//! units on sale) with everyone else's by a two-sample Kolmogorov–Smirnov test; over many
//! draws with fixed seeds, those p-values must look uniform (a second KS test, against
//! the uniform law). The same measure applied to plain arrival order must reject, which
//! shows the test can see a dependence when there is one.
//!
//! `FLASHGATE_LONG=1` runs the full size (1,000 draws of 10,000 entrants for 500
//! units, best with `--release`); the default is a short run that still passes and
//! rejects as stated.

use super::permute::Permutation;

/// A small deterministic generator (SplitMix64) so the simulation is the same on every
/// run and platform.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// P(K > z) for the Kolmogorov distribution (the two series of Numerical Recipes, 3rd
/// ed., §6.14, each used where it converges fast).
fn kolmogorov_q(z: f64) -> f64 {
    if z < 0.042 {
        return 1.0;
    }
    if z < 1.18 {
        let y = (-std::f64::consts::PI.powi(2) / (8.0 * z * z)).exp();
        let cdf =
            (2.0 * std::f64::consts::PI).sqrt() / z * (y + y.powi(9) + y.powi(25) + y.powi(49));
        1.0 - cdf
    } else {
        let x = (-2.0 * z * z).exp();
        2.0 * (x - x.powi(4) + x.powi(9))
    }
}

/// The asymptotic p-value of a KS statistic `d` for an effective sample size `en`, with
/// Stephens' correction for moderate sizes.
fn ks_p_value(d: f64, en: f64) -> f64 {
    let root = en.sqrt();
    kolmogorov_q((root + 0.12 + 0.11 / root) * d)
}

/// Two-sample KS p-value of the winners against the others, given a flag per entrant in
/// arrival order (the statistic depends only on how the two interleave in time).
fn winners_vs_others(winner_in_arrival_order: &[bool]) -> f64 {
    let winners = winner_in_arrival_order.iter().filter(|&&w| w).count() as f64;
    let others = winner_in_arrival_order.len() as f64 - winners;
    let (mut seen_w, mut seen_o, mut d) = (0.0f64, 0.0f64, 0.0f64);
    for &w in winner_in_arrival_order {
        if w {
            seen_w += 1.0;
        } else {
            seen_o += 1.0;
        }
        d = d.max((seen_w / winners - seen_o / others).abs());
    }
    ks_p_value(d, winners * others / (winners + others))
}

/// One-sample KS p-value of `ps` against the uniform law on [0, 1].
fn uniform_p_value(mut ps: Vec<f64>) -> f64 {
    ps.sort_by(f64::total_cmp);
    let n = ps.len() as f64;
    let d = ps
        .iter()
        .enumerate()
        .map(|(i, &p)| ((i as f64 + 1.0) / n - p).max(p - i as f64 / n))
        .fold(0.0, f64::max);
    ks_p_value(d, n)
}

/// The sizes of a simulation.
struct Size {
    draws: u64,
    entrants: u64,
    units: u64,
}

fn size() -> Size {
    if std::env::var("FLASHGATE_LONG").is_ok_and(|v| v == "1") {
        Size {
            draws: 1_000,
            entrants: 10_000,
            units: 500,
        }
    } else {
        Size {
            draws: 100,
            entrants: 2_000,
            units: 100,
        }
    }
}

/// How positions are given.
#[derive(Clone, Copy)]
enum Order {
    /// The keyed permutation of the global index (shard by shard).
    Drawn,
    /// First come, first served: fair start off, nothing drawn.
    Arrival,
}

const SHARDS: u64 = 16;
const WINDOW_MS: f64 = 300_000.0;
const LAST_MS: f64 = 100.0;

/// One draw's p-value: entrants register over a five-minute window, 30% of them in its
/// last 100 ms, each on a random shard.
fn draw_p_value(rng: &mut SplitMix, size: &Size, order: Order) -> f64 {
    let n = usize::try_from(size.entrants).expect("small");
    let mut arrivals: Vec<(f64, u64)> = (0..n)
        .map(|k| {
            let at = if k * 10 < n * 3 {
                WINDOW_MS - LAST_MS * rng.unit()
            } else {
                WINDOW_MS * rng.unit()
            };
            (at, rng.next() % SHARDS)
        })
        .collect();
    arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut winner = vec![false; n];
    match order {
        Order::Arrival => winner[..usize::try_from(size.units).expect("small")].fill(true),
        Order::Drawn => {
            // Global index: by shard, then by arrival in the shard.
            let mut global: Vec<usize> = (0..n).collect();
            global.sort_by_key(|&k| arrivals[k].1);
            let mut seed = [0u8; 32];
            for chunk in seed.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next().to_be_bytes());
            }
            let draw = Permutation::new(&seed, size.entrants);
            for p in 0..size.units {
                let i = draw.invert(p).expect("p < entrants");
                winner[global[usize::try_from(i).expect("small")]] = true;
            }
        }
    }
    winners_vs_others(&winner)
}

fn p_values(order: Order, stream: u64) -> Vec<f64> {
    let size = size();
    let mut rng = SplitMix(stream);
    (0..size.draws)
        .map(|_| draw_p_value(&mut rng, &size, order))
        .collect()
}

#[test]
fn kolmogorov_tail_matches_tables() {
    // Critical values of the Kolmogorov distribution: 10%, 5% and 1%.
    for (z, q) in [(1.2238, 0.10), (1.3581, 0.05), (1.6276, 0.01)] {
        assert!(
            (kolmogorov_q(z) - q).abs() < 5e-4,
            "Q({z}) = {}",
            kolmogorov_q(z)
        );
    }
    assert!((kolmogorov_q(0.5) - 0.9639).abs() < 5e-4);
    assert!((kolmogorov_q(1.0) - 0.2700).abs() < 5e-4);
}

#[test]
fn the_draw_is_independent_of_arrival_time() {
    let p = uniform_p_value(p_values(Order::Drawn, 1));
    assert!(p >= 0.01, "winners depend on arrival time: p = {p:e}");
}

#[test]
fn arrival_order_is_caught_depending_on_arrival_time() {
    let p = uniform_p_value(p_values(Order::Arrival, 1));
    assert!(
        p < 1e-6,
        "the test cannot see first come, first served: p = {p:e}"
    );
}
