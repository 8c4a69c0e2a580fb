//! Live captions with the real model: offline accuracy, streaming through a recording
//! session, synthetic Russian and Kazakh, back-pressure, tampering, a missing model.

use crate::common::*;
use courtbox::integrity::{CaptionOrigin, Entry, RecordBody};
use courtbox::stt::engine::Engine;
use courtbox::stt::text::{mostly_cyrillic, shared_words, wer};
use std::time::Duration;

const JFK: &str =
    "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.";
/// The texts setup.sh synthesizes into var/test-speech/ru.wav and kk.wav.
const RU: &str =
    "Уважаемый суд, сторона обвинения готова. Мы просим приобщить к делу показания свидетеля и заключение эксперта.";
const KK: &str = "Құрметті сот, қорғау тарапы дайын. Біз куәгерге бірнеше сұрақ қойғымыз келеді.";

fn pcm16k(path: &str) -> Vec<f32> {
    gst::init().unwrap();
    courtbox::capture::decode_to_pcm(&repo().join(path), 16_000)
        .unwrap()
        .iter()
        .map(|s| f32::from(*s) / 32768.0)
        .collect()
}

fn default_model() -> Engine {
    Engine::load(&repo().join("models/ggml-base-q8_0.bin"), 2, 1).expect("scripts/setup prepares the model")
}

/// (source, origin, item) of every caption in the chain.
fn captions(records: &[RecordBody]) -> Vec<(String, CaptionOrigin, courtbox::integrity::CaptionItem)> {
    records
        .iter()
        .flat_map(|r| match &r.entry {
            Entry::Captions { source, origin, items, .. } => {
                items.iter().map(|i| (source.clone(), *origin, i.clone())).collect()
            }
            _ => Vec::new(),
        })
        .collect()
}

/// The stretches stated as "not transcribed" (output refused as not speech).
#[test]
fn offline_jfk_with_the_default_model() {
    let engine = default_model();
    let mut state = engine.new_state().unwrap();
    let t = engine.transcribe(&mut state, &pcm16k("var/test-speech/jfk.wav"), "en", None).unwrap();
    let w = wer(JFK, &t.text());
    eprintln!("offline jfk: WER {:.1} %: {}", w * 100.0, t.text());
    assert!(w <= 0.10, "WER {w} > 10 %: {}", t.text());
}

/// The real model on speech it cannot do: `base` given the sim's Kazakh in 1.5 s pieces (as
/// a live utterance can be) writes loops, Latin and mixed-script fragments and other
/// nonsense; the filter refuses some of it (what it lets through is why Kazakh gets no live
/// captions with this model at all). On the real jfk speech it refuses nothing. The exact
/// output varies with the decoder's state, so the loop captured from it is a unit test
/// (`stt::filter`).
#[test]
fn the_filter_refuses_some_of_bases_kazakh_and_none_of_real_speech() {
    use courtbox::stt::filter::judge;
    let engine = default_model();
    let mut state = engine.new_state().unwrap();
    let mut refused = Vec::new();
    let mut kept = Vec::new();
    for file in ["var/sim-audio/defence.wav", "var/test-speech/kk.wav"] {
        let kk = pcm16k(file);
        for piece in kk.chunks(24_000) {
            for s in engine.transcribe(&mut state, piece, "kk", None).unwrap().segments {
                match judge(s.facts(), "kk") {
                    Ok(()) => kept.push(s.text),
                    Err(why) => refused.push(format!("{:?}: {why}", s.text)),
                }
            }
        }
    }
    eprintln!("kk in 1.5 s pieces: {} refused {refused:#?}, {} kept {kept:?}", refused.len(), kept.len());
    assert!(!refused.is_empty(), "nothing of base's Kazakh was refused: {kept:?}");
    let t = engine.transcribe(&mut state, &pcm16k("var/test-speech/jfk.wav"), "en", None).unwrap();
    for s in &t.segments {
        assert_eq!(judge(s.facts(), "en"), Ok(()), "real speech refused: {:?}", s.text);
    }
}

