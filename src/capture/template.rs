//! Pipeline templates (`pipelines/*.gst`): built into the binary, overridable file by file
//! from `pipelines_dir`, and rendered into launch lines by filling in `{placeholders}`. An
//! unknown placeholder is an error, so a mistyped template fails before a pipeline is built.

use super::CaptureError;
use std::path::PathBuf;
use thiserror::Error;

/// Why a template's text does not render.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("unclosed '{{'")]
    Unclosed,
    #[error("unknown placeholder {{{0}}}")]
    UnknownPlaceholder(String),
}

/// The templates in `pipelines/`, embedded so an installed binary needs no data files.
const BUILTIN: &[(&str, &str)] = &[
    ("camera-sim", include_str!("../../pipelines/camera-sim.gst")),
    ("camera-v4l2-raw", include_str!("../../pipelines/camera-v4l2-raw.gst")),
    ("camera-v4l2-mjpeg", include_str!("../../pipelines/camera-v4l2-mjpeg.gst")),
    ("audio-sim", include_str!("../../pipelines/audio-sim.gst")),
    ("audio-alsa", include_str!("../../pipelines/audio-alsa.gst")),
    ("audio-pulse", include_str!("../../pipelines/audio-pulse.gst")),
    ("encode-x264", include_str!("../../pipelines/encode-x264.gst")),
    ("encode-openh264", include_str!("../../pipelines/encode-openh264.gst")),
    ("encode-opus", include_str!("../../pipelines/encode-opus.gst")),
    ("encode-aac", include_str!("../../pipelines/encode-aac.gst")),
];

/// Pipeline templates: built in, or overridden file by file from a directory.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    override_dir: Option<PathBuf>,
}

impl Templates {
    pub fn new(override_dir: Option<PathBuf>) -> Templates {
        Templates { override_dir }
    }

    pub fn render(&self, name: &str, vars: &[(&str, String)]) -> Result<String, CaptureError> {
        let text = match self.override_dir.as_ref().map(|d| d.join(format!("{name}.gst"))) {
            Some(path) if path.exists() => std::fs::read_to_string(&path)
                .map_err(|e| CaptureError::Template(format!("{}: {e}", path.display())))?,
            _ => BUILTIN
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.to_string())
                .ok_or_else(|| CaptureError::Template(format!("no pipeline template named {name}")))?,
        };
        render(&text, vars).map_err(|e| CaptureError::Template(format!("{name}.gst: {e}")))
    }
}

/// Drops comment lines, joins the rest into one line and substitutes `{placeholders}`.
pub fn render(text: &str, vars: &[(&str, String)]) -> Result<String, TemplateError> {
    let joined =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(joined.len());
    let mut rest = joined.as_str();
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').ok_or(TemplateError::Unclosed)? + open;
        let key = &rest[open + 1..close];
        let value =
            vars.iter().find(|(k, _)| *k == key).ok_or_else(|| TemplateError::UnknownPlaceholder(key.to_string()))?;
        out.push_str(&value.1);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_rejects_unknown_placeholders() {
        let t = "# comment\nvideotestsrc\n  ! video/x-raw,width={w}\n";
        assert_eq!(render(t, &[("w", "640".into())]).unwrap(), "videotestsrc ! video/x-raw,width=640");
        assert!(render(t, &[]).unwrap_err().to_string().contains("{w}"));
        assert_eq!(render("a {b", &[]), Err(TemplateError::Unclosed));
        assert_eq!(TemplateError::Unclosed.to_string(), "unclosed '{'");
    }

    #[test]
    fn every_builtin_template_parses_as_a_pipeline() {
        gst::init().unwrap();
        let vars: Vec<(&str, String)> = [
            ("width", "320"),
            ("height", "240"),
            ("fps", "15"),
            ("label", "cam"),
            ("font_size", "12"),
            ("pattern", "smpte"),
            ("device", "/dev/video0"),
            ("device_property", ""),
            ("rate", "48000"),
            ("channels", "2"),
            ("bitrate_kbps", "500"),
            ("bitrate_bps", "32000"),
            ("keyframe_frames", "15"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
        let t = Templates::default();
        for (name, _) in BUILTIN {
            let desc = t.render(name, &vars).unwrap();
            let desc = if name.starts_with("encode") {
                let input = if name.contains("264") { "videotestsrc" } else { "audiotestsrc" };
                format!("{input} ! {desc} ! fakesink")
            } else {
                format!("{desc} ! fakesink")
            };
            gst::parse::launch(&desc).unwrap_or_else(|e| panic!("{name}: {e}: {desc}"));
        }
    }
}
