//! What the speech service transcribes when. The live schedule: for each microphone of the
//! session, the utterances waiting to be transcribed, the partial worth showing, and the
//! batch of finals waiting to be committed; it decides what runs next (finals before
//! partials, oldest first), what is shed to the backlog when more speech waits than the
//! queue allows, and when a batch is due. The backlog: intervals to transcribe later from
//! the recording, worked off one utterance per step. Pure: no engine, no ledger; time is
//! monotonic time passed in, so every decision is unit-tested in milliseconds.
//! `service::Worker` is their I/O shell.

use super::stream::{Job, JobKind, StreamConfig, TrackStream};
use crate::base::MediaTime;
use crate::config::Role;
use crate::integrity::CaptionItem;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use uuid::Uuid;

/// Commit a batch of finals when it has this many captions or is this old.
pub const BATCH_MAX: usize = 8;
pub const BATCH_AGE: Duration = Duration::from_secs(10);

/// A phrase that starts within this of the previous one continues its sentence.
const CONTEXT_GAP: Duration = Duration::from_secs(2);

/// Audio later than expected by more than this is a hole: chunks were dropped.
const HOLE: Duration = Duration::from_millis(40);

/// The length of `n` samples at 16 kHz.
pub fn samples_duration(n: usize) -> Duration {
    Duration::from_nanos(n as u64 * 62_500)
}

/// Why speech is left to be transcribed later from the recording. The text goes into the
/// chain's `captions_behind` record.
#[derive(Debug, Clone, PartialEq)]
pub enum BehindCause {
    /// Chunks were dropped because the bounded audio queue was full.
    Overflowed,
    /// More speech waited than the queue allows: the oldest was shed.
    FellBehind,
    /// Recording stopped with speech still waiting beyond the deadline.
    StillBehindAtStop,
    /// No speech model while recording; the reason says why.
    NoModel(String),
    /// The installed model is not good enough for the microphone's language.
    Withheld(super::quality::Withheld),
    /// The model's output for this stretch was not speech (see `filter`).
    NotTranscribed(super::filter::Rejection),
    /// The speech engine failed on this stretch. Live, the backlog tries it again; a
    /// failure in the backlog itself is left for another attempt by hand (`retry: false`).
    EngineFailed { why: String, retry: bool },
}

impl BehindCause {
    pub fn describe(&self) -> String {
        match self {
            BehindCause::Overflowed => "speech audio overflowed the transcription queue".into(),
            BehindCause::FellBehind => "transcription fell behind".into(),
            BehindCause::StillBehindAtStop => "transcription still behind when recording stopped".into(),
            BehindCause::NoModel(why) => format!("no captions while recording: {why}"),
            BehindCause::Withheld(w) => w.to_string(),
            BehindCause::NotTranscribed(why) => format!("not transcribed: {why}"),
            BehindCause::EngineFailed { why, .. } => format!("not transcribed: the speech engine failed ({why})"),
        }
    }

    /// Whether the model that was there can do the stretch later. Not when it was the
    /// model's own output that was refused, or the language it is not good enough for: that
    /// takes another model (`courtbox captions transcribe`).
    pub fn same_model_can_retry(&self) -> bool {
        match self {
            BehindCause::Withheld(_) | BehindCause::NotTranscribed(_) => false,
            BehindCause::EngineFailed { retry, .. } => *retry,
            _ => true,
        }
    }
}

/// Speech that will not be transcribed live.
#[derive(Debug, Clone, PartialEq)]
pub struct Behind {
    pub source: String,
    pub start: MediaTime,
    pub end: MediaTime,
    pub cause: BehindCause,
}

/// What to transcribe next.
#[derive(Debug)]
pub enum Work {
    /// A finished utterance: its captions go into the record.
    Final { source: String, job: Job },
    /// The newest audio of an utterance still being spoken: shown, never recorded.
    Partial { source: String, job: Job },
}

/// A microphone of the live session.
pub struct LiveTrack {
    pub role: Option<Role>,
    /// Whisper language for this microphone.
    pub language: String,
    stream: TrackStream,
    finals: VecDeque<Job>,
    partial: Option<Job>,
    batch: Vec<CaptionItem>,
    batch_language: String,
    /// When the oldest caption of the batch was added (monotonic).
    batch_opened: Option<Duration>,
    /// End of the newest audio received: the live edge.
    pub edge: MediaTime,
    expected: Option<MediaTime>,
    /// The last final text and where it ended: context for the next phrase.
    context: Option<(MediaTime, String)>,
}

