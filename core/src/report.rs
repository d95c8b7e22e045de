//! The fairness report of a sale (`flashgate event report`): did winning depend on when
//! a shopper reached the room?
//!
//! 1. Each order carries the room position its purchase was admitted at. Positions
//!    `1..=span` (`span`: the shoppers who joined, or the highest position seen) are cut
//!    into ten arrival deciles ([`by_decile`]); each decile's wins are counted.
//! 2. The counts are compared with what winning independently of arrival would give
//!    (wins spread in proportion to each decile's size): Pearson's [`chi_square`]
//!    statistic, and its [`chi_square_p_value`] with one degree of freedom fewer than
//!    the deciles that hold positions.
//!
//! A small p-value says winning followed arrival. With positions handed out in arrival
//! order (the room before its fair-start draw), the first deciles win by design.
//!
//! 3. Each order also carries its client's network (/24 or /64, signed by the edge):
//!    [`by_network`] counts the networks that won and lists those with the most wins.

use serde::Serialize;

/// One arrival decile: positions `from..=to`, the orders won there, and how many a
/// fair sale would put there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decile {
    /// 1 to 10, earliest arrivals first.
    pub decile: u8,
    /// First position of the decile.
    pub from: u64,
    /// Last position of the decile.
    pub to: u64,
    /// Orders whose position falls in the decile.
    pub wins: u64,
    /// Orders a sale that ignored arrival would put there on average.
    pub expected: f64,
}

/// Wins by arrival decile and the χ² test against winning independently of arrival.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecileTable {
    /// Positions considered: `1..=span`.
    pub span: u64,
    /// Orders counted (those with a position).
    pub wins: u64,
    /// The deciles that hold positions (fewer than ten when `span` is below ten).
    pub deciles: Vec<Decile>,
    /// Pearson's χ² of the wins against the expected counts.
    pub chi_square: f64,
    /// Deciles minus one.
    pub degrees_of_freedom: u32,
    /// P(χ² at least this large) if winning did not depend on arrival.
    pub p_value: f64,
}

/// The wins at `positions` by arrival decile of `1..=span`; `span` grows to the highest
/// position if it is smaller. `None` without positions.
///
/// ```
/// use flashgate_core::report::by_decile;
/// let t = by_decile(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 100).expect("positions");
/// assert_eq!(t.deciles[0].wins, 10);
/// assert!(t.p_value < 1e-6);
/// ```
pub fn by_decile(positions: &[u64], span: u64) -> Option<DecileTable> {
    let highest = positions.iter().copied().filter(|&p| p > 0).max()?;
    let span = span.max(highest);
    // Decile d holds the positions p with floor((p - 1) * 10 / span) = d.
    let first_of = |d: u64| (u128::from(d) * u128::from(span)).div_ceil(10) as u64 + 1;
    let mut deciles: Vec<Decile> = (0..10u64)
        .map(|d| Decile {
            decile: d as u8 + 1,
            from: first_of(d),
            to: first_of(d + 1) - 1,
            wins: 0,
            expected: 0.0,
        })
        .collect();
    let mut wins = 0;
    for &p in positions.iter().filter(|&&p| p > 0) {
        let d = (u128::from(p - 1) * 10 / u128::from(span)) as usize;
        deciles[d].wins += 1;
        wins += 1;
    }
    deciles.retain(|d| d.to >= d.from);
    for d in &mut deciles {
        d.expected = wins as f64 * (d.to - d.from + 1) as f64 / span as f64;
    }
    let observed: Vec<u64> = deciles.iter().map(|d| d.wins).collect();
    let expected: Vec<f64> = deciles.iter().map(|d| d.expected).collect();
    let chi_square = chi_square(&observed, &expected);
    let degrees_of_freedom = deciles.len().saturating_sub(1) as u32;
    Some(DecileTable {
        span,
        wins,
        deciles,
        chi_square,
        degrees_of_freedom,
        p_value: chi_square_p_value(chi_square, degrees_of_freedom),
    })
}

/// Pearson's statistic `Σ (observed − expected)² / expected` (cells expecting nothing
/// are left out).
///
/// ```
/// use flashgate_core::report::chi_square;
/// assert_eq!(chi_square(&[5, 5], &[5.0, 5.0]), 0.0);
/// assert_eq!(chi_square(&[10, 0], &[5.0, 5.0]), 10.0);
/// ```
pub fn chi_square(observed: &[u64], expected: &[f64]) -> f64 {
    observed
        .iter()
        .zip(expected)
        .filter(|(_, &e)| e > 0.0)
        .map(|(&o, &e)| (o as f64 - e).powi(2) / e)
        .sum()
}

