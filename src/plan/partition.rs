//! Splitting work into balanced bins: files into the parts of a split shard, and shards into
//! the partitions of a CI matrix. Longest-processing-time-first: heaviest item to the lightest
//! bin, which is within 4/3 of optimal and, with ties broken by position, deterministic — every
//! job of a matrix computes the same assignment on its own.

use std::fmt;
use std::str::FromStr;

/// `K/N`: this job runs partition K (1-based) of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Partition {
    pub index: u32,
    pub total: u32,
}

impl FromStr for Partition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a partition: write K/N with 1 <= K <= N, e.g. 2/3");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = k.trim().parse().map_err(|_| bad())?;
        let total: u32 = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || total == 0 || index > total {
            return Err(bad());
        }
        Ok(Partition { index, total })
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.total)
    }
}

/// Assigns items with the given weights to `bins` bins; returns, per bin, the items' indices in
/// their original order.
pub fn balance(weights: &[f64], bins: usize) -> Vec<Vec<usize>> {
    let bins = bins.max(1);
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
    let mut load = vec![0.0f64; bins];
    let mut out = vec![Vec::new(); bins];
    for item in order {
        let lightest = (0..bins)
            .min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b)))
            .unwrap_or(0);
        load[lightest] += weights[item];
        out[lightest].push(item);
    }
    for bin in &mut out {
        bin.sort_unstable();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_parses_k_of_n_and_refuses_nonsense() {
        assert_eq!("2/3".parse::<Partition>(), Ok(Partition { index: 2, total: 3 }));
        for bad in ["0/3", "4/3", "3", "a/b", "1/0", ""] {
            assert!(bad.parse::<Partition>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn balance_puts_the_heaviest_items_apart() {
        let bins = balance(&[10.0, 1.0, 9.0, 1.0, 1.0], 2);
        assert_eq!(bins, vec![vec![0, 3], vec![1, 2, 4]]);
    }

    #[test]
    fn jobs_past_the_item_count_stay_empty_so_capping_them_changes_nothing() {
        let weights = [3.0, 0.0, 7.0, 0.0, 1.0];
        let capped = balance(&weights, weights.len());
        let wide = balance(&weights, 12);
        assert_eq!(&wide[..weights.len()], &capped[..]);
        assert!(wide[weights.len()..].iter().all(Vec::is_empty), "{wide:?}");
    }

    #[test]
    fn balance_uses_every_item_exactly_once() {
        let weights: Vec<f64> = (0..97).map(|i| (i * 37 % 11) as f64).collect();
        let bins = balance(&weights, 7);
        let mut all: Vec<usize> = bins.concat();
        all.sort_unstable();
        assert_eq!(all, (0..97).collect::<Vec<_>>());
    }
}
