//! What the installed speech model can be trusted with, per language. Each pinned model in
//! `models/models.toml` carries its quality per language, measured by `courtbox bench
//! quality` on the project's test speech (1 − word error rate, floored at 0); a language
//! without test speech is unmeasured. A technician may state the quality of a model the
//! box does not pin (`[stt.quality.<language>]`, with who, when, and the model's SHA-256). Below `[stt]
//! min_quality`, a microphone in that language gets no live captions: the audio is recorded
//! as always, the chain says why, and a capable model can transcribe it later. Pure logic.

use crate::integrity::ModelRef;
use std::collections::BTreeMap;

/// A language's quality and where the figure comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Rating {
    /// Measured by the project on its test speech (models.toml).
    Measured(f32),
    /// Stated in the configuration by a technician.
    Stated { score: f32, set_by: String, set_at: String },
    /// No figure: the project has no test speech in this language, and nobody stated one.
    Unmeasured,
}

impl Rating {
    pub fn score(&self) -> Option<f32> {
        match self {
            Rating::Measured(s) | Rating::Stated { score: s, .. } => Some(*s),
            Rating::Unmeasured => None,
        }
    }
}

impl std::fmt::Display for Rating {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rating::Measured(s) => write!(f, "quality {s:.2}, measured"),
            Rating::Stated { score, set_by, set_at } => write!(f, "quality {score:.2}, stated by {set_by} on {set_at}"),
            Rating::Unmeasured => write!(f, "quality not measured"),
        }
    }
}

/// English name of a whisper language code, for people (the panel, `check`).
pub fn language_name(code: &str) -> String {
    match code {
        "kk" => "Kazakh".into(),
        "ru" => "Russian".into(),
        "en" => "English".into(),
        other => other.to_string(),
    }
}

/// Why a language gets no live captions with this model.
#[derive(Debug, Clone, PartialEq)]
pub struct Withheld {
    pub language: String,
    pub model: String,
    pub rating: Rating,
    pub min_quality: f32,
}

impl std::fmt::Display for Withheld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: no live captions with the installed speech model {} ({}; the minimum is {:.2})",
            language_name(&self.language),
            self.model,
            self.rating,
            self.min_quality
        )
    }
}

/// The installed model and what it may caption.
#[derive(Debug, Clone)]
pub struct Capability {
    pub model: ModelRef,
    ratings: BTreeMap<String, Rating>,
    min_quality: f32,
}

impl Capability {
    /// `measured`: the pinned model's figures (empty for a model the box does not pin);
    /// `stated`: the configuration's, which take precedence.
    pub fn new(
        model: ModelRef,
        measured: &BTreeMap<String, f32>,
        stated: BTreeMap<String, Rating>,
        min_quality: f32,
    ) -> Capability {
        let mut ratings: BTreeMap<String, Rating> =
            measured.iter().map(|(l, s)| (l.clone(), Rating::Measured(*s))).collect();
        ratings.extend(stated);
        Capability { model, ratings, min_quality }
    }

    pub fn rating(&self, language: &str) -> Rating {
        self.ratings.get(language).cloned().unwrap_or(Rating::Unmeasured)
    }

    /// Whether captions in `language` may go into the record. "auto" is decided per
    /// utterance, on the language whisper detects. A minimum of 0 turns the bar off, even
    /// for an unmeasured language (a benchmark, or a technician's deliberate choice).
    pub fn allows(&self, language: &str) -> Result<(), Withheld> {
        if language == "auto" || self.min_quality <= 0.0 {
            return Ok(());
        }
        let rating = self.rating(language);
        match rating.score() {
            Some(s) if s >= self.min_quality => Ok(()),
            _ => Err(Withheld {
                language: language.to_string(),
                model: self.model.name.clone(),
                rating,
                min_quality: self.min_quality,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Capability {
        let measured = BTreeMap::from([("en".to_string(), 0.95), ("ru".to_string(), 0.6), ("kk".to_string(), 0.0)]);
        Capability::new(ModelRef { name: "base-q8".into(), sha256: "ab".into() }, &measured, BTreeMap::new(), 0.5)
    }

    #[test]
    fn a_language_below_the_minimum_or_unmeasured_is_withheld() {
        let c = base();
        assert_eq!(c.allows("en"), Ok(()));
        assert_eq!(c.allows("ru"), Ok(()));
        assert_eq!(c.allows("auto"), Ok(()));
        let kk = c.allows("kk").unwrap_err();
        assert_eq!(
            kk.to_string(),
            "Kazakh: no live captions with the installed speech model base-q8 (quality 0.00, measured; the minimum is 0.50)"
        );
        let off = Capability::new(c.model.clone(), &BTreeMap::new(), BTreeMap::new(), 0.0);
        assert_eq!((off.allows("kk"), off.allows("de")), (Ok(()), Ok(())), "a minimum of 0 is no bar");
        let de = c.allows("de").unwrap_err();
        assert_eq!(de.rating, Rating::Unmeasured);
        assert!(de.to_string().contains("quality not measured"), "{de}");
    }

    #[test]
    fn a_stated_rating_overrides_the_measured_one_and_names_who_set_it() {
        let stated = BTreeMap::from([(
            "kk".to_string(),
            Rating::Stated { score: 0.8, set_by: "A. Technician".into(), set_at: "2026-12-01".into() },
        )]);
        let c = Capability::new(base().model, &BTreeMap::from([("kk".to_string(), 0.0)]), stated, 0.5);
        assert_eq!(c.allows("kk"), Ok(()));
        assert_eq!(c.rating("kk").to_string(), "quality 0.80, stated by A. Technician on 2026-12-01");
    }
}
