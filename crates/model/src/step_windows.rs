//! The sample times a range query's steps read, when its steps lie further
//! apart than the window each one reads: a 30-day dashboard panel at a
//! 43-minute step reads `rate(x[5m])` over 5 minutes of every 43, and
//! storage can drop the other 38 right after decoding instead of handing
//! them to the engine.

use std::ops::Range;

use crate::Sample;

/// Windows `[t - width + 1, t]` at the step times `t = end - k * step`
/// (k = 0, 1, ...) of a selection ending at `end`: what steps `step` ms apart
/// read `width` ms back. Only worth carrying when `step > width`; the
/// selection's own `[min_t, max_t]` bounds where the steps start and end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepWindows {
    /// The last step's time (the selection's `max_t`), ms.
    pub end: i64,
    /// Distance between steps, ms (> `width`).
    pub step: i64,
    /// Samples each step reads back from its time, ms (> 0).
    pub width: i64,
}

impl StepWindows {
    /// Windows for steps `step` apart ending at `end`, each reading `width`
    /// back; `None` when they would keep every sample (windows touching or
    /// overlapping) or the numbers make no sense.
    pub fn new(end: i64, step: i64, width: i64) -> Option<Self> {
        (width > 0 && step > width).then_some(Self { end, step, width })
    }

    /// Whether a step's window holds time `t` (at or before `end`).
    pub fn keeps(&self, t: i64) -> bool {
        // Distance back from the last step, in i128: `end - t` spans up to
        // 2^64 for any two i64 times.
        let back = self.end as i128 - t as i128;
        back >= 0 && back % self.step as i128 <= (self.width - 1) as i128
    }

    /// Whether any window meets `[lo, hi]`.
    pub fn meets(&self, lo: i64, hi: i64) -> bool {
        if lo > hi || lo > self.end {
            return false;
        }
        let hi = hi.min(self.end);
        // The nearest step at or after `hi` reads back to `hi` or earlier
        // when `hi` is in a window, else its window starts after `hi`; the
        // range meets a window iff that step's window starts at or before
        // `hi` and the step itself is at or after `lo`, or `hi` is inside.
        if self.keeps(hi) {
            return true;
        }
        let back = self.end as i128 - hi as i128;
        let step = self.step as i128;
        // The first step time before `hi` (inside its window would have
        // kept `hi`): its time is the window's last instant.
        let prev_step = self.end as i128 - (back / step + 1) * step;
        prev_step >= lo as i128
    }

    /// Calls `run` with each maximal run of `items` (ascending by `time`)
    /// that one window holds, in order. Costs a division and two binary
    /// searches per window met, not per item.
    pub fn runs<T>(
        &self,
        items: &[T],
        time: impl Fn(&T) -> i64,
        mut run: impl FnMut(Range<usize>),
    ) {
        let (end, step, width) = (self.end as i128, self.step as i128, self.width as i128);
        let mut i = 0;
        while let Some(item) = items.get(i) {
            let t = time(item) as i128;
            let back = end - t;
            if back < 0 {
                return;
            }
            // The first step at or after `t`, and where its window starts;
            // both lie in [t, end], so they fit an i64.
            let step_at = end - back / step * step;
            let start = step_at - width + 1;
            let rest = &items[i..];
            if t < start {
                let start = start as i64;
                i += rest.partition_point(|x| time(x) < start);
            } else {
                let step_at = step_at as i64;
                let j = i + rest.partition_point(|x| time(x) <= step_at);
                run(i..j);
                i = j;
            }
        }
    }

