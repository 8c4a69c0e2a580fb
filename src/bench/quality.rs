//! `courtbox bench quality`: how well a speech model does each language on the project's
//! test speech: the figure `models/models.toml` pins per model (1 − word error rate of what
//! the caption filter lets through, floored at 0), and how much the filter refused.

use crate::stt::engine::Engine;
use crate::stt::filter;
use crate::stt::text::wer;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The test speech the project has, and what is said in it. The Russian and Kazakh
/// texts are the ones scripts/setup synthesizes (festival, espeak-ng).
const SPEECH: [(&str, &str, &str); 3] = [
    (
        "en",
        "jfk.wav",
        "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.",
    ),
    (
        "ru",
        "ru.wav",
        "Уважаемый суд, сторона обвинения готова. Мы просим приобщить к делу показания свидетеля и заключение эксперта.",
    ),
    ("kk", "kk.wav", "Құрметті сот, қорғау тарапы дайын. Біз куәгерге бірнеше сұрақ қойғымыз келеді."),
];

#[derive(clap::Args)]
pub struct Options {
    /// Any ggml whisper file.
    #[arg(long, default_value = "models/ggml-base-q8_0.bin")]
    model: PathBuf,
    /// Where jfk.wav, ru.wav and kk.wav are (scripts/setup --tests makes them).
    #[arg(long, default_value = "var/test-speech")]
    speech: PathBuf,
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Print what the model wrote and what the filter did with each segment.
    #[arg(long)]
    verbose: bool,
}

/// One language's figures.
pub struct Measured {
    pub language: &'static str,
    /// 1 − WER of the captions the filter let through, floored at 0.
    pub quality: f64,
    /// The same without the filter.
    pub raw_quality: f64,
    pub segments: usize,
    pub refused: usize,
}

pub fn run(o: &Options) -> Result<()> {
    gst::init()?;
    let engine = Engine::load(&o.model, o.threads, 1).with_context(|| format!("loading {}", o.model.display()))?;
    let sha = crate::stt::models::sha256_file(&o.model)?;
    println!("model {} (SHA-256 {sha}), multilingual: {}", o.model.display(), engine.is_multilingual());
    let mut figures = Vec::new();
    for (language, file, reference) in SPEECH {
        if !engine.is_multilingual() && language != "en" {
            println!("{language}: the model is English only: quality 0");
            figures.push(Measured { language, quality: 0.0, raw_quality: 0.0, segments: 0, refused: 0 });
            continue;
        }
        figures.push(measure(&engine, &o.speech.join(file), language, reference, o.verbose)?);
    }
    println!("\nlanguage  quality  unfiltered  segments  refused");
    for m in &figures {
        println!("{:<9} {:>7.2}  {:>10.2}  {:>8}  {:>7}", m.language, m.quality, m.raw_quality, m.segments, m.refused);
    }
    let table: Vec<String> = figures.iter().map(|m| format!("{} = {:.2}", m.language, m.quality)).collect();
    println!("\nfor models/models.toml: quality = {{ {} }}", table.join(", "));
    Ok(())
}

fn measure(engine: &Engine, file: &Path, language: &'static str, reference: &str, verbose: bool) -> Result<Measured> {
    let pcm: Vec<f32> = crate::capture::decode_to_pcm(file, 16_000)
        .map_err(|e| anyhow::anyhow!("{}: {e} (scripts/setup --tests makes the test speech)", file.display()))?
        .iter()
        .map(|s| f32::from(*s) / 32768.0)
        .collect();
    let mut state = engine.new_state()?;
    let t = engine.transcribe(&mut state, &pcm, language, None)?;
    let mut kept = Vec::new();
    let mut refused = 0;
    for seg in &t.segments {
        let verdict = filter::judge(seg.facts(), language);
        if verbose {
            let what = verdict.as_ref().map_or_else(|r| format!("refused: {r}"), |_| "kept".to_string());
            println!("{language} [{:.2}] {:?}: {what}", seg.confidence, seg.text);
        }
        match verdict {
            Ok(()) => kept.push(seg.text.as_str()),
            Err(_) => refused += 1,
        }
    }
    let quality = (1.0 - wer(reference, &kept.join(" "))).max(0.0);
    let raw_quality = (1.0 - wer(reference, &t.text())).max(0.0);
    Ok(Measured { language, quality, raw_quality, segments: t.segments.len(), refused })
}