/// The upper tail `P(X ≥ x)` of the χ² law with `df` degrees of freedom (1 when `df`
/// is 0: nothing to test).
///
/// ```
/// use flashgate_core::report::chi_square_p_value;
/// assert!((chi_square_p_value(3.841_458_8, 1) - 0.05).abs() < 1e-6);
/// ```
pub fn chi_square_p_value(x: f64, df: u32) -> f64 {
    if df == 0 || x <= 0.0 || x.is_nan() {
        return 1.0;
    }
    gamma_q(f64::from(df) / 2.0, x / 2.0)
}

/// Most terms of a series or continued fraction; they converge in well under a hundred
/// for the sizes of a report.
const MAX_TERMS: usize = 1_000;

/// The regularized upper incomplete gamma function `Q(a, x)`: by its series below
/// `a + 1`, by its continued fraction above (Numerical Recipes, 3rd ed., §6.2).
fn gamma_q(a: f64, x: f64) -> f64 {
    let front = (a * x.ln() - x - ln_gamma(a)).exp();
    if x < a + 1.0 {
        let (mut term, mut sum, mut n) = (1.0 / a, 1.0 / a, a);
        for _ in 0..MAX_TERMS {
            n += 1.0;
            term *= x / n;
            sum += term;
            if term.abs() < sum.abs() * f64::EPSILON {
                break;
            }
        }
        (1.0 - sum * front).clamp(0.0, 1.0)
    } else {
        // Modified Lentz's method.
        let tiny = f64::MIN_POSITIVE / f64::EPSILON;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..MAX_TERMS {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let step = d * c;
            h *= step;
            if (step - 1.0).abs() < f64::EPSILON {
                break;
            }
        }
        (front * h).clamp(0.0, 1.0)
    }
}

/// `ln Γ(a)` for `a > 0` (Lanczos, g = 7, nine terms: about 15 digits).
fn ln_gamma(a: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = a - 1.0;
    let t = x + 7.5;
    let sum = G
        .iter()
        .enumerate()
        .skip(1)
        .fold(G[0], |s, (i, g)| s + g / (x + i as f64));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// How many of the networks' wins [`by_network`] lists, most first.
pub const TOP_NETWORKS: usize = 10;

/// A network's wins: orders whose purchase came from a client in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkWins {
    /// The network (`core::sign::client_net`).
    pub network: String,
    /// Its orders.
    pub wins: u64,
}

/// Wins by client network: how many networks won, and the [`TOP_NETWORKS`] with the most
/// wins (ties by name). A few networks holding many wins is what a bot farm looks like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkTable {
    /// Orders that carry a network.
    pub orders: u64,
    /// Distinct networks among them.
    pub networks: u64,
    /// The networks with the most wins, most first.
    pub top: Vec<NetworkWins>,
}

