//! Which part of each source's timeline is accounted for, and why the rest is not. Every
//! hole becomes a gap record with the most specific reason known, so that `verify` never
//! meets an unexplained one. Pure logic; the same rule as `integrity::verify`.

use crate::base::MediaTime;
use crate::integrity::{CONTINUITY_TOLERANCE_NS, Entry, RecordBody, RunCause};
use std::collections::BTreeMap;

/// Below this, a hole after an interruption is timestamp rounding, not loss.
const MIN_STATED_GAP_NS: u64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapSpec {
    pub source: String,
    pub start: MediaTime,
    pub end: MediaTime,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
struct SourceState {
    /// Everything before this is covered by a segment or a gap record.
    covered_to: MediaTime,
    /// Why the next hole, if any, happened.
    reason: Option<String>,
    /// Whether a segment of this source is in the session.
    recorded: bool,
    /// The reason is a device's trouble: its gap also says when the source was last seen.
    say_last_seen: bool,
}

impl SourceState {
    /// The stated reason for the hole now found, used once.
    fn take_reason(&mut self) -> Option<String> {
        let reason = self.reason.take()?;
        Some(match std::mem::take(&mut self.say_last_seen) {
            false => reason,
            true if self.recorded => format!("{reason}; last recorded at {}", self.covered_to),
            true => format!("{reason}; never started in this session"),
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct Continuity {
    sources: BTreeMap<String, SourceState>,
}

impl Continuity {
    /// Rebuilds the state from a session's chain (after a restart), including why a resumed
    /// run's sources may have a hole not yet closed by a segment.
    pub fn replay(records: &[RecordBody]) -> Continuity {
        let mut c = Continuity::default();
        for r in records {
            match &r.entry {
                Entry::RunStart { media, sources, cause, .. } => {
                    let why = (*cause != RunCause::SessionStart).then(|| cause.describe());
                    c.run_started(*media, sources, why);
                }
                Entry::Segment { source, media_end, .. } => {
                    c.cover(source, *media_end);
                    c.sources.entry(source.clone()).or_default().recorded = true;
                }
                Entry::Recess { .. } => {
                    let names: Vec<String> = c.sources.keys().cloned().collect();
                    c.interrupted(&names, crate::integrity::RECESS_REASON);
                }
                Entry::Gap { source, media_end, .. } if source == "*" => {
                    let names: Vec<String> = c.sources.keys().cloned().collect();
                    for s in names {
                        c.cover(&s, *media_end);
                    }
                }
                Entry::Gap { source, media_end, .. } => c.cover(source, *media_end),
                _ => {}
            }
        }
        c
    }

    fn cover(&mut self, source: &str, to: MediaTime) {
        let s = self.sources.entry(source.to_string()).or_default();
        s.covered_to = s.covered_to.max(to);
    }

    /// A run began at `t0`. New sources are expected from `t0`; sources known from an
    /// earlier run get `why` as the reason for the hole since their last data.
    pub fn run_started(&mut self, t0: MediaTime, sources: &[String], why: Option<&str>) {
        for name in sources {
            match self.sources.get_mut(name) {
                Some(s) => {
                    if let Some(why) = why {
                        s.reason = Some(why.to_string());
                    }
                }
                None => {
                    self.sources.insert(name.clone(), SourceState { covered_to: t0, ..Default::default() });
                }
            }
        }
    }

    /// Notes why data of these sources stopped.
    pub fn interrupted(&mut self, sources: &[String], why: &str) {
        self.note(sources, why, false);
    }

    /// Notes that a device stopped delivering these sources (it failed, or cannot start):
    /// their gap says `what`, and when each source was last recorded or that it never was.
    pub fn device_stopped(&mut self, sources: &[String], what: &str) {
        self.note(sources, what, true);
    }

    fn note(&mut self, sources: &[String], why: &str, say_last_seen: bool) {
        for name in sources {
            let s = self.sources.entry(name.clone()).or_default();
            s.reason = Some(why.to_string());
            s.say_last_seen = say_last_seen;
        }
    }

    /// A segment of `source` covers `start..end`; returns the gap before it, if any.
    pub fn segment(&mut self, source: &str, start: MediaTime, end: MediaTime) -> Option<GapSpec> {
        let s =
            self.sources.entry(source.to_string()).or_insert(SourceState { covered_to: start, ..Default::default() });
        // The tolerance absorbs frame granularity at ordinary boundaries. After a known
        // interruption every lost millisecond is stated.
        let tolerance = if s.reason.is_some() { MIN_STATED_GAP_NS } else { CONTINUITY_TOLERANCE_NS };
        let gap = (start.0 > s.covered_to.0 + tolerance).then(|| GapSpec {
            source: source.to_string(),
            start: s.covered_to,
            end: start,
            reason: s
                .take_reason()
                .unwrap_or_else(|| "the source delivered no data in this interval (cause unknown)".into()),
        });
        if gap.is_some() || start.0 <= s.covered_to.0 + tolerance {
            s.reason = None;
            s.say_last_seen = false;
        }
        s.covered_to = s.covered_to.max(end);
        s.recorded = true;
        gap
    }

    /// Recording stops at `stop`: the uncovered tail of every source.
    pub fn finish(&mut self, stop: MediaTime) -> Vec<GapSpec> {
        let mut gaps = Vec::new();
        for (name, s) in &mut self.sources {
            if stop.0 > s.covered_to.0 + CONTINUITY_TOLERANCE_NS {
                gaps.push(GapSpec {
                    source: name.clone(),
                    start: s.covered_to,
                    end: stop,
                    reason: s
                        .take_reason()
                        .unwrap_or_else(|| "the source delivered no data until the session stopped".into()),
                });
                s.covered_to = stop;
            }
        }
        gaps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(v: u64) -> MediaTime {
        MediaTime::from_millis(v)
    }

    #[test]
    fn contiguous_segments_need_no_gap() {
        let mut c = Continuity::default();
        c.run_started(ms(100), &["cam".into()], None);
        assert_eq!(c.segment("cam", ms(110), ms(10_000)), None);
        assert_eq!(c.segment("cam", ms(10_000), ms(20_000)), None);
        assert!(c.finish(ms(20_050)).is_empty());
    }

    #[test]
    fn a_failure_gives_its_reason_to_the_next_hole() {
        let mut c = Continuity::default();
        c.run_started(ms(0), &["mic".into()], None);
        c.segment("mic", ms(0), ms(13_000));
        c.interrupted(&["mic".into()], "device desk failed: boom");
        let gap = c.segment("mic", ms(14_100), ms(20_000)).unwrap();
        assert_eq!((gap.start, gap.end), (ms(13_000), ms(14_100)));
        assert_eq!(gap.reason, "device desk failed: boom");
        // The reason is used once.
        let tail = c.finish(ms(25_000));
        assert_eq!(tail[0].reason, "the source delivered no data until the session stopped");
    }

    #[test]
    fn a_device_gap_says_when_its_source_was_last_recorded() {
        let mut c = Continuity::default();
        c.run_started(ms(100), &["cam".into(), "mic".into()], None);
        c.segment("mic", ms(100), ms(10_000));
        c.device_stopped(&["cam".into()], "device cam cannot start: no element x");
        c.device_stopped(&["mic".into()], "device desk failed at 0:00:10.000: unplugged");
        let tail = c.finish(ms(20_000));
        let cam = tail.iter().find(|g| g.source == "cam").expect("the camera's whole run is a gap");
        assert_eq!((cam.start, cam.end), (ms(100), ms(20_000)));
        assert_eq!(cam.reason, "device cam cannot start: no element x; never started in this session");
        let mic = tail.iter().find(|g| g.source == "mic").expect("the microphone's tail is a gap");
        assert_eq!(mic.reason, "device desk failed at 0:00:10.000: unplugged; last recorded at 0:00:10.000");
    }

    #[test]
    fn a_resumed_run_explains_the_hole_since_the_last_segment() {
        let mut c = Continuity::default();
        c.run_started(ms(0), &["cam".into()], None);
        c.segment("cam", ms(0), ms(35_000));
        c.run_started(ms(41_000), &["cam".into()], Some("daemon crashed"));
        let gap = c.segment("cam", ms(41_010), ms(50_000)).unwrap();
        assert_eq!((gap.start, gap.end, gap.reason.as_str()), (ms(35_000), ms(41_010), "daemon crashed"));
    }

    #[test]
    fn replay_keeps_the_reason_of_a_run_that_crashed_before_its_first_segment() {
        use crate::integrity::{FORMAT_VERSION, ZERO_HASH};
        let body = |entry| RecordBody {
            v: FORMAT_VERSION,
            session: uuid::Uuid::nil(),
            index: 0,
            prev: ZERO_HASH.into(),
            device: String::new(),
            wall: crate::base::WallTime::from_unix_nanos(0),
            entry,
        };
        let run = |media, cause| Entry::RunStart {
            run: 1,
            cause,
            media,
            boot_id: String::new(),
            sources: vec!["cam".into()],
        };
        let records = vec![
            body(run(ms(0), RunCause::SessionStart)),
            body(Entry::Gap { source: "cam".into(), media_start: ms(0), media_end: ms(9_000), reason: "x".into() }),
            body(run(ms(13_500), RunCause::ResumeAfterCrash)),
        ];
        let mut c = Continuity::replay(&records);
        let gap = c.segment("cam", ms(13_570), ms(14_000)).unwrap();
        assert_eq!(gap.reason, RunCause::ResumeAfterCrash.describe());
    }

    #[test]
    fn after_an_interruption_even_a_short_hole_is_stated() {
        let mut c = Continuity::default();
        c.run_started(ms(0), &["mic".into()], None);
        c.segment("mic", ms(0), ms(6_500));
        c.run_started(ms(6_600), &["mic".into()], Some("daemon crashed"));
        let gap = c.segment("mic", ms(6_620), ms(8_000)).expect("120 ms lost to a crash is recorded");
        assert_eq!((gap.start, gap.end), (ms(6_500), ms(6_620)));
        // An ordinary boundary with frame jitter needs no gap.
        assert_eq!(c.segment("mic", ms(8_050), ms(9_000)), None);
    }

    proptest! {
        /// Whatever arrives, segments plus returned gaps leave no hole longer than the
        /// tolerance between t0 and the stop: exactly what `verify` demands.
        #[test]
        fn segments_and_gaps_cover_the_timeline(mut spans in proptest::collection::vec((0u64..100_000, 1u64..20_000), 1..30)) {
            spans.sort();
            let mut c = Continuity::default();
            c.run_started(ms(0), &["s".into()], None);
            let mut cover: Vec<(u64, u64)> = Vec::new();
            for (start, len) in spans {
                if let Some(g) = c.segment("s", ms(start), ms(start + len)) {
                    cover.push((g.start.0, g.end.0));
                }
                cover.push((ms(start).0, ms(start + len).0));
            }
            let stop = ms(130_000);
            for g in c.finish(stop) {
                cover.push((g.start.0, g.end.0));
            }
            cover.sort();
            let mut cursor = 0u64;
            for (s, e) in cover {
                prop_assert!(s <= cursor + CONTINUITY_TOLERANCE_NS, "hole before {s}");
                cursor = cursor.max(e);
            }
            prop_assert!(cursor + CONTINUITY_TOLERANCE_NS >= stop.0);
        }
    }
}