/// jfk.wav played at real-time pace by a sim microphone in a real session: the finals match
/// the offline transcript, sit inside the speech, verify as part of the chain, and can be
/// searched; a tampered caption is named.
#[test]
fn streaming_captions_of_a_session_match_offline_and_verify() {
    let engine = default_model();
    let mut state = engine.new_state().unwrap();
    let offline = engine.transcribe(&mut state, &pcm16k("var/test-speech/jfk.wav"), "en", None).unwrap().text();
    drop(engine);

    let tb = TestBox::with_captions("streaming_captions", "tests/fixtures/speech-en.toml", "");
    // At debug level, so that no line of any level carries what was said (issue 20, item 9).
    let daemon = tb.start_with_env(&[("RUST_LOG", "debug")]);
    let session = tb.start_session_in("en");
    // A closed hearing: its words are in the sealed record and nowhere else on the box.
    tb.cli_ok(&["session", "hearing", "closed"]);
    // jfk.wav is 11 s; it plays from media time 0. Wait for its final caption.
    wait_for("the final caption of the first pass", Duration::from_secs(40), || {
        tb.status()["captions"]["finals"].as_u64().unwrap_or(0) > 0
            && tb.status()["session"]["media_now"].as_u64().unwrap_or(0) > 12_000_000_000
    });
    std::thread::sleep(Duration::from_secs(1));
    // The API searches committed captions (finals are committed in batches within 10 s)
    // while the session records.
    let search = || -> serde_json::Value {
        tb.local_client()
            .get("http://courtbox/api/v1/captions/search?q=fellow%20americans")
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    wait_for("the caption to be searchable", Duration::from_secs(20), || !search().as_array().unwrap().is_empty());
    let hits = search();
    let hit = &hits.as_array().expect("a list")[0];
    assert_eq!(
        (hit["session"].as_str(), hit["role"].as_str()),
        (Some(session.to_string().as_str()), Some("judge")),
        "{hits}"
    );
    tb.stop_session();
    daemon.terminate();

    let records = tb.records(session);
    let firsts: Vec<_> =
        captions(&records).into_iter().filter(|c| c.0 == "judge" && c.2.media_start.0 < 11_000_000_000).collect();
    assert!(!firsts.is_empty(), "no final caption of the first pass");
    // The daemon's whole log (what systemd sends to the journal on a box), at debug level,
    // holds none of the words spoken: captions are logged by length only, and the search's
    // query is not logged either.
    let log = std::fs::read_to_string(tb.root.join("daemon-1.log")).unwrap();
    assert!(log.contains("caption (its text is in the record, never in the log)"), "no caption was logged at all");
    let spoken: std::collections::BTreeSet<String> = captions(&records)
        .iter()
        .flat_map(|c| {
            c.2.text.split_whitespace().map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
        })
        .filter(|w| w.chars().count() >= 5)
        .collect();
    assert!(spoken.len() >= 3, "too few words to look for: {spoken:?}");
    let lower = log.to_lowercase();
    let leaked: Vec<&String> = spoken.iter().filter(|w| lower.contains(w.as_str())).collect();
    assert!(leaked.is_empty(), "spoken words in the daemon's log ({} lines): {leaked:?}", log.lines().count());
    let streamed = firsts.iter().map(|c| c.2.text.as_str()).collect::<Vec<_>>().join(" ");
    let w = wer(&offline, &streamed);
    eprintln!("streamed vs offline: WER {:.1} %\n  offline:  {offline}\n  streamed: {streamed}", w * 100.0);
    assert!(w <= 0.10, "streamed captions differ from the offline transcript: WER {w}");
    for (_, origin, c) in &firsts {
        assert_eq!(*origin, CaptionOrigin::Live);
        assert!(c.media_start.0 < c.media_end.0 && c.media_end.0 <= 11_200_000_000, "outside the speech: {c:?}");
    }
    // The filter drops nothing of real speech: no stretch of the whole first pass was refused
    // as not speech, and every caption names the model that wrote it. (The utterance the stop
    // cuts off, a fraction of a second of a later pass, may be refused as unsure: the fresh
    // machine's run did so once, at mean confidence 0.06.)
    let refused: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::CaptionsBehind { reason, media_start, .. }
                if reason.starts_with("not transcribed") && media_start.0 < 11_000_000_000 =>
            {
                Some(reason.clone())
            }
            _ => None,
        })
        .collect();
    assert!(refused.is_empty(), "real speech refused in the first pass: {refused:?}");
    assert!(records.iter().all(|r| match &r.entry {
        Entry::Captions { model, .. } => model.as_ref().is_some_and(|m| m.name == "base-q8"),
        _ => true,
    }));

    // And the CLI, which reads the ledger without the daemon.
    let found = tb.cli_ok(&["captions", "search", "fellow Americans"]);
    assert!(found.contains(&session.to_string()) && found.contains("judge"), "{found}");

    let export = tb.root.join("export");
    tb.export(session, &export);
    let (code, text) = verify(&export, Some(&tb.public_key()));
    assert_eq!(code, 0, "{text}");
    let vtt = std::fs::read_to_string(export.join("captions/all.vtt")).unwrap();
    assert!(vtt.starts_with("WEBVTT") && vtt.contains("<v Judge>"), "{vtt}");

    // Tampering one caption: in the exported captions file, and inside its signed record.
    let altered = tb.root.join("export-altered-json");
    copy_tree(&export, &altered);
    let json_path = altered.join("captions/captions.json");
    let json = std::fs::read_to_string(&json_path).unwrap();
    let first_text = firsts[0].2.text.clone();
    std::fs::write(&json_path, json.replacen(&first_text, "The defendant confessed.", 1)).unwrap();
    let (code, text) = verify(&altered, Some(&tb.public_key()));
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("altered caption") && text.contains("The defendant confessed.") && text.contains("judge"),
        "{text}"
    );

    let altered = tb.root.join("export-altered-record");
    copy_tree(&export, &altered);
    let chain = std::fs::read_dir(altered.join("chain"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read_to_string(p).unwrap().contains("\"kind\":\"captions\""));
    let chain = chain.expect("a captions record");
    let rec = std::fs::read_to_string(&chain).unwrap();
    // A word of that record's first caption becomes "guilty".
    let body: RecordBody = serde_json::from_str(rec.lines().next().unwrap()).unwrap();
    let Entry::Captions { items, .. } = &body.entry else { panic!("not a captions record") };
    let word = items[0]
        .text
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_string())
        .max_by_key(|w| w.len())
        .unwrap();
    let tampered = rec.replacen(&word, "guilty", 1);
    assert_ne!(tampered, rec, "the caption was changed");
    std::fs::write(&chain, tampered).unwrap();
    let (code, text) = verify(&altered, Some(&tb.public_key()));
    assert_eq!(code, 1, "{text}");
    let name = chain.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        text.contains(&format!("chain/{name}"))
            && text.contains("captions of judge")
            && text.contains("signature does not verify"),
        "{text}"
    );
}