impl LiveTrack {
    fn new(role: Option<Role>, language: String, stream: StreamConfig) -> LiveTrack {
        LiveTrack {
            role,
            language,
            stream: TrackStream::new(stream),
            finals: VecDeque::new(),
            partial: None,
            batch: Vec::new(),
            batch_language: String::new(),
            batch_opened: None,
            edge: MediaTime::ZERO,
            expected: None,
            context: None,
        }
    }

    /// What the same speaker said just before `job`, if it continues that sentence.
    pub fn context_for(&self, job: &Job) -> Option<String> {
        let (end, text) = self.context.as_ref()?;
        (job.start.saturating_sub(*end) < CONTEXT_GAP).then(|| text.clone())
    }

    /// Speech waiting to be transcribed.
    pub fn waiting(&self) -> Duration {
        samples_duration(self.finals.iter().map(|j| j.samples.len()).sum())
    }
}

/// A batch of finals ready to be committed as one `captions` record.
#[derive(Debug)]
pub struct Batch {
    pub source: String,
    pub role: Option<Role>,
    pub language: String,
    pub items: Vec<CaptionItem>,
}

/// The schedule of one live session.
pub struct LiveSchedule {
    tracks: BTreeMap<String, LiveTrack>,
    /// The most speech that may wait per microphone before the oldest is shed.
    queue: Duration,
}

/// A microphone as the schedule needs it.
pub struct Mic {
    pub source: String,
    pub role: Option<Role>,
    pub language: String,
}

impl LiveSchedule {
    pub fn new(mics: Vec<Mic>, stream: &StreamConfig, queue: Duration) -> LiveSchedule {
        let tracks = mics.into_iter().map(|m| (m.source, LiveTrack::new(m.role, m.language, stream.clone()))).collect();
        LiveSchedule { tracks, queue }
    }

    pub fn track(&self, source: &str) -> Option<&LiveTrack> {
        self.tracks.get(source)
    }

    pub fn sources(&self) -> impl Iterator<Item = &String> {
        self.tracks.keys()
    }

    /// Speech waiting per microphone, for status.
    pub fn waiting(&self) -> impl Iterator<Item = (&String, Duration)> {
        self.tracks.iter().map(|(s, t)| (s, t.waiting()))
    }

    /// A chunk of microphone audio arrived. `transcribing`: whether a model is loaded (if
    /// not, only the live edge moves). Returns the speech to leave to the backlog: a hole
    /// before this chunk (the queue overflowed), or the oldest waiting utterance when more
    /// than the queue allows waits.
    pub fn on_audio(&mut self, source: &str, start: MediaTime, samples: &[f32], transcribing: bool) -> Vec<Behind> {
        let Some(track) = self.tracks.get_mut(source) else { return Vec::new() };
        let end = MediaTime(start.0 + samples_duration(samples.len()).as_nanos() as u64);
        track.edge = track.edge.max(end);
        if !transcribing {
            return Vec::new();
        }
        let mut behind = Vec::new();
        if let Some(expected) = track.expected
            && start.0 > expected.0 + HOLE.as_nanos() as u64
        {
            behind.push(Behind {
                source: source.to_string(),
                start: expected,
                end: start,
                cause: BehindCause::Overflowed,
            });
        }
        track.expected = Some(end);
        for job in track.stream.push(start, samples) {
            match job.kind {
                JobKind::Final => track.finals.push_back(job),
                JobKind::Partial => track.partial = Some(job),
            }
        }
        if track.waiting() > self.queue
            && let Some(old) = track.finals.pop_front()
        {
            behind.push(Behind {
                source: source.to_string(),
                start: old.start,
                end: old.end(),
                cause: BehindCause::FellBehind,
            });
        }
        behind
    }

    /// The next thing to transcribe: the oldest waiting final of any microphone; when no
    /// final waits, the newest partial of an utterance still being spoken.
    pub fn next_work(&mut self) -> Option<Work> {
        self.next_final().or_else(|| self.next_partial())
    }

