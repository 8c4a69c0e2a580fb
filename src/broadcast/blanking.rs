//! Which stretches of the hearing the broadcast must not show: a privacy mute (from the
//! moment it reaches back to, until unmuted) and a recess. Kept in media time, so that the
//! decision for a frame or an audio sample depends only on when it was recorded, not on
//! when the delayed broadcast gets to it.

use crate::base::MediaTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlankReason {
    PrivacyMute,
    Recess,
}

#[derive(Debug, Default, Clone)]
pub struct Blanking {
    /// Ended intervals, `[start, end)`.
    ended: Vec<(MediaTime, MediaTime)>,
    mute_since: Option<MediaTime>,
    recess_since: Option<MediaTime>,
}

impl Blanking {
    fn open(&mut self, reason: BlankReason) -> &mut Option<MediaTime> {
        match reason {
            BlankReason::PrivacyMute => &mut self.mute_since,
            BlankReason::Recess => &mut self.recess_since,
        }
    }

    /// Blanks from `from` on. Pressing mute twice keeps the earlier start.
    pub fn begin(&mut self, reason: BlankReason, from: MediaTime) {
        let open = self.open(reason);
        *open = Some(open.map_or(from, |f| f.min(from)));
    }

    /// Shows again from `at` on.
    pub fn end(&mut self, reason: BlankReason, at: MediaTime) {
        if let Some(from) = self.open(reason).take()
            && at > from
        {
            self.ended.push((from, at));
        }
    }

    pub fn is_muted(&self) -> bool {
        self.mute_since.is_some()
    }

    pub fn contains(&self, t: MediaTime) -> bool {
        self.ended.iter().any(|(s, e)| *s <= t && t < *e) || self.open_starts().any(|s| s <= t)
    }

    fn open_starts(&self) -> impl Iterator<Item = MediaTime> + '_ {
        self.mute_since.into_iter().chain(self.recess_since)
    }

    /// The parts of `[start, end)` that are blanked, in order, merged.
    pub fn within(&self, start: MediaTime, end: MediaTime) -> Vec<(MediaTime, MediaTime)> {
        let mut parts: Vec<(MediaTime, MediaTime)> = self
            .ended
            .iter()
            .copied()
            .chain(self.open_starts().map(|s| (s, MediaTime(u64::MAX))))
            .map(|(s, e)| (s.max(start), e.min(end)))
            .filter(|(s, e)| s < e)
            .collect();
        parts.sort();
        let mut merged: Vec<(MediaTime, MediaTime)> = Vec::new();
        for (s, e) in parts {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }

    /// Drops intervals that ended before `t` (the broadcast is past them).
    pub fn forget_before(&mut self, t: MediaTime) {
        self.ended.retain(|(_, e)| *e > t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: u64) -> MediaTime {
        MediaTime(x * 1_000_000_000)
    }

    #[test]
    fn a_mute_blanks_from_its_rewound_start_until_unmuted() {
        let mut b = Blanking::default();
        b.begin(BlankReason::PrivacyMute, s(90));
        assert!(b.is_muted());
        assert!(!b.contains(MediaTime(s(90).0 - 1)));
        assert!(b.contains(s(90)) && b.contains(s(1000)));
        b.end(BlankReason::PrivacyMute, s(120));
        assert!(!b.is_muted());
        assert!(b.contains(s(119)) && !b.contains(s(120)));
        assert_eq!(b.within(s(100), s(130)), vec![(s(100), s(120))]);
        b.forget_before(s(121));
        assert!(!b.contains(s(100)));
    }

    #[test]
    fn mute_and_recess_overlap_and_merge() {
        let mut b = Blanking::default();
        b.begin(BlankReason::Recess, s(10));
        b.begin(BlankReason::PrivacyMute, s(15));
        b.end(BlankReason::Recess, s(20));
        assert!(b.contains(s(25)), "still muted after the recess ended");
        b.end(BlankReason::PrivacyMute, s(30));
        assert_eq!(b.within(s(0), s(40)), vec![(s(10), s(30))]);
        // A second press keeps the earlier start; an unmute before the start blanks nothing.
        b.begin(BlankReason::PrivacyMute, s(50));
        b.begin(BlankReason::PrivacyMute, s(55));
        b.end(BlankReason::PrivacyMute, s(60));
        assert_eq!(b.within(s(45), s(65)), vec![(s(50), s(60))]);
        b.begin(BlankReason::PrivacyMute, s(70));
        b.end(BlankReason::PrivacyMute, s(69));
        assert!(!b.contains(s(70)));
    }
}
