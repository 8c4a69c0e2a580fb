//! whisper.cpp through whisper-rs. One context (the weights) per daemon; each thread that
//! transcribes owns a state. Blocking and CPU-heavy: only ever called on STT threads.
//! The speech service sees only the `Recognizer` trait, so that its scheduling is tested
//! without a model file.

use std::path::Path;
use std::time::{Duration, Instant};
use thiserror::Error;
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState};

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("cannot load the speech model {0}: {1}")]
    Load(String, String),
    #[error("transcription failed: {0}")]
    Whisper(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Offsets from the start of the transcribed audio.
    pub start: Duration,
    pub end: Duration,
    pub text: String,
    /// Mean probability of the segment's text tokens, 0..1.
    pub confidence: f32,
    /// Bytes that are not UTF-8 even joined with the neighbouring segments' bytes.
    pub broken: bool,
    /// Decoding stopped at the token limit, or the output ended inside a character.
    pub truncated: bool,
}

impl Segment {
    /// What the caption filter judges.
    pub fn facts(&self) -> super::filter::SegmentFacts<'_> {
        super::filter::SegmentFacts {
            text: &self.text,
            confidence: self.confidence,
            broken: self.broken,
            truncated: self.truncated,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Transcript {
    pub segments: Vec<Segment>,
    pub language: String,
    /// Time spent transcribing (for real-time factors).
    pub elapsed: Duration,
}

impl Transcript {
    pub fn text(&self) -> String {
        self.segments.iter().map(|s| s.text.trim()).collect::<Vec<_>>().join(" ")
    }
}

/// What the speech service needs of a speech engine: whisper in the daemon, a scripted
/// stand-in in the service's tests.
pub trait Recognizer: Send {
    /// Transcribes 16 kHz mono audio in `language` (a whisper code or "auto"), `context`
    /// being what the same speaker said just before.
    fn transcribe(&mut self, samples: &[f32], language: &str, context: Option<&str>)
    -> Result<Transcript, EngineError>;
}

/// A whisper model with the state of the one thread that uses it.
pub struct Whisper {
    engine: Engine,
    state: WhisperState,
}

impl Whisper {
    pub fn load(path: &Path, threads: u32, slowdown: u32) -> Result<Whisper, EngineError> {
        let engine = Engine::load(path, threads, slowdown)?;
        let state = engine.new_state()?;
        Ok(Whisper { engine, state })
    }
}

impl Recognizer for Whisper {
    fn transcribe(
        &mut self,
        samples: &[f32],
        language: &str,
        context: Option<&str>,
    ) -> Result<Transcript, EngineError> {
        self.engine.transcribe(&mut self.state, samples, language, context)
    }
}

/// A whisper model's size class, read from the file (its encoder's layer count): what the
/// decoding settings adapt to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelSize {
    /// tiny, base: 4 or 6 encoder layers.
    Small,
    /// small (12 layers).
    Medium,
    /// medium, large, large-v3-turbo: 24 layers or more.
    Large,
}

impl ModelSize {
    pub fn from_encoder_layers(layers: i32) -> ModelSize {
        match layers {
            ..=6 => ModelSize::Small,
            7..=12 => ModelSize::Medium,
            _ => ModelSize::Large,
        }
    }

    /// Encoder frames for `secs` of audio. whisper encodes a 30 s window (1500 frames)
    /// unless told less; a short utterance needs 50 frames a second plus a margin (less
    /// loses words). Larger models are trained harder on the full window and hallucinate
    /// sooner on a cut one, so they get a wider margin; the cut matters most for them,
    /// since their encoder is most of the cost.
    pub fn audio_ctx(self, secs: f64) -> i32 {
        let (factor, extra) = match self {
            ModelSize::Small => (1.3, 64.0),
            ModelSize::Medium => (1.5, 128.0),
            ModelSize::Large => (1.8, 256.0),
        };
        ((secs * 50.0 * factor + extra) as i32).min(1500)
    }
}

pub struct Engine {
    ctx: WhisperContext,
    size: ModelSize,
    threads: i32,
    /// Tests only: each transcription takes this many times longer (back-pressure drills).
    slowdown: u32,
}

/// whisper.cpp needs at least a second of audio to work reliably.
const MIN_SAMPLES: usize = 16_000;

impl Engine {
    pub fn load(path: &Path, threads: u32, slowdown: u32) -> Result<Engine, EngineError> {
        whisper_rs::install_logging_hooks();
        let p =
            path.to_str().ok_or_else(|| EngineError::Load(path.display().to_string(), "path is not UTF-8".into()))?;
        let ctx = WhisperContext::new_with_params(p, WhisperContextParameters::default())
            .map_err(|e| EngineError::Load(path.display().to_string(), e.to_string()))?;
        let size = ModelSize::from_encoder_layers(ctx.model_n_audio_layer());
        // More threads than cores only makes whisper's threads wait for each other.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        let threads = threads.clamp(1, cores.max(1)) as i32;
        tracing::info!(?size, threads, encoder_layers = ctx.model_n_audio_layer(), "speech model");
        Ok(Engine { ctx, size, threads, slowdown: slowdown.max(1) })
    }

    pub fn size(&self) -> ModelSize {
        self.size
    }

    pub fn is_multilingual(&self) -> bool {
        self.ctx.is_multilingual()
    }

    pub fn new_state(&self) -> Result<WhisperState, EngineError> {
        self.ctx.create_state().map_err(|e| EngineError::Whisper(e.to_string()))
    }

