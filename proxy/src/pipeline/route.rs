//! The order in which a route's targets are tried: one weighted pick first, then the others as
//! fallbacks (heaviest first). Pure arithmetic over the snapshot, seeded by the caller.

use crate::config::Route;

/// Target indices in attempt order. `seed` is any random number.
pub fn attempt_order(route: &Route, seed: u64) -> Vec<usize> {
    let n = route.targets.len();
    let mut order = Vec::with_capacity(n);
    if n == 0 {
        return order;
    }
    let first = if route.total_weight == 0 {
        0
    } else {
        let mut r = seed % route.total_weight;
        let mut pick = 0;
        for (i, t) in route.targets.iter().enumerate() {
            let w = u64::from(t.weight);
            if r < w {
                pick = i;
                break;
            }
            r -= w;
        }
        pick
    };
    order.push(first);
    let mut rest: Vec<usize> = (0..n).filter(|&i| i != first).collect();
    rest.sort_by_key(|&i| std::cmp::Reverse(route.targets[i].weight));
    order.extend(rest);
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn route(weights: &[u32]) -> std::sync::Arc<Route> {
        let mut text = String::from("[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n[[models]]\nname = \"m\"\ntargets = [");
        for (i, w) in weights.iter().enumerate() {
            text.push_str(&format!("{{ provider = \"p\", model = \"t{i}\", weight = {w} }},"));
        }
        text.push_str("]\n");
        load_str(&text, "t", None, 1).unwrap().route("m").unwrap().clone()
    }

    #[test]
    fn weighted_pick_follows_weights_and_every_target_stays_a_fallback() {
        let r = route(&[3, 1, 0]);
        let mut firsts = [0u32; 3];
        for seed in 0..4000u64 {
            let order = attempt_order(&r, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7);
            assert_eq!(order.len(), 3);
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, [0, 1, 2]);
            firsts[order[0]] += 1;
        }
        assert_eq!(firsts[2], 0, "weight 0 is never picked first");
        let share = f64::from(firsts[0]) / 4000.0;
        assert!((0.70..0.80).contains(&share), "share of weight 3 of 4: {share}");
    }
}
