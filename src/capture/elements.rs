//! The GStreamer elements courtbox uses and the Debian package that provides each: the one
//! list behind `courtbox check --elements` (which `scripts/setup` runs after installing), the
//! preflight, and a device that cannot start because an element is missing. The suite's
//! install test keeps this list true: every element named in a template or in the code is
//! here, each comes from the package named here, and that package is one `scripts/setup`
//! installs and the `.deb` depends on.

use std::fmt;

/// What an element is needed for: a missing recording element is a fault before a hearing,
/// a missing benchmark element only matters to `courtbox bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Capture, segmenting and reading back the record (every box).
    Recording,
    /// The `sim` profile's synthetic cameras and microphones.
    Sim,
    /// Real cameras and audio interfaces (V4L2, ALSA, PulseAudio).
    Devices,
    /// Network sources: RTSP cameras, SRT and RTMP remote participants.
    Network,
    /// Live broadcast: the programme and its outputs.
    Broadcast,
    /// `courtbox bench broadcast` and the tests: playing the published streams back.
    Bench,
}

impl Need {
    /// What needs the element, in the words of a preflight line.
    pub fn describe(self) -> &'static str {
        match self {
            Need::Recording => "recording",
            Need::Sim => "the sim profile",
            Need::Devices => "real cameras and microphones",
            Need::Network => "network cameras and remote participants",
            Need::Broadcast => "the live broadcast",
            Need::Bench => "courtbox bench and the tests",
        }
    }
}

/// One element and where it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Element {
    pub name: &'static str,
    /// The Debian 12 package whose plugin file provides it.
    pub package: &'static str,
    pub need: Need,
}

const fn el(name: &'static str, package: &'static str, need: Need) -> Element {
    Element { name, package, need }
}

const CORE: &str = "libgstreamer1.0-0";
const BASE: &str = "gstreamer1.0-plugins-base";
const GOOD: &str = "gstreamer1.0-plugins-good";
const BAD: &str = "gstreamer1.0-plugins-bad";

/// Every element a template in `pipelines/` or a description in the code names, and the
/// ones `decodebin` plugs in for the files courtbox reads (WAV speech, the record's
/// Matroska/Opus/H.264).
pub const ELEMENTS: &[Element] = &[
    // Recording: device pipelines around the templates, segmenting, reading back.
    el("identity", CORE, Need::Recording),
    el("queue", CORE, Need::Recording),
    el("tee", CORE, Need::Recording),
    el("fakesink", CORE, Need::Recording),
    el("filesrc", CORE, Need::Recording),
    el("filesink", CORE, Need::Recording),
    el("appsrc", BASE, Need::Recording),
    el("appsink", BASE, Need::Recording),
    el("audioconvert", BASE, Need::Recording),
    el("audioresample", BASE, Need::Recording),
    el("videoconvert", BASE, Need::Recording),
    el("videoscale", BASE, Need::Recording),
    el("videorate", BASE, Need::Network),
    el("decodebin", BASE, Need::Recording),
    el("opusenc", BASE, Need::Recording),
    el("opusdec", BASE, Need::Recording),
    el("deinterleave", GOOD, Need::Recording),
    el("matroskamux", GOOD, Need::Recording),
    el("matroskademux", GOOD, Need::Recording),
    el("splitmuxsink", GOOD, Need::Recording),
    el("wavparse", GOOD, Need::Recording),
    el("aacparse", GOOD, Need::Recording),
    el("h264parse", BAD, Need::Recording),
    el("openh264enc", BAD, Need::Recording),
    el("x264enc", "gstreamer1.0-plugins-ugly", Need::Recording),
    el("avenc_aac", "gstreamer1.0-libav", Need::Recording),
    // The sim profile: a test picture with its label and a clock burnt in.
    el("videotestsrc", BASE, Need::Sim),
    el("textoverlay", "gstreamer1.0-x", Need::Sim),
    el("clockoverlay", "gstreamer1.0-x", Need::Sim),
    // Real devices.
    el("v4l2src", GOOD, Need::Devices),
    el("jpegdec", GOOD, Need::Devices),
    el("alsasrc", "gstreamer1.0-alsa", Need::Devices),
    el("pulsesrc", GOOD, Need::Devices),
    // Network sources: received, depayloaded and parsed (passed through); keyframes decoded
    // for health and thumbnails.
    el("rtspsrc", GOOD, Need::Network),
    el("rtph264depay", GOOD, Need::Network),
    el("rtph265depay", GOOD, Need::Network),
    el("h265parse", BAD, Need::Network),
    el("avdec_h265", "gstreamer1.0-libav", Need::Network),
    el("srtsrc", BAD, Need::Network),
    el("tsdemux", BAD, Need::Network),
    el("rtmp2src", BAD, Need::Network),
    el("flvdemux", GOOD, Need::Network),
    // Broadcast: programme (slate, mixer, scaling) and outputs.
    el("audiotestsrc", BASE, Need::Broadcast),
    el("audiomixer", BASE, Need::Broadcast),
    el("avdec_h264", "gstreamer1.0-libav", Need::Broadcast),
    el("flvmux", GOOD, Need::Broadcast),
    el("rtmp2sink", BAD, Need::Broadcast),
    el("mpegtsmux", BAD, Need::Broadcast),
    el("srtsink", BAD, Need::Broadcast),
    el("hlssink2", BAD, Need::Broadcast),
    // Playing the published streams back (bench and tests).
    el("udpsrc", GOOD, Need::Bench),
];

