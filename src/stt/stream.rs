//! One microphone's audio turned into transcription jobs. An energy voice-activity
//! detector (adaptive noise floor) finds utterances; while one is open a *partial* job is
//! issued every `partial_every` of new speech, and when it ends (`hangover` of silence,
//! `max_utterance` reached, or a hole in the audio) a *final* job covers all of it. Pure
//! logic: the service decides what runs when.
//!
//! The noise floor is the 5th percentile of the last 5 s of frame levels, so a room's
//! background hiss (say −42 dBFS) is learnt even while someone speaks, and pauses between
//! phrases are heard.

use crate::base::MediaTime;
use std::collections::VecDeque;
use std::time::Duration;

pub const RATE: u32 = 16_000;
/// 20 ms analysis frames.
const FRAME: usize = (RATE / 50) as usize;
const FRAME_NS: u64 = 20_000_000;

#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub partial_every: Duration,
    pub max_utterance: Duration,
    /// Silence that ends an utterance.
    pub hangover: Duration,
    /// Past this length, a shorter pause (`phrase_pause`) ends the utterance: finals then
    /// come phrase by phrase, and the last one after the speaker stops is short to decode.
    pub phrase_after: Duration,
    pub phrase_pause: Duration,
    /// Audio kept from before the onset, so the first syllable is not clipped.
    pub preroll: Duration,
    /// Consecutive speech frames that start an utterance.
    pub onset_frames: u32,
    /// Utterances shorter than this are dropped as noise (a cough, a click).
    pub min_utterance: Duration,
    pub partials: bool,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            partial_every: Duration::from_millis(1500),
            max_utterance: Duration::from_secs(12),
            hangover: Duration::from_millis(600),
            phrase_after: Duration::from_secs(5),
            phrase_pause: Duration::from_millis(300),
            preroll: Duration::from_millis(300),
            onset_frames: 3,
            min_utterance: Duration::from_millis(400),
            partials: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Partial,
    Final,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub kind: JobKind,
    /// Which utterance of this stream (partials of a finished utterance are stale).
    pub utterance: u64,
    pub start: MediaTime,
    pub samples: Vec<f32>,
}

impl Job {
    pub fn end(&self) -> MediaTime {
        MediaTime(self.start.0 + self.samples.len() as u64 * 1_000_000_000 / u64::from(RATE))
    }

    /// The media time `offset` into this job's audio (a transcript's timestamp), never past
    /// its end.
    pub fn media_at(&self, offset: std::time::Duration) -> MediaTime {
        MediaTime(self.start.0 + offset.as_nanos() as u64).min(self.end())
    }
}

struct Utterance {
    id: u64,
    start: MediaTime,
    samples: Vec<f32>,
    /// Per-frame energy (dBFS), to cut an over-long utterance at its quietest point.
    energy: Vec<f32>,
    silence_frames: u32,
    last_partial_len: usize,
}

pub struct TrackStream {
    cfg: StreamConfig,
    frame: Vec<f32>,
    /// Media time of `frame[0]`.
    frame_start: Option<MediaTime>,
    /// Recent frames while idle (preroll), with their start times.
    history: VecDeque<(MediaTime, Vec<f32>)>,
    /// Levels of the last frames (dBFS), for the noise floor.
    levels: VecDeque<f32>,
    speech_run: u32,
    utterance: Option<Utterance>,
    next_id: u64,
    /// Where the next audio should start if nothing was lost.
    expected: Option<MediaTime>,
}

fn db(samples: &[f32]) -> f32 {
    let power = samples.iter().map(|x| x * x).sum::<f32>() / samples.len().max(1) as f32;
    10.0 * (power + 1e-12).log10()
}

/// 5 s of frames.
const LEVEL_WINDOW: usize = 250;

fn frames_in(d: Duration) -> u32 {
    (d.as_nanos() / u128::from(FRAME_NS)) as u32
}