    fn next_final(&mut self) -> Option<Work> {
        let (_, source) =
            self.tracks.iter().filter_map(|(s, t)| t.finals.front().map(|j| (j.start, s.clone()))).min()?;
        let track = self.tracks.get_mut(&source).expect("chosen from the map");
        let job = track.finals.pop_front().expect("has a front");
        // The partial of an utterance now final is stale.
        if track.partial.as_ref().is_some_and(|p| p.utterance == job.utterance) {
            track.partial = None;
        }
        Some(Work::Final { source, job })
    }

    fn next_partial(&mut self) -> Option<Work> {
        self.tracks.iter_mut().find_map(|(s, t)| {
            let job = t.partial.take()?;
            // An utterance that ended meanwhile gets its final instead.
            (t.stream.current_utterance() == Some(job.utterance)).then(|| Work::Partial { source: s.clone(), job })
        })
    }

    /// Whether the speech `job` of `source` is delayed: the live edge has moved on by more
    /// than `delayed_after` since it ended.
    pub fn is_delayed(&self, source: &str, job: &Job, delayed_after: Duration) -> bool {
        self.tracks.get(source).is_some_and(|t| t.edge.saturating_sub(job.end()) > delayed_after)
    }

    /// Adds the captions of a final to its microphone's batch at monotonic time `now`.
    /// Returns the batch to commit first when the language changed (a record has one).
    pub fn add_final(
        &mut self,
        source: &str,
        job: &Job,
        language: &str,
        text: &str,
        items: Vec<CaptionItem>,
        now: Duration,
    ) -> Option<Batch> {
        let switched = self.tracks.get(source).is_some_and(|t| !t.batch.is_empty() && t.batch_language != language);
        let earlier = if switched { self.take_batch(source) } else { None };
        let track = self.tracks.get_mut(source)?;
        track.batch_language = language.to_string();
        if !text.is_empty() {
            // The last ~200 characters are plenty of context and keep the prompt short.
            let tail = text.char_indices().rev().nth(200).map_or(0, |(i, _)| i);
            track.context = Some((job.end(), text[tail..].to_string()));
        }
        if !items.is_empty() {
            track.batch_opened.get_or_insert(now);
        }
        track.batch.extend(items);
        earlier
    }

    /// The microphones whose batch is due at `now`: full, old, or any at all when `force`.
    pub fn due_batches(&self, now: Duration, force: bool) -> Vec<String> {
        let due = |t: &LiveTrack| {
            force
                || t.batch.len() >= BATCH_MAX
                || t.batch_opened.is_some_and(|opened| now.saturating_sub(opened) >= BATCH_AGE)
        };
        self.tracks.iter().filter(|(_, t)| !t.batch.is_empty() && due(t)).map(|(s, _)| s.clone()).collect()
    }

    /// Takes `source`'s batch to commit it (None when empty).
    pub fn take_batch(&mut self, source: &str) -> Option<Batch> {
        let track = self.tracks.get_mut(source)?;
        if track.batch.is_empty() {
            return None;
        }
        track.batch_opened = None;
        Some(Batch {
            source: source.to_string(),
            role: track.role,
            language: track.batch_language.clone(),
            items: std::mem::take(&mut track.batch),
        })
    }

    /// Recording stopped: the utterance in progress becomes final, partials are dropped.
    pub fn flush(&mut self) {
        for track in self.tracks.values_mut() {
            if let Some(job) = track.stream.flush() {
                track.finals.push_back(job);
            }
            track.partial = None;
        }
    }

    /// Everything still waiting, left to the backlog.
    pub fn drain_waiting(&mut self) -> Vec<Behind> {
        self.tracks
            .iter_mut()
            .flat_map(|(s, t)| {
                t.finals.drain(..).map(|j| Behind {
                    source: s.clone(),
                    start: j.start,
                    end: j.end(),
                    cause: BehindCause::StillBehindAtStop,
                })
            })
            .collect()
    }
}

/// An interval to transcribe from the recording, and the `captions_behind` record it resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BacklogItem {
    pub session: Uuid,
    pub source: String,
    pub role: Option<Role>,
    pub language: String,
    pub record: u64,
    pub start: MediaTime,
    pub end: MediaTime,
}

