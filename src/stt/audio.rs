//! Reading committed audio segments back as 16 kHz mono samples, for transcribing what
//! live transcription could not.

use crate::base::MediaTime;
use crate::capture::ReadError;
use std::path::Path;

/// Decodes a recorded segment file; returns runs of contiguous samples with their start
/// (session media time, as recorded).
pub fn decode_segment(path: &Path) -> Result<Vec<(MediaTime, Vec<f32>)>, ReadError> {
    let desc = "filesrc name=src ! decodebin ! audioconvert ! audioresample \
                ! audio/x-raw,format=F32LE,rate=16000,channels=1 ! appsink name=out sync=false";
    let mut runs: Vec<(MediaTime, Vec<f32>)> = Vec::new();
    crate::capture::read_file(desc, path, true, |sample| {
        let Some(buf) = sample.buffer() else { return };
        let (Some(pts), Ok(map)) = (buf.pts(), buf.map_readable()) else { return };
        let samples: Vec<f32> = map.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let start = MediaTime(pts.nseconds());
        match runs.last_mut() {
            // Contiguous with the previous buffer (within a sample or two): extend.
            Some((s, v)) if (s.0 + v.len() as u64 * 62_500).abs_diff(start.0) < 200_000 => v.extend(samples),
            _ => runs.push((start, samples)),
        }
    })?;
    Ok(runs)
}

/// The part of `runs` between `from` and `to`.
pub fn cut(runs: Vec<(MediaTime, Vec<f32>)>, from: MediaTime, to: MediaTime) -> Vec<(MediaTime, Vec<f32>)> {
    let ns_per_sample = 62_500u64; // 16 kHz
    runs.into_iter()
        .filter_map(|(start, v)| {
            let end = start.0 + v.len() as u64 * ns_per_sample;
            if end <= from.0 || start.0 >= to.0 {
                return None;
            }
            let skip = (from.0.saturating_sub(start.0) / ns_per_sample) as usize;
            let keep = ((to.0.min(end) - start.0) / ns_per_sample) as usize;
            Some((MediaTime(start.0 + skip as u64 * ns_per_sample), v[skip..keep.max(skip)].to_vec()))
        })
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_only_the_interval() {
        let runs = vec![(MediaTime(0), vec![1.0; 16_000]), (MediaTime(2_000_000_000), vec![2.0; 16_000])];
        let got = cut(runs, MediaTime(500_000_000), MediaTime(2_250_000_000));
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0, got[0].1.len()), (MediaTime(500_000_000), 8_000));
        assert_eq!((got[1].0, got[1].1.len()), (MediaTime(2_000_000_000), 4_000));
    }
}
