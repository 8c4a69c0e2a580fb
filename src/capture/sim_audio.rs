//! Synthetic microphones: speech files (or tones) pushed into an `appsrc` at real-time
//! pace, each buffer stamped with the pipeline running time at which it was "captured".

use crate::config::{AudioSourceKind, HwProfile, Microphone};
use gst::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct SimAudio {
    pub rate: u32,
    pub channels: u32,
    /// One programme per channel, channel 1 first.
    pub programmes: Vec<Programme>,
}

#[derive(Clone)]
pub enum Programme {
    /// A speech recording played in its turn of a cycle shared by all sim microphones, so
    /// that people speak one after another as in a hearing.
    Speech {
        file: String,
        pcm: Arc<Vec<i16>>,
        turn: Duration,
        cycle: Duration,
    },
    /// A beep at this frequency, 0.8 s on and 1.2 s off, that starts on every even second
    /// of the box's monotonic clock (not of the pipeline's running time): like a
    /// clapperboard, it can be lined up with anything else timed on that clock, such as the
    /// flashes of the test camera (`tests/rtsp/rtsp-camera --flash`).
    Tone(u32),
    Silence,
}

impl std::fmt::Debug for Programme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Programme::Speech { file, pcm, turn, cycle } => {
                write!(f, "Speech({file}, {} samples, at {turn:?} of {cycle:?})", pcm.len())
            }
            Programme::Tone(hz) => write!(f, "Tone({hz} Hz)"),
            Programme::Silence => f.write_str("Silence"),
        }
    }
}

/// Silence between two speakers' turns.
const TURN_GAP: Duration = Duration::from_millis(1500);

/// The turns of all sim microphones with speech: each speaks once per cycle, in profile
/// order. Speech is decoded at the rate of each device when its programme is made.
pub struct SpeechSchedule {
    dir: PathBuf,
    turns: Vec<(String, Duration)>,
    cycle: Duration,
}

impl SpeechSchedule {
    pub fn for_profile(profile: &HwProfile, dir: &Path) -> SpeechSchedule {
        let mut turns = Vec::new();
        let mut at = Duration::ZERO;
        for dev in profile.audio_devices.iter().filter(|d| d.source == AudioSourceKind::Sim) {
            for mic in &dev.mics {
                let Some(file) = &mic.sim_audio else { continue };
                let path = dir.join(file);
                match decode_to_pcm(&path, 16_000) {
                    Ok(pcm) if !pcm.is_empty() => {
                        turns.push((mic.name.clone(), at));
                        at += Duration::from_secs_f64(pcm.len() as f64 / 16_000.0) + TURN_GAP;
                    }
                    Ok(_) => {
                        tracing::warn!(mic = %mic.name, path = %path.display(), "speech file is empty; playing a tone instead")
                    }
                    Err(e) => {
                        tracing::warn!(mic = %mic.name, path = %path.display(), error = %e, "no speech for this sim microphone (run ./scripts/setup); playing a tone instead")
                    }
                }
            }
        }
        SpeechSchedule { dir: dir.to_path_buf(), turns, cycle: at }
    }

    /// The microphone's speech in its turn if it has one, else its tone.
    pub fn programme(&self, mic: &Microphone, rate: u32) -> Programme {
        let turn = self.turns.iter().find(|(m, _)| *m == mic.name).map(|t| t.1);
        if let (Some(turn), Some(file)) = (turn, &mic.sim_audio)
            && let Ok(pcm) = decode_to_pcm(&self.dir.join(file), rate)
        {
            return Programme::Speech { file: file.clone(), pcm: Arc::new(pcm), turn, cycle: self.cycle };
        }
        Programme::Tone(mic.sim_tone_hz.unwrap_or(440))
    }
}

impl Programme {
    /// The sample at position `n` (samples since running time 0) of a pipeline whose
    /// running time 0 is `base_ns` on the monotonic clock.
    pub fn sample(&self, n: u64, rate: u32, base_ns: u64) -> i16 {
        let rate = u64::from(rate);
        match self {
            Programme::Speech { pcm, turn, cycle, .. } => {
                let cycle = (cycle.as_nanos() as u64 * rate / 1_000_000_000).max(1);
                let start = turn.as_nanos() as u64 * rate / 1_000_000_000;
                (n % cycle).checked_sub(start).and_then(|i| pcm.get(i as usize)).copied().unwrap_or(0)
            }
            Programme::Tone(hz) => {
                let clock_ns = u128::from(base_ns) + u128::from(n) * 1_000_000_000 / u128::from(rate);
                if clock_ns % 2_000_000_000 < 800_000_000 {
                    let phase = 2.0 * std::f64::consts::PI * f64::from(*hz) * n as f64 / rate as f64;
                    (phase.sin() * 0.25 * f64::from(i16::MAX)) as i16
                } else {
                    0
                }
            }
            Programme::Silence => 0,
        }
    }
}