    /// Keeps the samples of `samples` (time-ordered) that a window holds.
    pub fn retain(&self, samples: &mut Vec<Sample>) {
        let mut kept: Vec<Range<usize>> = Vec::new();
        self.runs(samples, |s| s.t, |r| kept.push(r));
        let mut len = 0;
        for r in kept {
            let n = r.len();
            samples.copy_within(r, len);
            len += n;
        }
        samples.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Windows by brute force: steps from `end` back to `start`.
    fn brute(end: i64, step: i64, width: i64, t: i64) -> bool {
        let mut s = end;
        while s >= t {
            if t > s - width {
                return true;
            }
            s -= step;
        }
        false
    }

    #[test]
    fn dense_steps_carry_no_windows() {
        assert_eq!(StepWindows::new(100, 60, 60), None);
        assert_eq!(StepWindows::new(100, 60, 300), None);
        assert_eq!(StepWindows::new(100, 60, 0), None);
        assert!(StepWindows::new(100, 61, 60).is_some());
    }

    #[test]
    fn keeps_what_a_step_reads() {
        let w = StepWindows::new(10_000, 1_000, 300).unwrap();
        for t in 5_000..=10_000 {
            assert_eq!(w.keeps(t), brute(10_000, 1_000, 300, t), "t={t}");
        }
        assert!(w.keeps(10_000));
        assert!(w.keeps(9_701));
        assert!(!w.keeps(9_700));
        assert!(w.keeps(9_000));
        assert!(!w.keeps(10_001));
    }

    #[test]
    fn meets_matches_brute_force() {
        let w = StepWindows::new(1_000, 100, 30).unwrap();
        for lo in 600..=1_020 {
            for hi in lo..=1_020 {
                let want = (lo..=hi.min(1_000)).any(|t| w.keeps(t));
                assert_eq!(w.meets(lo, hi), want, "[{lo}, {hi}]");
            }
        }
        assert!(!w.meets(10, 5));
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let w = StepWindows::new(i64::MAX, i64::MAX, 1).unwrap();
        assert!(w.keeps(i64::MAX));
        assert!(!w.keeps(i64::MAX - 1));
        assert!(w.keeps(0));
        assert!(!w.keeps(i64::MIN));
        assert!(w.meets(i64::MIN, i64::MAX));
        let w = StepWindows::new(i64::MIN + 10, 3, 2).unwrap();
        assert!(w.keeps(i64::MIN + 10));
        assert!(!w.keeps(i64::MIN + 8));
        assert!(w.meets(i64::MIN, i64::MIN + 1));
    }

    #[test]
    fn runs_keep_exactly_what_windows_hold() {
        // Irregular times, steps of several sizes, some at the edges of i64.
        let mut seed = 7u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let step = 2 + (next() % 50) as i64;
            let width = 1 + (next() % (step as u64 - 1)) as i64;
            let base = match next() % 3 {
                0 => 0,
                1 => i64::MIN,
                _ => i64::MAX - 2_000,
            };
            let mut t = base;
            let mut samples = Vec::new();
            for _ in 0..(next() % 200) {
                samples.push(Sample { t, v: 0.0 });
                let Some(n) = t.checked_add(1 + (next() % 9) as i64) else {
                    break;
                };
                t = n;
            }
            let end = samples
                .last()
                .map_or(base, |s| s.t)
                .saturating_sub((next() % 20) as i64);
            let w = StepWindows::new(end, step, width).unwrap();
            let want: Vec<Sample> = samples.iter().filter(|s| w.keeps(s.t)).copied().collect();
            let mut out = Vec::new();
            w.runs(&samples, |s| s.t, |r| out.extend_from_slice(&samples[r]));
            assert_eq!(out, want, "end {end} step {step} width {width}");
            let mut kept = samples.clone();
            w.retain(&mut kept);
            assert_eq!(kept, want);
        }
    }

    #[test]
    fn retain_and_runs_keep_the_same() {
        let samples: Vec<Sample> = (0..100).map(|t| Sample { t, v: t as f64 }).collect();
        let w = StepWindows::new(99, 10, 3).unwrap();
        let mut kept = samples.clone();
        w.retain(&mut kept);
        let mut out = Vec::new();
        w.runs(&samples, |s| s.t, |r| out.extend_from_slice(&samples[r]));
        assert_eq!(kept, out);
        assert_eq!(kept.len(), 30);
        assert!(kept.iter().all(|s| s.t % 10 >= 7));
    }
}