    /// Transcribes 16 kHz mono audio. `language` is a whisper code (kk, ru, en) or "auto";
    /// `context` is what the same speaker said just before (it keeps a phrase cut from its
    /// sentence consistent with it).
    pub fn transcribe(
        &self,
        state: &mut WhisperState,
        samples: &[f32],
        language: &str,
        context: Option<&str>,
    ) -> Result<Transcript, EngineError> {
        let started = Instant::now();
        let mut audio = samples.to_vec();
        if audio.len() < MIN_SAMPLES {
            audio.resize(MIN_SAMPLES, 0.0);
        }
        let secs = audio.len() as f64 / 16_000.0;
        let mut p = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        p.set_n_threads(self.threads);
        let lang = if self.ctx.is_multilingual() { language } else { "en" };
        p.set_language(Some(lang));
        p.set_audio_ctx(self.size.audio_ctx(secs));
        p.set_no_context(true);
        if let Some(context) = context {
            p.set_initial_prompt(context);
        }
        p.set_suppress_blank(true);
        p.set_no_speech_thold(0.6);
        // Bounded output per call: whisper sometimes loops on one phrase.
        let max_tokens = ((secs * 6.0) as i32).max(32);
        p.set_max_tokens(max_tokens);
        p.set_print_special(false);
        p.set_print_progress(false);
        p.set_print_realtime(false);
        p.set_print_timestamps(false);
        state.full(p, &audio).map_err(|e| EngineError::Whisper(e.to_string()))?;

        let eot = self.ctx.token_eot();
        let mut segments = Vec::new();
        // A character whose bytes are split between two segments: its first bytes wait here.
        let mut carry: Vec<u8> = Vec::new();
        for seg in state.as_iter() {
            let mut bytes = std::mem::take(&mut carry);
            bytes.extend_from_slice(seg.to_bytes().map_err(|e| EngineError::Whisper(e.to_string()))?);
            carry = bytes.split_off(complete_utf8_len(&bytes));
            let broken = std::str::from_utf8(&bytes).is_err();
            let text = String::from_utf8_lossy(&bytes).trim().to_string();
            let probs: Vec<f32> = (0..seg.n_tokens())
                .filter_map(|i| seg.get_token(i))
                .filter(|t| t.token_id() < eot)
                .map(|t| t.token_probability())
                .collect();
            let confidence = if probs.is_empty() { 0.0 } else { probs.iter().sum::<f32>() / probs.len() as f32 };
            if text.is_empty() || (seg.no_speech_probability() > 0.6 && confidence < 0.5) {
                continue;
            }
            // Timestamps are in centiseconds.
            let start = Duration::from_millis(seg.start_timestamp().max(0) as u64 * 10);
            let end = Duration::from_millis(seg.end_timestamp().max(0) as u64 * 10);
            let truncated = probs.len() >= max_tokens as usize;
            segments.push(Segment { start, end: end.max(start), text, confidence, broken, truncated });
        }
        // Output that ends inside a character was cut off (the token limit of a loop).
        if let Some(last) = segments.last_mut().filter(|_| !carry.is_empty()) {
            last.truncated = true;
        }
        dedupe_loops(&mut segments);
        let language = if lang == "auto" {
            whisper_rs::get_lang_str(state.full_lang_id_from_state()).unwrap_or("auto").to_string()
        } else {
            lang.to_string()
        };
        let mut elapsed = started.elapsed();
        if self.slowdown > 1 {
            std::thread::sleep(elapsed * (self.slowdown - 1));
            elapsed = started.elapsed();
        }
        Ok(Transcript { segments, language, elapsed })
    }
}

/// How many leading bytes end on a character boundary: all of them, unless the last
/// character is incomplete (its remaining bytes are in the next segment, or were never
/// written because decoding stopped).
fn complete_utf8_len(bytes: &[u8]) -> usize {
    // The start of the last character is at most 3 bytes before the end.
    for back in 1..=bytes.len().min(4) {
        let at = bytes.len() - back;
        let b = bytes[at];
        if b & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: the character started earlier
        }
        let needs = match b {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return bytes.len(), // not a lead byte: broken, not incomplete
        };
        return if back < needs { at } else { bytes.len() };
    }
    bytes.len()
}

/// Drops a segment that repeats the one before it (a decoding loop).
fn dedupe_loops(segments: &mut Vec<Segment>) {
    segments.dedup_by(|b, a| super::text::words(&a.text) == super::text::words(&b.text));
}

#[cfg(test)]
mod tests {
    use super::complete_utf8_len;

    #[test]
    fn the_encoder_window_grows_with_the_model() {
        use super::ModelSize;
        assert_eq!(ModelSize::from_encoder_layers(6), ModelSize::Small);
        assert_eq!(ModelSize::from_encoder_layers(12), ModelSize::Medium);
        assert_eq!(ModelSize::from_encoder_layers(32), ModelSize::Large);
        // 3 s: the same frames for tiny and base as before sizes were told apart.
        assert_eq!(ModelSize::Small.audio_ctx(3.0), 259);
        assert!(ModelSize::Large.audio_ctx(3.0) > ModelSize::Medium.audio_ctx(3.0));
        assert_eq!(ModelSize::Large.audio_ctx(30.0), 1500, "never more than the model's window");
    }

    #[test]
    fn a_character_split_between_segments_is_joined_not_broken() {
        let text = "кұлі".as_bytes();
        // "і" is two bytes; cut after its first one.
        let cut = &text[..text.len() - 1];
        assert_eq!(complete_utf8_len(cut), text.len() - 2);
        assert_eq!(complete_utf8_len(text), text.len());
        assert_eq!(complete_utf8_len(b"abc"), 3);
        assert_eq!(complete_utf8_len(&[]), 0);
        // A stray continuation byte is broken text, not an incomplete character.
        assert_eq!(complete_utf8_len(&[b'a', 0x80, 0x80, 0x80, 0x80]), 5);
    }
}
