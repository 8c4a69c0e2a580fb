//! The media time a segment file actually holds, read from the file itself: for segments
//! whose muxer was never finalized (a crash, a fragment cut short), whose span is otherwise
//! unknown, so that they can still be committed.

use crate::base::MediaTime;
use crate::capture::ReadError;
use std::path::Path;

/// First and last media time in a Matroska segment file, by demuxing it (no decoding).
/// Works on files cut short by a crash: the demuxer stops at the damage and what came
/// before counts. `Ok(None)` means the file holds no frame at all.
pub fn media_span(path: &Path) -> Result<Option<(MediaTime, MediaTime)>, ReadError> {
    let mut span: Option<(u64, u64)> = None;
    crate::capture::read_file(
        "filesrc name=src ! matroskademux ! appsink name=out sync=false",
        path,
        true,
        |sample| {
            let Some(buf) = sample.buffer() else { return };
            let Some(pts) = buf.pts().or(buf.dts()) else { return };
            let start = pts.nseconds();
            let end = start + buf.duration().map(|d| d.nseconds()).unwrap_or(0);
            span = Some(span.map_or((start, end), |(a, b)| (a.min(start), b.max(end))));
        },
    )?;
    Ok(span.map(|(a, b)| (MediaTime(a), MediaTime(b))))
}