/// Synthetic Russian is captioned live. Kazakh, which the default model cannot do (its
/// measured quality is 0), is not guessed at: the panel's status and `captions_off` say
/// why, the chain states the interval for a later model, and nothing Kazakh is sealed.
#[test]
fn russian_is_captioned_and_kazakh_is_not_transcribed_rather_than_guessed() {
    let tb = TestBox::with_captions("russian_and_kazakh", "tests/fixtures/speech-ru-kk.toml", "");
    let daemon = tb.start();
    let mut results = Vec::new();
    // Russian speaks first in each cycle (9.4 s), then Kazakh (6.6 s).
    for (language, mic, reference, until) in [("ru", "prosecutor", RU, 11_500u64), ("kk", "defence", KK, 19_500)] {
        let session = tb.start_session_in(language);
        wait_for("the speaker's turn and its caption", Duration::from_secs(60), || {
            tb.status()["session"]["media_now"].as_u64().unwrap_or(0) > until * 1_000_000
        });
        std::thread::sleep(Duration::from_secs(2));
        let status = tb.status();
        tb.stop_session();
        let records = tb.records(session);
        let text =
            captions(&records).into_iter().filter(|c| c.0 == mic).map(|c| c.2.text).collect::<Vec<_>>().join(" ");
        let shared = shared_words(reference, &text);
        eprintln!(
            "{language}: {:.0} % of the words shared, WER {:.0} %: {text}",
            shared * 100.0,
            wer(reference, &text) * 100.0
        );
        results.push((language, text, shared, status, records));
    }
    daemon.terminate();
    let (_, ru_text, ru_shared, _, _) = &results[0];
    assert!(mostly_cyrillic(ru_text), "ru: not Cyrillic: {ru_text:?}");
    assert!(*ru_shared >= 0.5, "ru: only {:.0} % of the spoken words", ru_shared * 100.0);

    let (_, kk_text, _, status, records) = &results[1];
    assert!(kk_text.is_empty(), "Kazakh captions sealed by a model that cannot do Kazakh: {kk_text:?}");
    let why = "Kazakh: no live captions with the installed speech model base-q8 (quality 0.00, measured; the minimum is 0.50)";
    assert_eq!(status["captions"]["tracks"]["defence"]["no_live_captions"], why, "{status}");
    let offs: Vec<&Entry> =
        records.iter().map(|r| &r.entry).filter(|e| matches!(e, Entry::CaptionsOff { .. })).collect();
    assert!(
        offs.iter()
            .any(|e| matches!(e, Entry::CaptionsOff { source, reason, .. } if source == "defence" && reason == why)),
        "one record at the session start says why: {offs:?}"
    );
    assert!(
        records.iter().any(|r| matches!(&r.entry, Entry::CaptionsBehind { source, reason, model: Some(_), .. } if source == "defence" && reason.starts_with(why))),
        "the interval is stated for a later model"
    );
    let export = tb.root.join("export-kk");
    tb.export(records[0].session, &export);
    let (code, text) = verify(&export, Some(&tb.public_key()));
    assert_eq!(code, 0, "{text}");
}