impl BacklogItem {
    /// Whether the recording covers the interval yet: while the session records, the
    /// segment holding its end may still be open.
    pub fn is_recorded(&self, still_recording: bool, recorded_to: MediaTime) -> bool {
        !still_recording || recorded_to >= self.end
    }
}

/// A backlog item being worked off: its utterances, and the captions made so far.
#[derive(Debug)]
pub struct Cursor {
    pub item: BacklogItem,
    jobs: VecDeque<Job>,
    pub items: Vec<CaptionItem>,
    /// Stretches whose output was refused: (start, end, why).
    pub rejected: Vec<(MediaTime, MediaTime, BehindCause)>,
    /// The language whisper reported (for "auto").
    pub language: String,
}

impl Cursor {
    pub fn new(item: BacklogItem, jobs: VecDeque<Job>) -> Cursor {
        let language = item.language.clone();
        Cursor { item, jobs, items: Vec::new(), rejected: Vec::new(), language }
    }
}

/// The next piece of backlog work.
#[derive(Debug)]
pub enum BacklogStep {
    /// Nothing queued.
    Idle,
    /// Decode this interval from the recording, then `opened` (or `not_recorded_yet`).
    Open(BacklogItem),
    /// Transcribe this utterance of the open item, then `transcribed`.
    Transcribe { job: Job, language: String },
    /// Every utterance of the item is done: commit its captions.
    Commit(Cursor),
}

/// Speech left to be transcribed later from the recording, one item at a time.
#[derive(Debug, Default)]
pub struct Backlog {
    queue: VecDeque<BacklogItem>,
    open: Option<Cursor>,
}

impl Backlog {
    pub fn push(&mut self, item: BacklogItem) {
        self.queue.push_back(item);
    }

    /// Whether the `captions_behind` record `record` of `session` is queued or open.
    pub fn contains(&self, session: Uuid, record: u64) -> bool {
        let is = |i: &BacklogItem| i.session == session && i.record == record;
        self.queue.iter().any(is) || self.open.as_ref().is_some_and(|c| is(&c.item))
    }

