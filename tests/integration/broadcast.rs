//! The live broadcast against real servers on loopback: nginx with the RTMP module (HLS
//! output, `on_publish` key check) and `srt-live-transmit` as an SRT listener.

use crate::common::{TestBox, free_port, gaps, nginx_rtmp_head, output_dir, secret_file, start_nginx, wait_for};
use courtbox::bench::flagged_stretches;
use courtbox::integrity::Entry;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "k3y-for-the-test";
const PASSPHRASE: &str = "srt-passphrase-0123";
const DELAY_S: f64 = 6.0;
const REWIND_S: f64 = 3.0;

struct Servers {
    dir: PathBuf,
    rtmp_port: u16,
    srt_port: u16,
    nginx: Option<Child>,
    srt: Child,
}

impl Servers {
    fn start(dir: &Path) -> Servers {
        let (rtmp_port, http_port, srt_port) = (free_port(), free_port(), free_port());
        let head = nginx_rtmp_head(dir);
        let d = dir.display();
        std::fs::write(
            dir.join("nginx.conf"),
            format!(
                "{head}\
                 rtmp {{ server {{ listen 127.0.0.1:{rtmp_port}; application live {{ live on; record off;\n\
                   on_publish http://127.0.0.1:{http_port}/auth; on_publish_done http://127.0.0.1:{http_port}/done;\n\
                   notify_method get; hls on; hls_path {d}/hls; hls_fragment 1s; hls_playlist_length 120s; hls_cleanup off; }} }} }}\n\
                 http {{ access_log off; client_body_temp_path {d}/tmp/b; proxy_temp_path {d}/tmp/p; fastcgi_temp_path {d}/tmp/f;\n\
                   uwsgi_temp_path {d}/tmp/u; scgi_temp_path {d}/tmp/s; log_format t '$msec $arg_call $arg_name $status';\n\
                   server {{ listen 127.0.0.1:{http_port}; access_log {d}/logs/notify.log t;\n\
                     location /auth {{ if ($arg_name = '{KEY}') {{ return 200; }} return 403; }}\n\
                     location /done {{ return 200; }} }} }}\n"
            ),
        )
        .unwrap();
        let srt = Command::new("srt-live-transmit")
            .arg("-q")
            .arg(format!("srt://127.0.0.1:{srt_port}?mode=listener&passphrase={PASSPHRASE}"))
            .arg("file://con")
            .stdout(std::fs::File::create(dir.join("srt.ts")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("srt-live-transmit (srt-tools) is installed by scripts/setup --tests");
        let mut s = Servers { dir: dir.to_path_buf(), rtmp_port, srt_port, nginx: None, srt };
        s.start_nginx();
        s
    }

    fn start_nginx(&mut self) {
        self.nginx = Some(start_nginx(&self.dir, self.rtmp_port));
    }

    fn kill_nginx(&mut self) {
        if let Some(mut c) = self.nginx.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (time, call) of every notification nginx made: `publish` and `publish_done`.
    fn notifications(&self) -> Vec<(f64, String)> {
        std::fs::read_to_string(self.dir.join("logs/notify.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?.parse().ok()?, f.next()?.to_string()))
            })
            .collect()
    }

    fn publishes(&self) -> usize {
        self.notifications().iter().filter(|(_, c)| c == "publish").count()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.kill_nginx();
        let _ = self.srt.kill();
        let _ = self.srt.wait();
    }
}

fn now_s() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The RTMP server's HLS output as one transport stream (its fragments in order).
fn hls_stream(dir: &Path, out: &Path) {
    let mut parts: Vec<(u64, PathBuf)> = std::fs::read_dir(dir.join("hls"))
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            let n = p.file_stem()?.to_str()?.rsplit('-').next()?.parse().ok()?;
            (p.extension()? == "ts").then_some((n, p))
        })
        .collect();
    parts.sort();
    let mut all = Vec::new();
    for (_, p) in parts {
        all.extend(std::fs::read(p).unwrap());
    }
    std::fs::write(out, all).unwrap();
}

/// (time in the stream, value) for every frame: mean luma of pictures, RMS of sound.
fn frame_stats(file: &Path, audio: bool) -> Vec<(f64, f64)> {
    let (filter, tag) = if audio {
        (format!("amovie={},astats=metadata=1:reset=1", file.display()), "lavfi.astats.Overall.RMS_level")
    } else {
        (format!("movie={},signalstats", file.display()), "lavfi.signalstats.YAVG")
    };
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-f", "lavfi", "-i", &filter, "-show_entries"])
        .arg(format!("frame=pts_time:frame_tags={tag}"))
        .args(["-of", "csv=p=0"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (t, v) = l.split_once(',')?;
            let v = if v == "-inf" { -200.0 } else { v.parse().ok()? };
            Some((t.parse().ok()?, v))
        })
        .collect()
}

fn streams(file: &Path) -> (Vec<String>, f64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name:format=duration", "-of", "default=nw=1"])
        .arg(file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let codecs = text.lines().filter_map(|l| l.strip_prefix("codec_name=")).map(str::to_string).collect();
    let duration = text.lines().find_map(|l| l.strip_prefix("duration=")?.parse().ok()).unwrap_or(0.0);
    (codecs, duration)
}

/// Waits `d`, noting every camera the box reports on air meanwhile.
fn note_cameras(tb: &TestBox, d: Duration, seen: &mut BTreeSet<String>) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if let Some(camera) = tb.status()["broadcast"]["camera"].as_str() {
            seen.insert(camera.to_string());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn media_s(text: &str) -> f64 {
    // "... at 0:00:24.724 (record #15) ..." → seconds
    let t = text.split_whitespace().find(|w| w.matches(':').count() == 2).unwrap();
    let mut parts = t.split(':').map(|p| p.parse::<f64>().unwrap());
    parts.next().unwrap() * 3600.0 + parts.next().unwrap() * 60.0 + parts.next().unwrap()
}

#[test]
fn an_open_hearing_goes_out_delayed_blanked_by_a_mute_and_cut_by_closing() {
    let root = output_dir("broadcast_policy");
    let mut servers = Servers::start(&root.join("servers"));
    let key = secret_file(&root, "rtmp.key", KEY);
    let passphrase = secret_file(&root, "srt.key", PASSPHRASE);
    let tb = TestBox::with_extra(
        "broadcast_policy_box",
        "hw-profiles/sim.toml",
        4,
        &format!(
            "[broadcast]\ndelay_seconds = {DELAY_S}\nrewind_seconds = {REWIND_S}\nwidth = 640\nheight = 360\nvideo_kbps = 600\n\
             retry_initial_ms = 500\nretry_max_ms = 2000\n\
             [[broadcast.output]]\nname = \"rtmp\"\nkind = \"rtmp\"\nurl = \"rtmp://127.0.0.1:{}/live\"\nkey_file = \"{}\"\n\
             [[broadcast.output]]\nname = \"srt\"\nkind = \"srt\"\nurl = \"srt://127.0.0.1:{}\"\nkey_file = \"{}\"\n\
             [[broadcast.output]]\nname = \"local\"\nkind = \"hls\"\ndir = \"{}\"\n",
            servers.rtmp_port,
            key.display(),
            servers.srt_port,
            passphrase.display(),
            root.join("local-hls").display()
        ),
    );
    let _daemon = tb.start();

    // A closed hearing is refused, stated in the chain, and never reaches the server.
    let out = tb.cli(&["session", "start", "--case", "C-1/2026", "--title", "Closed", "--hearing", "closed"]);
    assert!(out.status.success());
    let refused = tb.cli(&["session", "broadcast", "start"]);
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && message.contains("closed hearing is never broadcast"), "{message}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(servers.publishes(), 0, "a closed hearing must never publish");
    tb.stop_session();

    // An open hearing goes out.
    let session = tb.start_session();
    let started = tb.cli_ok(&["session", "broadcast", "start"]);
    let start_media = media_s(&started);
    wait_for("the RTMP publish", Duration::from_secs(20), || servers.publishes() == 1);
    wait_for("every output live", Duration::from_secs(20), || {
        tb.status()["broadcast"]["outputs"].as_array().unwrap().iter().all(|o| o["state"] == "live")
    });
    // Meanwhile the judge (bench camera) speaks, then the prosecutor (hall camera): the
    // automatic switching puts each one's camera on air.
    let mut on_air = BTreeSet::new();
    note_cameras(&tb, Duration::from_secs(10), &mut on_air);

    // A mute while the hearing is shown, and the unmute 4 s later.
    let muted = media_s(&tb.cli_ok(&["session", "privacy-mute", "on"]));
    note_cameras(&tb, Duration::from_secs(4), &mut on_air);
    let unmuted = media_s(&tb.cli_ok(&["session", "privacy-mute", "off"]));
    note_cameras(&tb, Duration::from_secs(DELAY_S as u64 + 6), &mut on_air);
    assert_eq!(on_air, BTreeSet::from(["bench".to_string(), "hall".to_string()]), "cameras put on air");
    // The programme decodes every frame of the camera on air and the keyframes of the other
    // (one a second in `sim`): about half of the frames of two cameras are never decoded.
    let pictures = tb.status()["broadcast"]["pictures"].as_array().unwrap().clone();
    let count = |p: &serde_json::Value, k: &str| p[k].as_u64().unwrap();
    let decoded: u64 = pictures.iter().map(|p| count(p, "frames_decoded")).sum();
    let skipped: u64 = pictures.iter().map(|p| count(p, "frames_skipped")).sum();
    println!("the programme decoded {decoded} frames and skipped {skipped}: {pictures:?}");
    assert_eq!(pictures.len(), 2, "{pictures:?}");
    assert!(pictures.iter().all(|p| count(p, "frames_decoded") > 0), "{pictures:?}");
    assert!(skipped * 10 > (decoded + skipped) * 4, "off-air frames decoded: {pictures:?}");

    // Closing the hearing ends the publish within a second.
    let before_close = now_s();
    tb.cli_ok(&["session", "hearing", "closed"]);
    wait_for("publish_done", Duration::from_secs(5), || {
        servers.notifications().iter().any(|(_, c)| c == "publish_done")
    });
    let done = servers.notifications().iter().find(|(_, c)| c == "publish_done").unwrap().0;
    assert!(done - before_close < 1.0, "the publish ended {:.2} s after the hearing was closed", done - before_close);
    assert!(!tb.cli(&["session", "broadcast", "start"]).status.success());
    assert_eq!(servers.publishes(), 1);

    // What the RTMP server published, decoded: slate until the delay has passed, then the
    // cameras; during the mute, from its rewound start to the unmute, slate and silence.
    let stream = root.join("rtmp.ts");
    hls_stream(&servers.dir, &stream);
    let (codecs, duration) = streams(&stream);
    assert!(codecs.contains(&"h264".to_string()) && codecs.contains(&"aac".to_string()), "{codecs:?}");
    assert!(duration > 20.0, "published {duration} s");
    let luma = frame_stats(&stream, false);
    let t0 = luma[0].0;
    let dark = |v: f64| v < 40.0;
    let first_picture = luma.iter().find(|(_, v)| !dark(*v)).expect("the cameras went out").0 - t0;
    assert!((first_picture - DELAY_S).abs() < 2.0, "the first picture went out {first_picture:.2} s after the start");
    // Stream time of media time m. The first picture is the first camera keyframe after the
    // start, up to one keyframe interval (1 s in `sim`) after what was recorded at the start:
    // so `at` is late by at most that much, and the mute's edges, which need no keyframe
    // (the camera on air is decoded, blanked or not), are measured on the stream itself.
    const KEYFRAME_S: f64 = 1.0;
    let at = |m: f64| m - start_media + first_picture;
    let pictures: Vec<(f64, bool)> =
        luma.iter().map(|(t, v)| (t - t0, dark(*v))).filter(|(t, _)| *t > first_picture).collect();
    // A stretch still dark at the end of the stream (the slate once the hearing closed) is
    // left out.
    let dark_runs = flagged_stretches(&pictures);
    assert_eq!(dark_runs.len(), 1, "one blank stretch between the first picture and the close: {dark_runs:?}");
    let (blank_from, blank_to) = dark_runs[0];
    let expected_from = at(muted - REWIND_S);
    println!(
        "first picture {first_picture:.2} s; blank {blank_from:.2}..{blank_to:.2} s, expected from {expected_from:.2} s for {:.2} s",
        unmuted - muted + REWIND_S
    );
    assert!(
        blank_from > expected_from - KEYFRAME_S - 0.3 && blank_from < expected_from + 0.3,
        "the blank began at {blank_from:.2} s; the mute's rewound start is at {expected_from:.2} s (-{KEYFRAME_S} s)"
    );
    let expected_length = unmuted - muted + REWIND_S;
    assert!(
        ((blank_to - blank_from) - expected_length).abs() < 0.3,
        "blank for {:.2} s, the mute with its rewind is {expected_length:.2} s",
        blank_to - blank_from
    );
    let sound = frame_stats(&stream, true);
    let inside: Vec<f64> =
        sound.iter().filter(|(t, _)| t - t0 > blank_from + 0.1 && t - t0 < blank_to - 0.1).map(|x| x.1).collect();
    let outside: Vec<f64> =
        sound.iter().filter(|(t, _)| t - t0 > blank_to + 0.3 && t - t0 < blank_to + 3.0).map(|x| x.1).collect();
    assert!(!inside.is_empty() && inside.iter().all(|db| *db < -90.0), "sound during the mute: {inside:?}");
    assert!(outside.iter().any(|db| *db > -80.0), "the microphones went out again after the mute: {outside:?}");

    // The SRT listener and the local HLS folder got the programme too.
    let (codecs, duration) = streams(&servers.dir.join("srt.ts"));
    assert!(codecs.contains(&"h264".to_string()) && codecs.contains(&"aac".to_string()) && duration > 10.0);
    let (codecs, duration) = streams(&root.join("local-hls/index.m3u8"));
    assert!(codecs.contains(&"h264".to_string()) && duration > 10.0, "{codecs:?} {duration}");

    // The server goes away mid-broadcast: the output retries, the recording goes on.
    tb.cli_ok(&["session", "hearing", "open"]);
    tb.cli_ok(&["session", "broadcast", "start"]);
    wait_for("the second publish", Duration::from_secs(20), || servers.publishes() == 2);
    servers.kill_nginx();
    wait_for("the RTMP output retrying", Duration::from_secs(20), || {
        let s = tb.status();
        s["broadcast"]["outputs"][0]["state"] == "retrying" && s["broadcast"]["outputs"][0]["last_error"].is_string()
    });
    std::thread::sleep(Duration::from_secs(3));
    servers.start_nginx();
    let back = Instant::now();
    wait_for("the RTMP output back", Duration::from_secs(30), || servers.publishes() == 3);
    println!("broadcast resumed {:.1} s after the server came back", back.elapsed().as_secs_f64());

    // A stream key that others on the box could read is refused, with the fix, never
    // quoted, stated in the chain, and nothing is published.
    tb.cli_ok(&["session", "broadcast", "stop"]);
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let refused = tb.cli(&["session", "broadcast", "start"]);
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && message.contains("rtmp") && message.contains("chmod 600"), "{message}");
    assert!(!message.contains(KEY), "the refusal quotes the key: {message}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(servers.publishes(), 3);
    tb.stop_session();

    // The chain states every step; the record itself has no gap.
    let records = tb.records(session);
    let kinds: Vec<&str> = records
        .iter()
        .filter(|r| {
            matches!(
                r.entry,
                Entry::BroadcastStart { .. }
                    | Entry::BroadcastStop { .. }
                    | Entry::BroadcastRefused { .. }
                    | Entry::PrivacyMute { .. }
                    | Entry::HearingAccess { .. }
            )
        })
        .map(|r| r.entry.kind())
        .collect();
    assert_eq!(
        kinds,
        [
            "broadcast_start",
            "privacy_mute",
            "privacy_mute",
            "hearing_access",
            "broadcast_stop",
            "broadcast_refused",
            "hearing_access",
            "broadcast_start",
            "broadcast_stop",
            "broadcast_refused"
        ]
    );
    assert!(records.iter().any(|r| matches!(&r.entry, Entry::PrivacyMute { blanked_from: Some(_), muted: true, .. })));
    assert_eq!(gaps(&records), vec![], "the broadcast never costs the record anything");
    // The record of the muted stretch is untouched: the microphones are heard in it.
    let export = root.join("export");
    tb.export(session, &export);
    let recorded: Vec<f64> = ["judge", "prosecutor", "defence", "witness"]
        .iter()
        .flat_map(|mic| frame_stats(&export.join(format!("playable/{mic}.mkv")), true))
        .filter(|(t, _)| *t > muted - REWIND_S + 0.3 && *t < unmuted - 0.3)
        .map(|x| x.1)
        .collect();
    assert!(recorded.iter().any(|db| *db > -60.0), "the record of the mute is silent: {recorded:?}");
    let log = std::fs::read_to_string(root.join("../broadcast_policy_box/daemon-1.log")).unwrap_or_default();
    assert!(!log.contains(KEY) && !log.contains(PASSPHRASE), "a stream secret was logged");
}