/// Transcription ten times slower than normal: every segment is still committed on time,
/// captions come later marked delayed, what could not keep up is recorded and transcribed
/// from the recording after the session, and the whole chain verifies.
#[test]
fn slowed_captions_never_hold_up_recording() {
    let tb = TestBox::with_captions(
        "slowed_captions",
        "tests/fixtures/speech-en.toml",
        "slowdown = 10\nqueue_seconds = 5\ndelayed_after_seconds = 3\n",
    );
    let daemon = tb.start();
    let session = tb.start_session_in("en");
    std::thread::sleep(Duration::from_secs(26));
    tb.stop_session();
    wait_for("the backlog to be transcribed", Duration::from_secs(240), || tb.status()["captions"]["backlog"] == 0);
    daemon.terminate();

    let records = tb.records(session);
    let start_wall = records[0].wall;
    for r in &records {
        if let Entry::Segment { source, seq, media_end, .. } = &r.entry {
            let committed_after = (r.wall.since(start_wall) as u64).saturating_sub(media_end.0);
            assert!(
                committed_after < 3_000_000_000,
                "{source} seq {seq} committed {} ms after it ended",
                committed_after / 1_000_000
            );
        }
    }
    assert!(gaps(&records).is_empty(), "recording had gaps: {:?}", gaps(&records));
    let behind = records.iter().filter(|r| matches!(r.entry, Entry::CaptionsBehind { .. })).count();
    let all = captions(&records);
    let late = all.iter().filter(|c| c.2.delayed).count();
    eprintln!("slowed: {} captions, {late} delayed, {behind} interval(s) left behind", all.len());
    assert!(behind > 0, "ten times slower transcription must fall behind");
    assert!(late > 0 && all.iter().any(|c| c.1 == CaptionOrigin::Backlog), "late captions are marked");

    // The interval left behind is transcribed when nothing live waits: during the session
    // if the speech pauses long enough (then the first manifest seals it), else after the
    // stop (then a new revision must). Which one depends on the machine's speed; the
    // deterministic case of a revision is `a_session_recorded_without_a_model_…`.
    let stop = records.iter().position(|r| matches!(r.entry, Entry::SessionStop { .. })).expect("a session stop");
    let after_stop = records[stop..].iter().filter(|r| matches!(r.entry, Entry::Captions { .. })).count();
    eprintln!("slowed: {after_stop} caption record(s) after the stop");
    let export = tb.root.join("export");
    tb.export(session, &export);
    if after_stop > 0 {
        assert!(
            export.join("manifest-2.rec").exists(),
            "captions after the stop are sealed by a new manifest revision"
        );
    }
    let (code, text) = verify(&export, Some(&tb.public_key()));
    assert_eq!(code, 0, "{text}");
}