    /// Items waiting or open.
    pub fn len(&self) -> usize {
        self.queue.len() + usize::from(self.open.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn open_item(&self) -> Option<&BacklogItem> {
        self.open.as_ref().map(|c| &c.item)
    }

    pub fn next_step(&mut self) -> BacklogStep {
        let Some(cursor) = self.open.as_mut() else {
            return self.queue.pop_front().map_or(BacklogStep::Idle, BacklogStep::Open);
        };
        match cursor.jobs.pop_front() {
            Some(job) => BacklogStep::Transcribe { job, language: cursor.item.language.clone() },
            None => BacklogStep::Commit(self.open.take().expect("open")),
        }
    }

    /// The item given by `Open` is decoded: work it off next.
    pub fn opened(&mut self, cursor: Cursor) {
        self.open = Some(cursor);
    }

    /// The item given by `Open` is not recorded yet: it waits behind the others.
    pub fn not_recorded_yet(&mut self, item: BacklogItem) {
        self.queue.push_back(item);
    }

    /// The utterance given by `Transcribe` gave these captions, in `language`, and these
    /// refused stretches.
    pub fn transcribed(
        &mut self,
        language: &str,
        items: Vec<CaptionItem>,
        rejected: Vec<(MediaTime, MediaTime, BehindCause)>,
    ) {
        if let Some(cursor) = self.open.as_mut() {
            cursor.language = language.to_string();
            cursor.items.extend(items);
            cursor.rejected.extend(rejected);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::WallTime;

    const RATE: usize = 16_000;

    /// A tone loud enough to count as speech, `ms` long.
    fn speech(ms: usize) -> Vec<f32> {
        (0..RATE * ms / 1000).map(|i| 0.3 * ((i as f32) * 0.07).sin()).collect()
    }

    fn silence(ms: usize) -> Vec<f32> {
        vec![0.0; RATE * ms / 1000]
    }

    fn schedule(mics: &[&str], queue: Duration) -> LiveSchedule {
        let mics = mics.iter().map(|s| Mic { source: s.to_string(), role: None, language: "ru".into() }).collect();
        LiveSchedule::new(mics, &StreamConfig::default(), queue)
    }

    /// Feeds `samples` to `source` in 10 ms chunks from `at`; returns where it ended and
    /// what was shed.
    fn feed(s: &mut LiveSchedule, source: &str, at: MediaTime, samples: &[f32]) -> (MediaTime, Vec<Behind>) {
        let mut t = at;
        let mut behind = Vec::new();
        for chunk in samples.chunks(RATE / 100) {
            behind.extend(s.on_audio(source, t, chunk, true));
            t = MediaTime(t.0 + samples_duration(chunk.len()).as_nanos() as u64);
        }
        (t, behind)
    }

    /// An utterance: speech then enough silence to end it.
    fn utterance(s: &mut LiveSchedule, source: &str, at: MediaTime, speech_ms: usize) -> (MediaTime, Vec<Behind>) {
        let (t, mut behind) = feed(s, source, at, &speech(speech_ms));
        let (t, more) = feed(s, source, t, &silence(1500));
        behind.extend(more);
        (t, behind)
    }

    fn item(text: &str) -> CaptionItem {
        CaptionItem {
            media_start: MediaTime::ZERO,
            media_end: MediaTime::ZERO,
            wall: WallTime::from_unix_nanos(0),
            text: text.into(),
            confidence: 900,
            delayed: false,
        }
    }

    #[test]
    fn a_queue_over_budget_sheds_the_oldest_speech_to_the_backlog() {
        let mut s = schedule(&["judge"], Duration::from_secs(5));
        let mut t = MediaTime::ZERO;
        let mut shed = Vec::new();
        // Nobody transcribes: three 3 s utterances pile up, over a 5 s budget.
        for _ in 0..3 {
            let (end, behind) = utterance(&mut s, "judge", t, 3000);
            shed.extend(behind);
            t = end;
        }
        assert!(!shed.is_empty(), "over the budget, speech is shed");
        assert!(shed.iter().all(|b| b.cause == BehindCause::FellBehind && b.source == "judge"));
        assert_eq!(shed[0].start.0, 0, "the oldest goes first: {:?}", shed[0]);
        assert!(s.track("judge").unwrap().waiting() <= Duration::from_secs(5), "back within the budget");
    }

    #[test]
    fn a_hole_in_the_audio_is_left_to_the_backlog() {
        let mut s = schedule(&["judge"], Duration::from_secs(30));
        let (t, _) = feed(&mut s, "judge", MediaTime::ZERO, &silence(100));
        let later = MediaTime(t.0 + 2_000_000_000);
        let behind = s.on_audio("judge", later, &silence(10), true);
        assert_eq!(
            behind,
            vec![Behind { source: "judge".into(), start: t, end: later, cause: BehindCause::Overflowed }]
        );
    }

    #[test]
    fn without_a_model_only_the_live_edge_moves() {
        let mut s = schedule(&["judge"], Duration::from_secs(1));
        for i in 0..500u64 {
            assert!(s.on_audio("judge", MediaTime(i * 10_000_000), &speech(10), false).is_empty());
        }
        assert_eq!(s.track("judge").unwrap().edge, MediaTime(5_000_000_000));
        assert!(s.next_work().is_none());
    }

    #[test]
    fn finals_run_before_partials_and_the_oldest_final_first() {
        let mut s = schedule(&["judge", "lawyer"], Duration::from_secs(60));
        let (_, _) = utterance(&mut s, "lawyer", MediaTime(1_000_000_000), 2000);
        let (_, _) = utterance(&mut s, "judge", MediaTime(2_000_000_000), 2000);
        // The judge is still speaking: a partial waits too.
        feed(&mut s, "judge", MediaTime(10_000_000_000), &speech(3000));
        let Some(Work::Final { source, .. }) = s.next_work() else { panic!("a final first") };
        assert_eq!(source, "lawyer", "the oldest speech first");
        let Some(Work::Final { source, .. }) = s.next_work() else { panic!("then the other final") };
        assert_eq!(source, "judge");
        assert!(matches!(s.next_work(), Some(Work::Partial { .. })), "then the partial");
        assert!(s.next_work().is_none());
    }

    #[test]
    fn a_batch_is_due_when_full_or_old_and_a_language_switch_commits_the_earlier_one() {
        let mut s = schedule(&["judge"], Duration::from_secs(60));
        let (_, _) = utterance(&mut s, "judge", MediaTime::ZERO, 2000);
        let Some(Work::Final { job, .. }) = s.next_work() else { panic!() };
        let start = Duration::from_secs(100);
        assert!(s.add_final("judge", &job, "ru", "a", vec![item("a")], start).is_none());
        assert!(s.due_batches(start + Duration::from_secs(9), false).is_empty(), "young and small");
        assert_eq!(s.due_batches(start + BATCH_AGE, false), vec!["judge".to_string()], "old enough");
        assert_eq!(s.due_batches(start, true), vec!["judge".to_string()], "forced");
        let earlier = s.add_final("judge", &job, "kk", "b", vec![item("b")], start).expect("a switch commits first");
        assert_eq!((earlier.language.as_str(), earlier.items.len()), ("ru", 1));
        for i in 0..BATCH_MAX - 1 {
            s.add_final("judge", &job, "kk", "c", vec![item(&i.to_string())], start);
        }
        assert_eq!(s.due_batches(start, false), vec!["judge".to_string()], "full");
        let batch = s.take_batch("judge").unwrap();
        assert_eq!((batch.language.as_str(), batch.items.len()), ("kk", BATCH_MAX));
        assert!(s.take_batch("judge").is_none());
    }

    #[test]
    fn at_stop_the_utterance_in_progress_becomes_final_and_the_rest_goes_behind() {
        let mut s = schedule(&["judge"], Duration::from_secs(60));
        feed(&mut s, "judge", MediaTime::ZERO, &speech(2500));
        s.flush();
        let left = s.drain_waiting();
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(left[0].cause, BehindCause::StillBehindAtStop);
        assert!(s.next_work().is_none(), "partials are dropped at stop");
    }

    fn backlog_item(record: u64, end_s: u64) -> BacklogItem {
        BacklogItem {
            session: Uuid::nil(),
            source: "judge".into(),
            role: None,
            language: "auto".into(),
            record,
            start: MediaTime::ZERO,
            end: MediaTime(end_s * 1_000_000_000),
        }
    }

    #[test]
    fn the_backlog_works_one_item_off_utterance_by_utterance_and_lets_unrecorded_ones_wait() {
        let mut b = Backlog::default();
        b.push(backlog_item(3, 10));
        b.push(backlog_item(7, 20));
        assert!(b.contains(Uuid::nil(), 7) && !b.contains(Uuid::nil(), 4));
        let BacklogStep::Open(first) = b.next_step() else { panic!("open the oldest") };
        assert_eq!(first.record, 3);
        // Still recording, and the recording has not reached its end: it waits.
        assert!(!first.is_recorded(true, MediaTime(9_000_000_000)));
        assert!(first.is_recorded(false, MediaTime::ZERO), "a stopped session has all it will ever have");
        b.not_recorded_yet(first);
        let BacklogStep::Open(second) = b.next_step() else { panic!("then the next") };
        assert_eq!(second.record, 7);
        let mut s = schedule(&["judge"], Duration::from_secs(60));
        utterance(&mut s, "judge", MediaTime::ZERO, 2000);
        utterance(&mut s, "judge", MediaTime(4_000_000_000), 2000);
        let jobs: VecDeque<Job> = std::iter::from_fn(|| match s.next_work() {
            Some(Work::Final { job, .. }) => Some(job),
            _ => None,
        })
        .collect();
        assert_eq!(jobs.len(), 2);
        b.opened(Cursor::new(second, jobs));
        assert!(b.contains(Uuid::nil(), 7), "open items count as queued");
        for _ in 0..2 {
            let BacklogStep::Transcribe { language, .. } = b.next_step() else { panic!("each utterance") };
            assert_eq!(language, "auto");
            b.transcribed("kk", vec![item("x")], Vec::new());
        }
        let BacklogStep::Commit(done) = b.next_step() else { panic!("then commit") };
        assert_eq!((done.item.record, done.items.len(), done.language.as_str()), (7, 2, "kk"));
        assert_eq!(b.len(), 1, "the unrecorded one still waits");
        assert!(matches!(b.next_step(), BacklogStep::Open(i) if i.record == 3));
        assert!(matches!(b.next_step(), BacklogStep::Idle));
    }
}