impl TrackStream {
    pub fn new(cfg: StreamConfig) -> TrackStream {
        TrackStream {
            cfg,
            frame: Vec::with_capacity(FRAME),
            frame_start: None,
            history: VecDeque::new(),
            levels: VecDeque::with_capacity(LEVEL_WINDOW),
            speech_run: 0,
            utterance: None,
            next_id: 0,
            expected: None,
        }
    }

    /// Whether an utterance is open (its partials are still worth running).
    pub fn current_utterance(&self) -> Option<u64> {
        self.utterance.as_ref().map(|u| u.id)
    }

    /// Adds audio that starts at `start`. A hole since the previous audio (dropped audio, a
    /// device restart) closes the open utterance first.
    pub fn push(&mut self, start: MediaTime, samples: &[f32]) -> Vec<Job> {
        let mut jobs = Vec::new();
        if let Some(expected) = self.expected
            && start.0.abs_diff(expected.0) > 2 * FRAME_NS
        {
            jobs.extend(self.flush());
            self.frame.clear();
            self.frame_start = None;
            self.history.clear();
        }
        self.expected = Some(MediaTime(start.0 + samples.len() as u64 * 1_000_000_000 / u64::from(RATE)));
        let mut offset = 0;
        while offset < samples.len() {
            if self.frame.is_empty() {
                self.frame_start = Some(MediaTime(start.0 + offset as u64 * 1_000_000_000 / u64::from(RATE)));
            }
            let take = (FRAME - self.frame.len()).min(samples.len() - offset);
            self.frame.extend_from_slice(&samples[offset..offset + take]);
            offset += take;
            if self.frame.len() == FRAME {
                let frame = std::mem::take(&mut self.frame);
                let at = self.frame_start.take().expect("set with the first sample");
                jobs.extend(self.on_frame(at, frame));
            }
        }
        jobs
    }

    /// Level above which a frame is speech: 10 dB over the noise floor, and never below
    /// −50 dBFS (digital silence must not make breathing speech).
    fn threshold(&self) -> f32 {
        let mut v: Vec<f32> = self.levels.iter().copied().collect();
        v.sort_by(f32::total_cmp);
        let noise = v.get(v.len() / 20).copied().unwrap_or(-90.0).clamp(-90.0, -35.0);
        (noise + 10.0).max(-50.0)
    }

    fn on_frame(&mut self, at: MediaTime, frame: Vec<f32>) -> Vec<Job> {
        let level = db(&frame);
        if self.levels.len() == LEVEL_WINDOW {
            self.levels.pop_front();
        }
        self.levels.push_back(level);
        let threshold = self.threshold();
        let speech = level > threshold;
        let mut jobs = Vec::new();
        match self.utterance.as_mut() {
            None => {
                if speech {
                    self.speech_run += 1;
                } else {
                    self.speech_run = 0;
                }
                self.history.push_back((at, frame));
                let keep = frames_in(self.cfg.preroll) + self.cfg.onset_frames;
                while self.history.len() as u32 > keep {
                    self.history.pop_front();
                }
                if self.speech_run >= self.cfg.onset_frames {
                    let start = self.history.front().map(|h| h.0).unwrap_or(at);
                    let mut u = Utterance {
                        id: self.next_id,
                        start,
                        samples: Vec::new(),
                        energy: Vec::new(),
                        silence_frames: 0,
                        last_partial_len: 0,
                    };
                    self.next_id += 1;
                    for (_, f) in self.history.drain(..) {
                        u.energy.push(db(&f));
                        u.samples.extend(f);
                    }
                    self.utterance = Some(u);
                    self.speech_run = 0;
                }
            }
            Some(u) => {
                u.samples.extend_from_slice(&frame);
                u.energy.push(level);
                u.silence_frames = if speech { 0 } else { u.silence_frames + 1 };
                let max = frames_in(self.cfg.max_utterance) as usize;
                let long = u.energy.len() >= frames_in(self.cfg.phrase_after) as usize;
                let pause = if long { self.cfg.phrase_pause } else { self.cfg.hangover };
                if u.silence_frames >= frames_in(pause) {
                    // Keep a little of the trailing silence, not all of it.
                    let keep =
                        u.energy.len() - u.silence_frames as usize + frames_in(Duration::from_millis(200)) as usize;
                    jobs.extend(self.finish(keep).0);
                } else if u.energy.len() >= max {
                    // Cut at the quietest frame of the last 3 s, so no word is split if a
                    // pause exists at all.
                    let from = max.saturating_sub(150);
                    let cut = (from..u.energy.len())
                        .min_by(|a, b| u.energy[*a].total_cmp(&u.energy[*b]))
                        .unwrap_or(max)
                        .max(1);
                    let (job, rest) = self.finish(cut);
                    jobs.extend(job);
                    // The remainder opens the next utterance at once.
                    if let Some((rest_start, rest, energy)) = rest {
                        self.utterance = Some(Utterance {
                            id: self.next_id,
                            start: rest_start,
                            samples: rest,
                            energy,
                            silence_frames: 0,
                            last_partial_len: 0,
                        });
                        self.next_id += 1;
                    }
                } else if self.cfg.partials
                    // Trailing silence: the final is near, a partial would only delay it.
                    && u.silence_frames < 5
                    && (u.samples.len() - u.last_partial_len) as u64 * 1_000_000_000 / u64::from(RATE)
                        >= self.cfg.partial_every.as_nanos() as u64
                {
                    u.last_partial_len = u.samples.len();
                    jobs.push(Job {
                        kind: JobKind::Partial,
                        utterance: u.id,
                        start: u.start,
                        samples: u.samples.clone(),
                    });
                }
            }
        }
        jobs
    }