/// No model: recording runs, status says how to fix it, the chain says what is missing, and
/// one command transcribes the session once the model is there.
#[test]
fn a_session_recorded_without_a_model_is_transcribed_later() {
    let missing = repo().join("target/test-output/no-such-model/ggml-base-q8_0.bin");
    let tb = TestBox::with_extra(
        "without_a_model",
        "tests/fixtures/speech-en.toml",
        4,
        &format!("[stt]\nmodel = \"{}\"\n", missing.display()),
    );
    let daemon = tb.start();
    let session = tb.start_session_in("en");
    std::thread::sleep(Duration::from_secs(13));
    let status = tb.status();
    assert_eq!(status["captions"]["state"], "unavailable");
    let reason = status["captions"]["reason"].as_str().unwrap();
    assert!(reason.contains("is missing") && reason.contains("models/fetch base-q8"), "{reason}");
    assert!(status["session"]["stats"]["segments"].as_u64().unwrap() >= 3, "recording goes on: {status}");
    tb.stop_session();
    daemon.terminate();
    let records = tb.records(session);
    assert!(records.iter().any(|r| matches!(&r.entry, Entry::CaptionsBehind { source, reason, .. } if source == "judge" && reason.contains("is missing"))));
    assert!(captions(&records).is_empty());

    // The technician fixes the model (here: points the box at it) and asks for the captions.
    let config = std::fs::read_to_string(&tb.config).unwrap();
    std::fs::write(
        &tb.config,
        config.replace(&missing.display().to_string(), &repo().join("models/ggml-base-q8_0.bin").display().to_string()),
    )
    .unwrap();
    let daemon = tb.start();
    let out = tb.cli_ok(&["captions", "transcribe", &session.to_string()[..8]]);
    assert!(out.starts_with("1 interval"), "{out}");
    wait_for("the session to be transcribed", Duration::from_secs(120), || tb.status()["captions"]["backlog"] == 0);
    daemon.terminate();

    let all = captions(&tb.records(session));
    let text = all.iter().map(|c| c.2.text.as_str()).collect::<Vec<_>>().join(" ");
    assert!(all.iter().all(|c| c.1 == CaptionOrigin::Backlog && c.2.delayed));
    // The recording loops the clip, so the first words of a second pass may follow; segment
    // boundaries cut the audio where the live path would not, hence the looser bound.
    let first_pass: String = text.split_inclusive("country.").next().unwrap_or(&text).to_string();
    let w = wer(JFK, &first_pass);
    assert!(w <= 0.25, "transcribed from the recording (WER {:.0} %): {text}", w * 100.0);
    let export = tb.root.join("export");
    tb.export(session, &export);
    assert!(export.join("manifest-2.rec").exists(), "captions after the stop are sealed by a new manifest revision");
    let (code, out) = verify(&export, Some(&tb.public_key()));
    assert_eq!(code, 0, "{out}");
}

