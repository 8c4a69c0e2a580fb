//! Caption files of an export: `captions.json` (every final caption with the record that
//! signs it; `verify` checks it), and WebVTT and SRT per microphone and merged with role
//! labels, timed in session media time like the playable files.

use crate::base::MediaTime;
use crate::ledger::CaptionRow;
use std::collections::BTreeMap;

fn stamp(ns: u64, comma: bool) -> String {
    let ms = ns / 1_000_000;
    let sep = if comma { ',' } else { '.' };
    format!("{:02}:{:02}:{:02}{sep}{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

fn label(c: &CaptionRow) -> String {
    let role = c.role.clone().unwrap_or_else(|| c.source.clone());
    let mut chars = role.chars();
    chars.next().map(|f| f.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

pub fn webvtt(captions: &[&CaptionRow], with_roles: bool) -> String {
    let mut out = String::from("WEBVTT\n");
    for c in captions {
        let voice = if with_roles { format!("<v {}>", label(c)) } else { String::new() };
        out.push_str(&format!(
            "\n{} --> {}\n{voice}{}\n",
            stamp(c.media_start_ns, false),
            stamp(c.media_end_ns, false),
            c.text
        ));
    }
    out
}

pub fn srt(captions: &[&CaptionRow], with_roles: bool) -> String {
    let mut out = String::new();
    for (i, c) in captions.iter().enumerate() {
        let who = if with_roles { format!("[{}] ", label(c)) } else { String::new() };
        out.push_str(&format!(
            "{}\n{} --> {}\n{who}{}\n\n",
            i + 1,
            stamp(c.media_start_ns, true),
            stamp(c.media_end_ns, true),
            c.text
        ));
    }
    out
}

#[derive(serde::Serialize)]
struct Listed<'a> {
    record: u64,
    item: u32,
    source: &'a str,
    role: Option<&'a str>,
    language: &'a str,
    media_start_ns: u64,
    media_end_ns: u64,
    start: String,
    end: String,
    text: &'a str,
    confidence: f32,
    delayed: bool,
    origin: &'a str,
}

/// The caption files of an export: (path inside it, under `captions/`; text).
pub fn files(captions: &[CaptionRow]) -> std::io::Result<Vec<(String, String)>> {
    let mut written = Vec::new();
    let mut put = |name: String, text: String| -> std::io::Result<()> {
        written.push((format!("{}/{name}", crate::integrity::layout::CAPTIONS_DIR), text));
        Ok(())
    };
    let listed: Vec<Listed> = captions
        .iter()
        .map(|c| Listed {
            record: c.record,
            item: c.item,
            source: &c.source,
            role: c.role.as_deref(),
            language: &c.language,
            media_start_ns: c.media_start_ns,
            media_end_ns: c.media_end_ns,
            start: MediaTime(c.media_start_ns).to_string(),
            end: MediaTime(c.media_end_ns).to_string(),
            text: &c.text,
            confidence: f32::from(c.confidence) / 1000.0,
            delayed: c.delayed,
            origin: &c.origin,
        })
        .collect();
    put("captions.json".into(), serde_json::to_string_pretty(&listed).map_err(std::io::Error::other)?)?;
    let all: Vec<&CaptionRow> = captions.iter().collect();
    put("all.vtt".into(), webvtt(&all, true))?;
    put("all.srt".into(), srt(&all, true))?;
    let mut by_source: BTreeMap<&str, Vec<&CaptionRow>> = BTreeMap::new();
    for c in captions {
        by_source.entry(&c.source).or_default().push(c);
    }
    for (source, list) in by_source {
        put(format!("{source}.vtt"), webvtt(&list, false))?;
        put(format!("{source}.srt"), srt(&list, false))?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(source: &str, role: &str, start_ms: u64, text: &str) -> CaptionRow {
        CaptionRow {
            session: uuid::Uuid::nil(),
            record: 7,
            item: 0,
            source: source.into(),
            role: Some(role.into()),
            language: "en".into(),
            media_start_ns: start_ms * 1_000_000,
            media_end_ns: (start_ms + 2500) * 1_000_000,
            wall: String::new(),
            text: text.into(),
            confidence: 900,
            delayed: false,
            origin: "live".into(),
        }
    }

    #[test]
    fn formats() {
        let a = row("judge", "judge", 3_723_004, "Order.");
        let b = row("witness", "witness", 5_000, "I saw it.");
        assert_eq!(webvtt(&[&a], true), "WEBVTT\n\n01:02:03.004 --> 01:02:05.504\n<v Judge>Order.\n");
        assert_eq!(
            srt(&[&b, &a], true),
            "1\n00:00:05,000 --> 00:00:07,500\n[Witness] I saw it.\n\n2\n01:02:03,004 --> 01:02:05,504\n[Judge] Order.\n\n"
        );
        assert_eq!(srt(&[&b], false), "1\n00:00:05,000 --> 00:00:07,500\nI saw it.\n\n");
    }
}
