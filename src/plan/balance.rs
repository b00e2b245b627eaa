//! Longest processing time first: the heaviest item onto the least-loaded bin, which is within
//! 4/3 of the optimal makespan. Files into the parts of a split shard and shards into the
//! partitions of a CI matrix both go through here.
//!
//! Deterministic by construction, so that every job of a matrix computes the same bins on its
//! own: weights are whole milliseconds (integer sums come out the same on every machine), and
//! every tie is broken by position — the heavier item first, then the earlier one; the lighter
//! bin first, then the one with fewer items (an empty bin is taken before a bin of weightless
//! items, so the first `bins` items land in `bins` different bins), then the lower-numbered one.

/// Assigns items of the given weights (milliseconds) to `bins` bins; returns, per bin, the
/// items' indices in their original order.
pub fn balance(weights: &[u64], bins: usize) -> Vec<Vec<usize>> {
    let bins = bins.max(1);
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| weights[b].cmp(&weights[a]).then(a.cmp(&b)));
    let mut load = vec![0u64; bins];
    let mut out = vec![Vec::new(); bins];
    for item in order {
        let lightest = (0..bins).min_by_key(|&b| (load[b], out[b].len(), b)).unwrap_or(0);
        load[lightest] = load[lightest].saturating_add(weights[item]);
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
    fn the_heaviest_items_go_to_different_bins() {
        let bins = balance(&[10, 1, 9, 1, 1], 2);
        assert_eq!(bins, vec![vec![0, 3], vec![1, 2, 4]]);
    }

    #[test]
    fn jobs_past_the_item_count_stay_empty_so_capping_them_changes_nothing() {
        let weights = [3, 0, 7, 0, 1];
        let capped = balance(&weights, weights.len());
        let wide = balance(&weights, 12);
        assert_eq!(&wide[..weights.len()], &capped[..]);
        assert!(wide[weights.len()..].iter().all(Vec::is_empty), "{wide:?}");
    }

    #[test]
    fn weightless_items_still_fill_every_bin_before_sharing_one() {
        assert_eq!(balance(&[0, 0, 0], 3), vec![vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn every_item_lands_in_exactly_one_bin() {
        let weights: Vec<u64> = (0..97).map(|i| i * 37 % 11).collect();
        let bins = balance(&weights, 7);
        let mut all: Vec<usize> = bins.concat();
        all.sort_unstable();
        assert_eq!(all, (0..97).collect::<Vec<_>>());
    }
}
