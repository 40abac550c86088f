//! Sparse histograms: the non-zero buckets of a decoded histogram, and what ingest does with
//! them.

use super::*;

/// A decoded histogram as its non-zero buckets: `(index, count)` pairs in ascending index
/// order, where an index is a slot of the counts array `hdrhistogram` would lay out for the
/// histogram's lowest discernible value and significant figures. What [`decode_sparse`]
/// returns; [`SparseHistogram::to_histogram`] makes the full (compact) histogram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseHistogram {
    pub(super) low: u64,
    pub(super) high: u64,
    pub(super) sigfig: u8,
    pub(super) layout: Layout,
    pub(super) buckets: Buckets,
    pub(super) total: u64,
}

/// The `(index, count)` pairs of a [`SparseHistogram`], 32-bit when every index and count
/// fits (always, for real histograms: a 10 s report holds a few thousand values), else 64-bit.
/// Narrow pairs halve what a decoded report takes (16 KB instead of 32 KB for a jitter
/// histogram), so ingest copies and later reads half as much memory. Always narrow when the
/// pairs fit, so equal histograms compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Buckets {
    Narrow(Box<[(u32, u32)]>),
    Wide(Box<[(u64, u64)]>),
}

impl Buckets {
    pub(super) fn new(pairs: &[(u64, u64)]) -> Self {
        let fits =
            |&(index, count): &(u64, u64)| index <= u32::MAX.into() && count <= u32::MAX.into();
        if pairs.iter().all(fits) {
            // Lossless: checked just above.
            Buckets::Narrow(pairs.iter().map(|&(i, c)| (i as u32, c as u32)).collect())
        } else {
            Buckets::Wide(pairs.into())
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Buckets::Narrow(b) => b.len(),
            Buckets::Wide(b) => b.len(),
        }
    }

    pub(super) fn last(&self) -> Option<(u64, u64)> {
        self.iter().next_back()
    }

    pub(super) fn iter(&self) -> RawBuckets<'_> {
        RawBuckets(match self {
            Buckets::Narrow(b) => RawIter::Narrow(b.iter()),
            Buckets::Wide(b) => RawIter::Wide(b.iter()),
        })
    }

    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            Buckets::Narrow(b) => std::mem::size_of_val::<[(u32, u32)]>(b),
            Buckets::Wide(b) => std::mem::size_of_val::<[(u64, u64)]>(b),
        }
    }
}

/// The non-zero buckets of a [`SparseHistogram`] as `(index, count)`, ascending
/// ([`SparseHistogram::raw_buckets`]).
#[derive(Debug, Clone)]
pub struct RawBuckets<'a>(RawIter<'a>);

#[derive(Debug, Clone)]
pub(super) enum RawIter<'a> {
    Narrow(std::slice::Iter<'a, (u32, u32)>),
    Wide(std::slice::Iter<'a, (u64, u64)>),
}

impl Iterator for RawBuckets<'_> {
    type Item = (u64, u64);

    #[inline]
    fn next(&mut self) -> Option<(u64, u64)> {
        match &mut self.0 {
            RawIter::Narrow(it) => it.next().map(|&(i, c)| (u64::from(i), u64::from(c))),
            RawIter::Wide(it) => it.next().copied(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.len();
        (len, Some(len))
    }

    // One match for the whole walk rather than one per bucket.
    #[inline]
    fn fold<B, F: FnMut(B, (u64, u64)) -> B>(self, init: B, mut f: F) -> B {
        match self.0 {
            RawIter::Narrow(it) => {
                it.fold(init, |acc, &(i, c)| f(acc, (u64::from(i), u64::from(c))))
            }
            RawIter::Wide(it) => it.fold(init, |acc, &pair| f(acc, pair)),
        }
    }
}

impl DoubleEndedIterator for RawBuckets<'_> {
    fn next_back(&mut self) -> Option<(u64, u64)> {
        match &mut self.0 {
            RawIter::Narrow(it) => it.next_back().map(|&(i, c)| (u64::from(i), u64::from(c))),
            RawIter::Wide(it) => it.next_back().copied(),
        }
    }
}

impl ExactSizeIterator for RawBuckets<'_> {
    fn len(&self) -> usize {
        match &self.0 {
            RawIter::Narrow(it) => it.len(),
            RawIter::Wide(it) => it.len(),
        }
    }
}

/// One non-zero bucket of a [`SparseHistogram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseBucket {
    /// Index in the counts array.
    pub index: u64,
    /// Lowest value counted in the bucket (`Histogram::value_from_index`).
    pub value: u64,
    /// Highest value counted in the bucket (`Histogram::highest_equivalent`), what
    /// `iter_recorded` reports as `value_iterated_to`.
    pub highest: u64,
    /// Count, never 0.
    pub count: u64,
}

