//! Which camera is on air: a fixed one, or (automatic) the camera that shows the role of
//! whoever is speaking. Decisions are made in media time from the microphones' levels, so
//! a cut lands on the same frame however late the delayed broadcast renders it.

use crate::base::MediaTime;
use std::collections::VecDeque;
use std::time::Duration;

/// Louder than this is speech (the sim room noise is about -65 dBFS, speech -30 to -15).
pub const SPEECH_DBFS: f32 = -45.0;
/// Speech must go on this long before the camera cuts to its speaker (a cough does not cut).
const SPEECH_BEFORE_CUT: Duration = Duration::from_millis(700);
/// A pause shorter than this does not end someone's turn.
const PAUSE_IN_SPEECH: Duration = Duration::from_millis(600);
/// Cuts older than this behind the newest observation are forgotten.
const KEEP_CUTS: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, Default)]
struct Speaker {
    /// Start of the current run of speech, while it lasts.
    since: Option<MediaTime>,
    last_loud: MediaTime,
    /// Smoothed level while speaking, to prefer the louder of two people talking at once.
    level: f32,
}

#[derive(Debug)]
pub struct Director {
    /// For each microphone, the camera that shows its role (if any camera does).
    mic_camera: Vec<Option<usize>>,
    automatic: bool,
    hold: Duration,
    speakers: Vec<Speaker>,
    /// (from, camera): the camera on air from that media time on. Never empty.
    cuts: VecDeque<(MediaTime, usize)>,
}

impl Director {
    /// `fixed`: always this camera; otherwise cut automatically, holding each camera at
    /// least `hold`. `mic_camera[i]`: the camera of microphone `i`'s role.
    pub fn new(initial: usize, fixed: bool, hold: Duration, mic_camera: Vec<Option<usize>>) -> Director {
        Director {
            speakers: vec![Speaker::default(); mic_camera.len()],
            mic_camera,
            automatic: !fixed,
            hold,
            cuts: VecDeque::from([(MediaTime::ZERO, initial)]),
        }
    }

    /// Level (RMS, dBFS) of microphone `mic` over the audio that starts at `at`.
    pub fn observe(&mut self, mic: usize, at: MediaTime, dbfs: f32) {
        let Some(speaker) = self.speakers.get_mut(mic) else { return };
        if dbfs >= SPEECH_DBFS {
            if speaker.since.is_none() || at.saturating_sub(speaker.last_loud) > PAUSE_IN_SPEECH {
                speaker.since = Some(at);
                speaker.level = dbfs;
            }
            speaker.last_loud = at;
            speaker.level = 0.9 * speaker.level + 0.1 * dbfs;
        } else if speaker.since.is_some() && at.saturating_sub(speaker.last_loud) > PAUSE_IN_SPEECH {
            speaker.since = None;
        }
        if self.automatic {
            self.decide(at);
        }
    }

    fn decide(&mut self, at: MediaTime) {
        let speaking = self
            .speakers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.since.is_some_and(|since| at.saturating_sub(since) >= SPEECH_BEFORE_CUT))
            .max_by(|a, b| a.1.level.total_cmp(&b.1.level));
        let Some(camera) = speaking.and_then(|(mic, _)| self.mic_camera[mic]) else { return };
        let &(since, on_air) = self.cuts.back().expect("never empty");
        if camera != on_air && at >= since && at.saturating_sub(since) >= self.hold {
            self.cuts.push_back((at, camera));
            while self.cuts.len() > 1 && at.saturating_sub(self.cuts[1].0) > KEEP_CUTS {
                self.cuts.pop_front();
            }
        }
    }

    /// The camera on air at `t`.
    pub fn camera_at(&self, t: MediaTime) -> usize {
        self.cuts.iter().rev().find(|(from, _)| *from <= t).unwrap_or(&self.cuts[0]).1
    }

    /// The camera on air after the latest decision.
    pub fn latest(&self) -> usize {
        self.cuts.back().expect("never empty").1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(x: u64) -> MediaTime {
        MediaTime(x * 1_000_000)
    }

    /// Feeds 100 ms levels: `who` speaks (−20 dBFS) from `from` to `to` ms, others are quiet.
    fn speak(d: &mut Director, who: usize, from: u64, to: u64) {
        for t in (from..to).step_by(100) {
            for mic in 0..d.speakers.len() {
                d.observe(mic, ms(t), if mic == who { -20.0 } else { -65.0 });
            }
        }
    }

    #[test]
    fn cuts_to_the_speakers_camera_after_a_moment_of_speech_and_holds() {
        // mic 0 judge → camera 0, mic 1 prosecutor → camera 1, mic 2 (no camera).
        let mut d = Director::new(0, false, Duration::from_secs(4), vec![Some(0), Some(1), None]);
        speak(&mut d, 1, 5_000, 12_000);
        // The prosecutor started at 5.0 s: the cut comes 0.7 s into the speech.
        assert_eq!(d.camera_at(ms(5_600)), 0);
        assert_eq!(d.camera_at(ms(5_700)), 1);
        assert_eq!(d.camera_at(ms(11_000)), 1);
        // The judge interrupts at 12 s, but the prosecutor's camera holds until 9.7 s... it
        // was cut at 5.7 s so the hold (4 s) is over: the cut to the judge is at 12.7 s.
        speak(&mut d, 0, 12_000, 13_000);
        assert_eq!(d.camera_at(ms(12_700)), 0);
        // The prosecutor answers at once: within the hold, no cut until 16.7 s.
        speak(&mut d, 1, 13_000, 20_000);
        assert_eq!(d.camera_at(ms(16_600)), 0);
        assert_eq!(d.camera_at(ms(16_700)), 1);
        // A speaker with no camera does not move it; silence does not either.
        speak(&mut d, 2, 20_000, 30_000);
        assert_eq!(d.latest(), 1);
    }

    #[test]
    fn a_cough_or_a_fixed_camera_never_cuts() {
        let mut d = Director::new(0, false, Duration::from_secs(1), vec![Some(0), Some(1)]);
        speak(&mut d, 1, 10_000, 10_500);
        speak(&mut d, 0, 10_500, 20_000);
        assert_eq!(d.camera_at(ms(15_000)), 0, "half a second of speech is not a turn");
        let mut fixed = Director::new(1, true, Duration::from_secs(1), vec![Some(0), Some(1)]);
        speak(&mut fixed, 0, 0, 10_000);
        assert_eq!(fixed.camera_at(ms(9_000)), 1);
    }
}