/// Groups the winning orders' client networks; `None` when no order carries one.
///
/// ```
/// use flashgate_core::report::by_network;
/// let t = by_network(&["10.0.0.0/24", "10.0.1.0/24", "10.0.0.0/24"]).expect("some");
/// assert_eq!((t.orders, t.networks), (3, 2));
/// assert_eq!((t.top[0].network.as_str(), t.top[0].wins), ("10.0.0.0/24", 2));
/// ```
pub fn by_network(nets: &[&str]) -> Option<NetworkTable> {
    if nets.is_empty() {
        return None;
    }
    let mut counts: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for n in nets {
        *counts.entry(n).or_insert(0) += 1;
    }
    let networks = counts.len() as u64;
    let mut top: Vec<NetworkWins> = counts
        .into_iter()
        .map(|(network, wins)| NetworkWins {
            network: network.to_owned(),
            wins,
        })
        .collect();
    top.sort_by(|a, b| b.wins.cmp(&a.wins).then_with(|| a.network.cmp(&b.network)));
    top.truncate(TOP_NETWORKS);
    Some(NetworkTable {
        orders: nets.len() as u64,
        networks,
        top,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn p_values_match_the_tables() {
        // Critical values of the χ² law (any statistics table).
        for (x, df, p) in [
            (3.841_459, 1, 0.05),
            (6.634_897, 1, 0.01),
            (16.918_978, 9, 0.05),
            (21.665_994, 9, 0.01),
            (27.877_165, 9, 0.001),
            (4.168_159, 9, 0.9),
            (2.087_901, 9, 0.99),
        ] {
            let got = chi_square_p_value(x, df);
            assert!(close(got, p, 1e-5), "x {x} df {df}: {got} not {p}");
        }
        // Two degrees of freedom have a closed form: e^(−x/2).
        for x in [0.5, 3.0, 10.0, 40.0] {
            assert!(close(chi_square_p_value(x, 2), (-x / 2.0).exp(), 1e-12));
        }
        assert_eq!(chi_square_p_value(0.0, 9), 1.0);
        assert_eq!(chi_square_p_value(5.0, 0), 1.0);
    }

    #[test]
    fn ln_gamma_of_integers_is_the_log_of_factorials() {
        let mut factorial = 1.0f64;
        for n in 1..20 {
            assert!(close(ln_gamma(n as f64), factorial.ln(), 1e-10), "{n}");
            factorial *= n as f64;
        }
        assert!(close(
            ln_gamma(0.5),
            std::f64::consts::PI.sqrt().ln(),
            1e-12
        ));
    }

    #[test]
    fn wins_spread_over_arrival_are_not_flagged() {
        // One win in every decile of 1..=100, twice over.
        let positions: Vec<u64> = (0..20).map(|i| 5 + (i % 10) * 10).collect();
        let t = by_decile(&positions, 100).expect("positions");
        assert_eq!(t.deciles.len(), 10);
        assert!(t.deciles.iter().all(|d| d.wins == 2 && d.expected == 2.0));
        assert_eq!(
            (t.chi_square, t.degrees_of_freedom, t.p_value),
            (0.0, 9, 1.0)
        );
    }

    #[test]
    fn wins_of_the_first_arrivals_are_flagged() {
        let positions: Vec<u64> = (1..=50).collect();
        let t = by_decile(&positions, 500).expect("positions");
        assert_eq!(t.deciles[0].wins, 50);
        assert_eq!((t.deciles[0].from, t.deciles[0].to), (1, 50));
        assert_eq!(t.deciles[9].to, 500);
        // 45 too many in one decile and 5 too few in nine: 45²/5 + 9 × 5²/5 = 450.
        assert!(close(t.chi_square, 450.0, 1e-9), "{}", t.chi_square);
        assert!(t.p_value < 1e-12);
    }

    #[test]
    fn uneven_deciles_expect_in_proportion_to_their_size() {
        // Positions 1..=15: deciles of one or two positions.
        let t = by_decile(&[1, 15], 15).expect("positions");
        let sizes: Vec<u64> = t.deciles.iter().map(|d| d.to - d.from + 1).collect();
        assert_eq!(sizes.iter().sum::<u64>(), 15);
        assert!(sizes.iter().all(|&s| s == 1 || s == 2), "{sizes:?}");
        let expected: f64 = t.deciles.iter().map(|d| d.expected).sum();
        assert!(close(expected, 2.0, 1e-12));
        assert_eq!(t.deciles.first().map(|d| d.wins), Some(1));
        assert_eq!(t.deciles.last().map(|d| d.wins), Some(1));
    }

    #[test]
    fn fewer_positions_than_deciles_keep_only_deciles_that_hold_some() {
        let t = by_decile(&[1, 2, 3], 3).expect("positions");
        assert_eq!(t.deciles.len(), 3);
        assert_eq!(t.degrees_of_freedom, 2);
        assert_eq!(t.chi_square, 0.0);
    }

    #[test]
    fn the_span_grows_to_the_highest_position_and_none_without_positions() {
        assert_eq!(by_decile(&[], 100), None);
        assert_eq!(by_decile(&[0], 100), None);
        assert_eq!(by_decile(&[250], 100).expect("positions").span, 250);
    }

    #[test]
    fn networks_are_counted_and_the_busiest_listed_first() {
        assert_eq!(by_network(&[]), None);
        let many: Vec<String> = (0..15).map(|i| format!("10.0.{i}.0/24")).collect();
        let mut nets: Vec<&str> = many.iter().map(String::as_str).collect();
        nets.extend(["10.0.9.0/24"; 4]);
        let t = by_network(&nets).expect("some");
        assert_eq!((t.orders, t.networks, t.top.len()), (19, 15, TOP_NETWORKS));
        assert_eq!(
            (t.top[0].network.as_str(), t.top[0].wins),
            ("10.0.9.0/24", 5)
        );
        assert_eq!(t.top[1].network, "10.0.0.0/24", "ties by name");
    }
}