impl SparseHistogram {
    /// The non-zero slots of a counts array of stallwatch's layout ([`new_histogram`], as
    /// [`Encoder::encode_counts_into`] takes it), e.g. a merged row, as a histogram with
    /// stallwatch's header. `None` if `counts` has more than [`STALLWATCH_SLOTS`] slots.
    pub fn from_stallwatch_counts(counts: &[u64]) -> Option<SparseHistogram> {
        if counts.len() > STALLWATCH_SLOTS {
            return None;
        }
        // One pass to size the pairs (and pick their width), one to fill them.
        let (mut nonzero, mut largest, mut total) = (0usize, 0u64, 0u64);
        for &count in counts {
            nonzero += usize::from(count != 0);
            largest = largest.max(count);
            total = total.saturating_add(count);
        }
        let pairs = (0u64..).zip(counts).filter(|&(_, &count)| count != 0);
        // Indexes are below STALLWATCH_SLOTS, so they always fit 32 bits.
        let buckets = if largest <= u64::from(u32::MAX) {
            let mut narrow = Vec::with_capacity(nonzero);
            narrow.extend(pairs.map(|(index, &count)| (index as u32, count as u32)));
            Buckets::Narrow(narrow.into_boxed_slice())
        } else {
            let mut wide = Vec::with_capacity(nonzero);
            wide.extend(pairs.map(|(index, &count)| (index, count)));
            Buckets::Wide(wide.into_boxed_slice())
        };
        Some(SparseHistogram {
            low: 1,
            high: HIGHEST_TRACKABLE_US,
            sigfig: SIGNIFICANT_FIGURES,
            layout: STALLWATCH_LAYOUT,
            buckets,
            total,
        })
    }

    /// Total count (saturating, as `Histogram::len`).
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Lowest discernible value from the header.
    pub fn low(&self) -> u64 {
        self.low
    }

    /// Highest trackable value from the header.
    pub fn high(&self) -> u64 {
        self.high
    }

    /// Significant figures from the header.
    pub fn sigfig(&self) -> u8 {
        self.sigfig
    }

    /// Whether the layout is stallwatch's ([`new_histogram`]): lowest discernible value 1 and
    /// [`SIGNIFICANT_FIGURES`], so indexes are those of every stallwatch histogram.
    pub fn is_stallwatch_layout(&self) -> bool {
        self.low == 1 && self.sigfig == SIGNIFICANT_FIGURES
    }

    /// Number of non-zero buckets.
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// `(index, count)` of the non-zero buckets, ascending.
    pub fn raw_buckets(&self) -> RawBuckets<'_> {
        self.buckets.iter()
    }

    /// Counts-array index of the last non-zero bucket, `None` when there is none.
    pub fn last_index(&self) -> Option<u64> {
        self.buckets.last().map(|(index, _)| index)
    }

    /// The lowest value counted at counts-array `index` in this histogram's layout.
    pub fn value_for(&self, index: u64) -> u64 {
        self.layout.value_for(index)
    }

    /// The highest value counted at counts-array `index` in this histogram's layout.
    pub fn highest_at(&self, index: u64) -> u64 {
        self.layout.highest_equivalent(index)
    }

    /// The largest counts-array index whose values are all at most `value` in this
    /// histogram's layout (each bucket of index `i <= last_index_at_most(v)` has its
    /// [`SparseBucket::highest`] `<= v`), `None` when even index 0 holds larger values.
    /// Lets a caller place buckets against fixed bounds by comparing indexes.
    pub fn last_index_at_most(&self, value: u64) -> Option<u64> {
        let index = self.layout.index_for(value);
        if self.layout.highest_equivalent(index) <= value {
            Some(index)
        } else {
            index.checked_sub(1)
        }
    }

    /// The non-zero buckets, ascending, with their value range.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = SparseBucket> + '_ {
        let layout = self.layout;
        self.buckets.iter().map(move |(index, count)| SparseBucket {
            index,
            value: layout.value_for(index),
            highest: layout.highest_equivalent(index),
            count,
        })
    }

    /// As `Histogram::max`: the highest value equivalent to the largest recorded value, 0 if
    /// only zeros (or nothing) were recorded.
    pub fn max(&self) -> u64 {
        match self.buckets.last() {
            Some((index, _)) if self.layout.value_for(index) > 0 => {
                self.layout.highest_equivalent(index)
            }
            _ => 0,
        }
    }

    /// As `Histogram::min_nz`: the lowest value equivalent to the smallest non-zero recorded
    /// value, `u64::MAX` if there is none.
    pub fn min_nz(&self) -> u64 {
        self.buckets
            .iter()
            .map(|(index, _)| self.layout.value_for(index))
            .find(|&v| v > self.layout.unit_mask())
            .unwrap_or(u64::MAX)
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.heap_bytes()
    }

    /// The full histogram, compact as [`decode`] makes it: counts up to the largest value
    /// held, auto-resizing when that is less than the header's range.
    pub fn to_histogram(&self) -> Result<Histogram<u64>, HdrError> {
        let slots = self.buckets.last().map_or(0, |(index, _)| index.saturating_add(1));
        // Compact: the smallest range whose counts array holds the slots present (never more
        // than the header's).
        let compact =
            compact_high(self.low, u32::from(self.sigfig), slots).filter(|&c| c < self.high);
        let mut h =
            Histogram::<u64>::new_with_bounds(self.low, compact.unwrap_or(self.high), self.sigfig)
                .map_err(|e| HdrError::Deserialize(format!("{e:?}")))?;
        for (index, count) in self.buckets.iter() {
            h.record_n(self.layout.value_for(index), count).map_err(|_| {
                HdrError::Counts("more counts than the histogram's value range holds")
            })?;
        }
        if compact.is_some() {
            h.auto(true);
        }
        Ok(h)
    }
}