/// A box records with an English-only model (tiny.en): the English judge is captioned live,
/// the Russian prosecutor is not (tiny.en's Russian quality is 0), and the chain says so.
/// The technician installs a multilingual model and asks for the Russian: the later
/// captions are sealed by a new manifest revision, each caption record names the model
/// that wrote it, and both verify.
#[test]
fn a_second_model_transcribes_what_the_first_could_not() {
    let tiny = repo().join("models/ggml-tiny.en.bin");
    let base = repo().join("models/ggml-base-q8_0.bin");
    let tb = TestBox::with_extra(
        "second_model",
        "tests/fixtures/speech-en-ru.toml",
        4,
        &format!("[stt]\nmodel = \"{}\"\n", tiny.display()),
    );
    let daemon = tb.start();
    let session = tb.start_session_in("ru");
    // The sim's speakers take turns: the judge (11 s), then the prosecutor (9.4 s).
    wait_for("the first turn of both speakers", Duration::from_secs(60), || {
        tb.status()["session"]["media_now"].as_u64().unwrap_or(0) > 21_500_000_000
    });
    let status = tb.status();
    let why = status["captions"]["tracks"]["prosecutor"]["no_live_captions"].as_str().unwrap_or_default().to_string();
    assert!(why.starts_with("Russian: no live captions with the installed speech model tiny.en"), "{status}");
    tb.stop_session();
    // A session-wide request with the same model leaves the Russian and says why.
    let out = tb.cli_ok(&["captions", "transcribe", "--all-missing", "--language", "ru"]);
    assert!(out.starts_with("0 interval(s)") && out.contains("Russian: no live captions"), "{out}");
    daemon.terminate();

    // The technician installs the multilingual model and asks for the Russian.
    let config = std::fs::read_to_string(&tb.config).unwrap();
    std::fs::write(&tb.config, config.replace(&tiny.display().to_string(), &base.display().to_string())).unwrap();
    let daemon = tb.start();
    let out = tb.cli_ok(&["captions", "transcribe", &session.to_string()[..8], "--language", "ru"]);
    assert!(out.starts_with("1 interval(s) of 1 session(s) queued"), "{out}");
    wait_for("the Russian to be transcribed", Duration::from_secs(180), || tb.status()["captions"]["backlog"] == 0);
    let out = tb.cli_ok(&["captions", "transcribe", "--all-missing", "--language", "ru"]);
    assert!(out.starts_with("0 interval(s)"), "no Russian is left to transcribe: {out}");
    daemon.terminate();

    let records = tb.records(session);
    let by_model = |source: &str, origin: CaptionOrigin| -> Vec<(String, String)> {
        records
            .iter()
            .filter_map(|r| match &r.entry {
                Entry::Captions { source: s, origin: o, model, items, .. } if s == source && *o == origin => {
                    let model = model.as_ref().map(|m| m.name.clone()).unwrap_or_default();
                    Some((model, items.iter().map(|i| i.text.as_str()).collect::<Vec<_>>().join(" ")))
                }
                _ => None,
            })
            .collect()
    };
    let live = by_model("judge", CaptionOrigin::Live);
    assert!(!live.is_empty() && live.iter().all(|(m, _)| m == "tiny.en"), "{live:?}");
    let live_text = live.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join(" ");
    assert!(wer(JFK, live_text.split_inclusive("country.").next().unwrap_or("")) <= 0.25, "{live_text}");
    let later = by_model("prosecutor", CaptionOrigin::Backlog);
    assert!(!later.is_empty() && later.iter().all(|(m, _)| m == "base-q8"), "{later:?}");
    let later_text = later.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join(" ");
    let shared = shared_words(RU, &later_text);
    eprintln!("second model: {:.0} % of the Russian words: {later_text}", shared * 100.0);
    assert!(shared >= 0.4, "the later Russian captions: {later_text}");
    assert!(by_model("prosecutor", CaptionOrigin::Live).is_empty(), "no live Russian from an English model");

    let export = tb.root.join("export");
    tb.export(session, &export);
    assert!(export.join("manifest-2.rec").exists(), "the later captions are sealed by a new manifest revision");
    let (code, text) = verify(&export, Some(&tb.public_key()));
    assert_eq!(code, 0, "{text}");
}
