//! Sorting with one copy of the sort algorithm in the binary.
//!
//! Every `slice::sort_by_key` call on a new element type makes the compiler emit another copy of
//! the standard sort (3 to 8 KB of WebAssembly each, and the cart sorts a dozen types). These
//! helpers sort a list of positions with one non-generic routine and then move the elements into
//! place, so only the small move step is repeated per type. The sort is stable.
//!
//! For the same reason the browser cart keeps its small maps and sets as sorted lists
//! ([`SortedMap`], [`SortedSet`]) rather than B-trees.

use std::borrow::Borrow;
use std::cmp::Ordering;

/// Sorts `v` by `cmp`, stably.
pub fn sort_by<T>(v: &mut Vec<T>, mut cmp: impl FnMut(&T, &T) -> Ordering) {
    if v.len() < 2 {
        return;
    }
    let mut at: Vec<usize> = (0..v.len()).collect();
    positions(&mut at, &mut |a, b| cmp(&v[a], &v[b]));
    let mut taken: Vec<Option<T>> = v.drain(..).map(Some).collect();
    v.extend(at.into_iter().filter_map(|i| taken[i].take()));
}

/// Sorts `v` by the key `key` gives, stably.
pub fn sort_by_key<T, K: Ord>(v: &mut Vec<T>, mut key: impl FnMut(&T) -> K) {
    sort_by(v, |a, b| key(a).cmp(&key(b)));
}

/// Sorts `v` in its natural order, stably.
pub fn sort<T: Ord>(v: &mut Vec<T>) {
    sort_by(v, T::cmp);
}

/// The one sort: positions, compared through `cmp`. A bottom-up merge sort (stable, n log n
/// comparisons), a few hundred bytes of code where the standard sort's was 4 KB in the browser
/// module; the lists sorted here are a cart's (at most a few hundred entries).
fn positions(at: &mut [usize], cmp: &mut dyn FnMut(usize, usize) -> Ordering) {
    let n = at.len();
    let mut merged = vec![0; n];
    let mut width = 1;
    while width < n {
        let mut start = 0;
        while start < n {
            let (mid, end) = ((start + width).min(n), (start + 2 * width).min(n));
            let (mut l, mut r, mut k) = (start, mid, start);
            while l < mid && r < end {
                // The left run's element first on a tie: stable.
                let take_right = cmp(at[r], at[l]) == Ordering::Less;
                merged[k] = if take_right { at[r] } else { at[l] };
                if take_right {
                    r += 1;
                } else {
                    l += 1;
                }
                k += 1;
            }
            let rest = if l < mid { &at[l..mid] } else { &at[r..end] };
            merged[k..k + rest.len()].copy_from_slice(rest);
            start = end;
        }
        at.copy_from_slice(&merged);
        width *= 2;
    }
}

/// A map kept as a list sorted by key, for the handful of entries a cart has: the same answers
/// as a `BTreeMap` (a repeated key in `collect` keeps the last value) for far less code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortedMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap(Vec::new())
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    pub fn new() -> Self {
        SortedMap(Vec::new())
    }

    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.0.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`; returns the value it had.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for SortedMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut list: Vec<(K, V)> = iter.into_iter().collect();
        sort_by(&mut list, |a, b| a.0.cmp(&b.0));
        // Of equal keys (now side by side, in their order), the last value stays.
        list.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(&mut later.1, &mut kept.1);
            }
            same
        });
        SortedMap(list)
    }
}

impl<K: serde::Serialize, V: serde::Serialize> serde::Serialize for SortedMap<K, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// A set kept as a sorted list: see [`SortedMap`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortedSet<T>(SortedMap<T, ()>);

impl<T> Default for SortedSet<T> {
    fn default() -> Self {
        SortedSet(SortedMap::default())
    }
}

impl<T: Ord> SortedSet<T> {
    pub fn contains<Q: Ord + ?Sized>(&self, value: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.0.contains_key(value)
    }

    /// Adds `value`; returns whether it was new.
    pub fn insert(&mut self, value: T) -> bool {
        self.0.insert(value, ()).is_none()
    }

    pub fn is_subset(&self, other: &SortedSet<T>) -> bool {
        self.iter().all(|v| other.contains(v))
    }

    /// The values in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.keys()
    }
}

impl<T: Ord> FromIterator<T> for SortedSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        SortedSet(iter.into_iter().map(|v| (v, ())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sorts_as_the_standard_stable_sort_does(v in proptest::collection::vec((0u8..8, any::<u16>()), 0..200)) {
            let mut ours = v.clone();
            sort_by_key(&mut ours, |p| p.0);
            let mut std = v.clone();
            std.sort_by_key(|p| p.0);
            prop_assert_eq!(&ours, &std);
            let mut ours = v.clone();
            sort(&mut ours);
            let mut std = v;
            std.sort();
            prop_assert_eq!(ours, std);
        }

        #[test]
        fn a_sorted_map_answers_as_a_btree_map_does(
            built in proptest::collection::vec((0u8..20, any::<u8>()), 0..40),
            edits in proptest::collection::vec((any::<bool>(), 0u8..20, any::<u8>()), 0..40),
        ) {
            let mut ours: SortedMap<u8, u8> = built.iter().copied().collect();
            let mut theirs: std::collections::BTreeMap<u8, u8> = built.into_iter().collect();
            for (insert, k, v) in edits {
                if insert {
                    prop_assert_eq!(ours.insert(k, v), theirs.insert(k, v));
                } else {
                    prop_assert_eq!(ours.remove(&k), theirs.remove(&k));
                }
                prop_assert_eq!(ours.get(&k), theirs.get(&k));
            }
            prop_assert_eq!(ours.len(), theirs.len());
            prop_assert_eq!(ours.iter().collect::<Vec<_>>(), theirs.iter().collect::<Vec<_>>());
            prop_assert_eq!(serde_json::to_string(&ours).unwrap(), serde_json::to_string(&theirs).unwrap());
        }
    }

    #[test]
    fn a_sorted_set_keeps_each_value_once_in_order() {
        let mut set: SortedSet<&str> = ["b", "a", "b"].into_iter().collect();
        assert!(!set.insert("a"));
        assert!(set.insert("c"));
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), ["a", "b", "c"]);
        let small: SortedSet<&str> = ["c", "a"].into_iter().collect();
        assert!(small.is_subset(&set));
        assert!(!set.is_subset(&small));
    }
}