    /// Closes the open utterance keeping its first `keep_frames` frames. Returns its final
    /// job (none if it was too short to be speech) and what came after the cut.
    #[allow(clippy::type_complexity)]
    fn finish(&mut self, keep_frames: usize) -> (Option<Job>, Option<(MediaTime, Vec<f32>, Vec<f32>)>) {
        let Some(mut u) = self.utterance.take() else { return (None, None) };
        let keep = (keep_frames * FRAME).min(u.samples.len());
        let rest = u.samples.split_off(keep);
        let rest_energy = u.energy.split_off(keep_frames.min(u.energy.len()));
        let rest_start = MediaTime(u.start.0 + keep as u64 * 1_000_000_000 / u64::from(RATE));
        let rest = (!rest.is_empty()).then_some((rest_start, rest, rest_energy));
        let threshold = self.threshold();
        let voiced = u.energy.iter().filter(|e| **e > threshold).count() as u32;
        if voiced < frames_in(self.cfg.min_utterance) {
            return (None, rest);
        }
        (Some(Job { kind: JobKind::Final, utterance: u.id, start: u.start, samples: u.samples }), rest)
    }

    /// Closes any open utterance (session stop, hole in the audio).
    pub fn flush(&mut self) -> Option<Job> {
        let frames = self.utterance.as_ref()?.energy.len();
        self.finish(frames).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(secs: f32) -> Vec<f32> {
        (0..(secs * RATE as f32) as usize).map(|i| 0.3 * (i as f32 * 0.2).sin()).collect()
    }
    fn silence(secs: f32) -> Vec<f32> {
        vec![0.0; (secs * RATE as f32) as usize]
    }
    fn ms(v: u64) -> MediaTime {
        MediaTime::from_millis(v)
    }

    /// Feeds audio in 10 ms chunks, as the capture tap does.
    fn feed(s: &mut TrackStream, start: MediaTime, audio: &[f32]) -> Vec<Job> {
        audio
            .chunks(160)
            .enumerate()
            .flat_map(|(i, c)| s.push(MediaTime(start.0 + i as u64 * 10_000_000), c).into_iter().collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn an_utterance_gives_partials_then_one_final_covering_it() {
        let mut s = TrackStream::new(StreamConfig::default());
        let mut audio = silence(1.0);
        audio.extend(tone(4.0));
        audio.extend(silence(2.0));
        let jobs = feed(&mut s, ms(10_000), &audio);
        let partials = jobs.iter().filter(|j| j.kind == JobKind::Partial).count();
        let finals: Vec<_> = jobs.iter().filter(|j| j.kind == JobKind::Final).collect();
        // 0.36 s preroll + 4 s speech + 0.6 s hangover: partials at 1.5, 3.0 and 4.5 s of
        // utterance, the last falling in the trailing silence and so skipped.
        assert_eq!(partials, 2, "one partial per 1.5 s of speech");
        assert_eq!(finals.len(), 1);
        let f = finals[0];
        // Starts a little before the onset (preroll), ends a little after the speech.
        assert!(f.start >= ms(10_600) && f.start <= ms(11_000), "{}", f.start);
        assert!(f.end() >= ms(15_000) && f.end() <= ms(15_300), "{}", f.end());
        assert_eq!(s.current_utterance(), None);
    }

    #[test]
    fn past_a_few_seconds_a_short_pause_ends_a_phrase() {
        let mut s = TrackStream::new(StreamConfig { partials: false, ..Default::default() });
        let mut audio = tone(6.0);
        audio.extend(silence(0.4));
        audio.extend(tone(2.0));
        audio.extend(silence(0.4));
        audio.extend(tone(2.0));
        audio.extend(silence(1.0));
        let finals = feed(&mut s, ms(0), &audio);
        // The 0.4 s pause after 6 s splits; the one after a 2 s phrase does not.
        assert_eq!(finals.len(), 2, "{:?}", finals.iter().map(|f| (f.start, f.end())).collect::<Vec<_>>());
        assert!(finals[0].end() <= ms(6_500));
    }

    #[test]
    fn pauses_are_heard_over_background_noise() {
        // Speech phrases over hiss at about -42 dBFS, with 0.5 s pauses between them.
        let hiss = |secs: f32| -> Vec<f32> {
            (0..(secs * RATE as f32) as usize).map(|i| if i % 2 == 0 { 0.008 } else { -0.008 }).collect()
        };
        let mut s = TrackStream::new(StreamConfig { partials: false, ..Default::default() });
        let mut audio = hiss(1.0);
        for _ in 0..3 {
            audio.extend(tone(3.0).iter().map(|x| x + 0.008));
            audio.extend(hiss(0.5));
        }
        audio.extend(hiss(2.0));
        let finals = feed(&mut s, ms(0), &audio);
        assert!(finals.len() >= 2, "the pause after 6 s of speech ends a phrase: {}", finals.len());
        assert!(s.flush().is_none(), "the hiss after the speech is not speech");
    }

    #[test]
    fn silence_and_clicks_give_nothing() {
        let mut s = TrackStream::new(StreamConfig::default());
        let mut audio = silence(3.0);
        audio.extend(tone(0.1));
        audio.extend(silence(2.0));
        assert!(feed(&mut s, ms(0), &audio).iter().all(|j| j.kind != JobKind::Final));
    }

    #[test]
    fn long_speech_is_cut_at_its_quietest_point() {
        let mut s = TrackStream::new(StreamConfig { partials: false, ..Default::default() });
        let mut audio = tone(10.0);
        audio.extend(tone(1.0).iter().map(|x| x * 0.3)); // softer, but still speech
        audio.extend(tone(6.0));
        audio.extend(silence(1.0));
        let finals = feed(&mut s, ms(0), &audio);
        assert_eq!(finals.len(), 2);
        let cut = finals[0].end();
        assert!(cut >= ms(10_000) && cut <= ms(11_000), "cut inside the quiet second: {cut}");
        assert_eq!(finals[1].start, cut, "nothing lost at the cut");
    }

    #[test]
    fn a_hole_in_the_audio_closes_the_utterance() {
        let mut s = TrackStream::new(StreamConfig { partials: false, ..Default::default() });
        let mut jobs = feed(&mut s, ms(0), &tone(2.0));
        assert!(jobs.is_empty());
        jobs.extend(feed(&mut s, ms(5_000), &tone(1.0)));
        assert_eq!(jobs.len(), 1);
        assert!(jobs[0].end() <= ms(2_000));
        assert!(s.flush().is_some(), "the audio after the hole is its own utterance");
    }
}