/// Faint noise (about -65 dBFS), as a live microphone in a quiet room picks up: a connected
/// sim microphone is never digitally silent, an unplugged one is.
fn room_tone(n: u64, channel: usize) -> i16 {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (channel as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    (x % 61) as i16 - 30
}

/// Decodes any audio file GStreamer can read into mono S16 at `rate`.
pub fn decode_to_pcm(path: &Path, rate: u32) -> Result<Vec<i16>, super::ReadError> {
    let desc = format!(
        "filesrc name=src ! decodebin ! audioconvert ! audioresample \
         ! audio/x-raw,format=S16LE,layout=interleaved,channels=1,rate={rate} ! appsink name=out sync=false"
    );
    let mut out = Vec::new();
    super::read_file(&desc, path, false, |sample| {
        if let Some(buf) = sample.buffer()
            && let Ok(map) = buf.map_readable()
        {
            out.extend(map.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])));
        }
    })?;
    Ok(out)
}

/// Feeds an `appsrc` from a thread until stopped or the source refuses data.
pub struct SimFeeder {
    _thread: crate::base::ServiceThread,
}

/// 20 ms, like a real capture period.
const BUFFER_NS: u64 = 20_000_000;

impl SimFeeder {
    pub fn start(appsrc: gst_app::AppSrc, sim: SimAudio, clock: gst::Clock, base: gst::ClockTime) -> SimFeeder {
        let name = format!("sim-audio-{}", appsrc.name());
        let thread = crate::base::ServiceThread::spawn(name, move |stop| feed(appsrc, sim, clock, base, stop));
        SimFeeder { _thread: thread }
    }
}

fn feed(appsrc: gst_app::AppSrc, sim: SimAudio, clock: gst::Clock, base: gst::ClockTime, stop: CancellationToken) {
    let rate = u64::from(sim.rate);
    let channels = sim.channels as usize;
    let frames = (rate * BUFFER_NS / 1_000_000_000) as usize;
    // Position in the programme follows running time, so a restarted source picks up where
    // the "room" is, like a real microphone would.
    let start = clock.time().saturating_sub(base).nseconds();
    let mut position = start * rate / 1_000_000_000;
    while !stop.is_cancelled() {
        let pts = position * 1_000_000_000 / rate;
        let end = pts + BUFFER_NS;
        // A capture buffer exists once its last sample has been "heard".
        let id = clock.new_single_shot_id(base + gst::ClockTime::from_nseconds(end));
        let _ = id.wait();
        let mut data = Vec::with_capacity(frames * channels * 2);
        for f in 0..frames as u64 {
            for (ch, p) in sim.programmes.iter().enumerate() {
                let mut v = p.sample(position + f, sim.rate, base.nseconds());
                if !matches!(p, Programme::Silence) {
                    v = v.saturating_add(room_tone(position + f, ch));
                }
                data.extend_from_slice(&v.to_le_bytes());
            }
        }
        let mut buffer = gst::Buffer::from_mut_slice(data);
        {
            let b = buffer.get_mut().expect("new buffer is writable");
            b.set_pts(gst::ClockTime::from_nseconds(pts));
            b.set_duration(gst::ClockTime::from_nseconds(BUFFER_NS));
        }
        if appsrc.push_buffer(buffer).is_err() {
            break;
        }
        position += frames as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programmes() {
        // At 50 Hz: a 2 s file spoken 1 s into a 10 s cycle.
        let speech = Programme::Speech {
            file: "x".into(),
            pcm: Arc::new(vec![7; 100]),
            turn: Duration::from_secs(1),
            cycle: Duration::from_secs(10),
        };
        assert_eq!(speech.sample(10, 50, 0), 0); // before its turn
        assert_eq!(speech.sample(55, 50, 0), 7);
        assert_eq!(speech.sample(150, 50, 0), 0); // after it
        assert_eq!(speech.sample(555, 50, 0), 7); // next cycle
        assert_eq!(speech.sample(555, 50, 1_300_000_000), 7); // the clock does not move speech
        let tone = Programme::Tone(1000);
        let loud = (0..800).map(|n| i32::from(tone.sample(n, 8000, 0)).abs()).max().unwrap();
        let quiet = (7000..16000).map(|n| tone.sample(n, 8000, 0)).all(|s| s == 0);
        assert!(loud > 8000 && quiet);
        // A pipeline that started 1.5 s past an even second: its beep starts 0.5 s in, when
        // the clock reaches the next even second, and not before.
        let base = 41_500_000_000;
        assert!((0..3999).all(|n| tone.sample(n, 8000, base) == 0));
        assert!((4000..4100).any(|n| tone.sample(n, 8000, base) != 0));
        assert_eq!(Programme::Silence.sample(3, 8000, 0), 0);
    }
}