/// The package that provides `element`, if courtbox knows it.
pub fn package_of(element: &str) -> Option<&'static str> {
    ELEMENTS.iter().find(|e| e.name == element).map(|e| e.package)
}

/// An element a pipeline needs that this machine does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub element: String,
    /// The Debian package to install, when courtbox knows it.
    pub package: Option<&'static str>,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&phrase(&self.element, self.package))
    }
}

/// `no element NAMES (install PACKAGE)`: the one wording of a missing element.
fn phrase(names: &str, package: Option<&str>) -> String {
    match package {
        Some(p) => format!("no element {names} (install {p})"),
        None => format!("no element {names} (no known package provides it: check the pipeline template)"),
    }
}

/// The element factory names in a `gst-launch` description, in order, each once: every
/// bare word that is not a link (`!`), a property (`key=value`), caps (`type/subtype,…`)
/// or a reference to a named element (`name.` / `name.pad`). Quoted values are skipped.
pub fn factories_in(description: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for token in tokens(description) {
        let bare = !token.is_empty()
            && token != "!"
            && !token.contains(['=', '/', '.', '"', '(', ','])
            && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if bare && !names.iter().any(|n| *n == token) {
            names.push(token.to_string());
        }
    }
    names
}

/// Splits on whitespace outside double quotes; a quoted stretch stays inside its token.
fn tokens(description: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (i, c) in description.char_indices() {
        if c == '"' {
            quoted = !quoted;
        }
        if c.is_whitespace() && !quoted {
            if let Some(s) = start.take() {
                out.push(&description[s..i]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push(&description[s..]);
    }
    out
}

/// The elements of `description` that this machine's GStreamer cannot make.
pub fn missing_in(description: &str) -> Vec<Missing> {
    let present = |name: &str| gst::ElementFactory::find(name).is_some();
    factories_in(description)
        .into_iter()
        .filter(|name| !present(name))
        .map(|element| Missing { package: package_of(&element), element })
        .collect()
}

/// Every element in [`ELEMENTS`] that this machine lacks (GStreamer must be initialised).
pub fn missing_of_all() -> Vec<(Element, Missing)> {
    ELEMENTS
        .iter()
        .filter(|e| gst::ElementFactory::find(e.name).is_none())
        .map(|e| (*e, Missing { element: e.name.to_string(), package: Some(e.package) }))
        .collect()
}

/// One phrase naming the missing elements, grouped by the package that provides them:
/// `no element textoverlay, clockoverlay (install gstreamer1.0-x)`.
pub fn describe_missing(missing: &[Missing]) -> String {
    let mut groups: Vec<(Option<&'static str>, Vec<&str>)> = Vec::new();
    for m in missing {
        match groups.iter_mut().find(|(p, _)| *p == m.package) {
            Some((_, names)) if !names.contains(&m.element.as_str()) => names.push(&m.element),
            Some(_) => {}
            None => groups.push((m.package, vec![&m.element])),
        }
    }
    groups.into_iter().map(|(package, names)| phrase(&names.join(", "), package)).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factories_are_the_bare_words_of_a_description() {
        let d = r#"videotestsrc is-live=true ! video/x-raw,format=I420,width=320 ! textoverlay text="a b ! c" font-desc="Sans 12"
            ! tee name=t ! queue ! fakesink t. ! queue ! appsink name=x split.src_0 ! fakesink
            appsrc caps="audio/x-raw,channel-mask=(bitmask)0x0" ! audioconvert"#;
        assert_eq!(
            factories_in(d),
            ["videotestsrc", "textoverlay", "tee", "queue", "fakesink", "appsink", "appsrc", "audioconvert"]
        );
    }

    #[test]
    fn a_missing_element_names_its_package() {
        let m = Missing { element: "textoverlay".into(), package: package_of("textoverlay") };
        assert_eq!(m.to_string(), "no element textoverlay (install gstreamer1.0-x)");
        let unknown = Missing { element: "frobsink".into(), package: None };
        assert!(unknown.to_string().contains("no known package"));
        assert_eq!(
            describe_missing(&[
                m.clone(),
                m,
                Missing { element: "clockoverlay".into(), package: Some("gstreamer1.0-x") }
            ]),
            "no element textoverlay, clockoverlay (install gstreamer1.0-x)"
        );
        assert_eq!(
            describe_missing(&[unknown, Missing { element: "x264enc".into(), package: package_of("x264enc") }]),
            "no element frobsink (no known package provides it: check the pipeline template); \
             no element x264enc (install gstreamer1.0-plugins-ugly)"
        );
    }

    #[test]
    fn the_list_names_each_element_once() {
        let mut names: Vec<&str> = ELEMENTS.iter().map(|e| e.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }
}
