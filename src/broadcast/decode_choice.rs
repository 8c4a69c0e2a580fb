//! Which encoded frames of each camera the delayed programme decodes, and so which camera it
//! can show. Decoding every frame of every camera was the broadcast's largest cost (a 1080p
//! H.264 decode is a good part of a core here) for pictures nobody sees, so:
//!
//! - the camera on air is decoded frame by frame;
//! - a camera off air is decoded at its keyframes only (one frame in 25-30 for a 1 s GOP; a
//!   keyframe costs more to decode than a delta frame, so the saving is somewhat less), which
//!   keeps its decoder primed with its parameter sets;
//! - a cut to a camera takes effect at that camera's first keyframe after the director chose
//!   it: its frames before that keyframe were not decoded, and showing its last keyframe
//!   frozen would be worse than staying on the camera that was on air. That camera keeps
//!   being decoded until the cut lands, so the programme does not freeze at a cut.
//!
//! How late a cut lands: up to one GOP of the new camera (1 s as recommended;
//! `keyframe_interval_ms` for local ones) after the director's decision, which itself comes
//! 0.7 s into the speech. The director hears the microphones a little after the camera
//! frames of the same instant are released to the programme (the sound is decoded first, on
//! another thread), so a keyframe in that moment is judged by the previous decision and the
//! cut waits for the next one: up to two GOPs in the worst case.
//!
//! While the broadcast is blanked the camera on air is still decoded, so that the picture
//! moves again the moment the blanking ends. Frames arrive in decoding order: after a cut
//! lands, the new camera's frames shown before its keyframe (B-frames) are decoded too.
//!
//! The decisions are made here, on media times and the director's answer, and unit-tested;
//! the broadcast tests check them on real streams (frames decoded and skipped in status).

use crate::base::MediaTime;
use std::collections::VecDeque;
use std::time::Duration;

/// Cuts older than this behind the newest frame are forgotten.
const KEEP_CUTS: Duration = Duration::from_secs(30);

/// Whether one encoded frame goes to its camera's decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    Frame,
    /// Nobody will see it: a delta frame of a camera off air, or one whose reference was
    /// itself skipped.
    Skip,
}

#[derive(Debug)]
pub struct DecodeChoice {
    /// (from, camera): the camera the programme shows from that media time on. Never empty.
    shown: VecDeque<(MediaTime, usize)>,
    /// For each camera: its decoder has had every frame since its last keyframe, so its next
    /// delta frame can be decoded.
    unbroken: Vec<bool>,
}

impl DecodeChoice {
    /// `initial`: the camera on air when the programme starts. Every decoder starts empty,
    /// so each camera is decoded from its first keyframe.
    pub fn new(cameras: usize, initial: usize) -> DecodeChoice {
        DecodeChoice { shown: VecDeque::from([(MediaTime::ZERO, initial)]), unbroken: vec![false; cameras] }
    }

    /// Decides for one frame of `camera` recorded at `at`, in decoding order. `wanted`: the
    /// camera the director puts on air at `at` (none while the broadcast is blanked: no cut is
    /// made then).
    pub fn decide(&mut self, camera: usize, at: MediaTime, keyframe: bool, wanted: Option<usize>) -> Decode {
        let Some(unbroken) = self.unbroken.get_mut(camera) else { return Decode::Skip };
        if keyframe {
            *unbroken = true;
            let &(since, on_air) = self.shown.back().expect("never empty");
            if wanted == Some(camera) && on_air != camera && at >= since {
                self.shown.push_back((at, camera));
                while self.shown.len() > 1 && at.saturating_sub(self.shown[1].0) > KEEP_CUTS {
                    self.shown.pop_front();
                }
            }
            return Decode::Frame;
        }
        // By presentation time, or the camera the latest cut landed on: a B-frame that follows
        // the cut's keyframe in decoding order is shown before it.
        let on_air = self.camera_at(at) == camera || self.latest() == camera;
        let unbroken = &mut self.unbroken[camera];
        if *unbroken && on_air {
            Decode::Frame
        } else {
            *unbroken = false;
            Decode::Skip
        }
    }

    /// The camera the programme shows at `t`.
    pub fn camera_at(&self, t: MediaTime) -> usize {
        self.shown.iter().rev().find(|(from, _)| *from <= t).unwrap_or(&self.shown[0]).1
    }

    /// The camera the latest cut landed on.
    fn latest(&self) -> usize {
        self.shown.back().expect("never empty").1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(x: u64) -> MediaTime {
        MediaTime(x * 1_000_000)
    }

    /// Two cameras at 10 fps with a keyframe every second, the director wanting `wanted(t)`;
    /// returns for each camera the media times (ms) of the frames decoded.
    fn run(until_ms: u64, wanted: impl Fn(u64) -> usize) -> (DecodeChoice, [Vec<u64>; 2]) {
        let mut choice = DecodeChoice::new(2, 0);
        let mut decoded = [Vec::new(), Vec::new()];
        for t in (0..until_ms).step_by(100) {
            for (camera, frames) in decoded.iter_mut().enumerate() {
                // Camera 1's keyframes fall half a second after camera 0's.
                let keyframe = (t + 500 * camera as u64).is_multiple_of(1000);
                if choice.decide(camera, ms(t), keyframe, Some(wanted(t))) == Decode::Frame {
                    frames.push(t);
                }
            }
        }
        (choice, decoded)
    }

    #[test]
    fn the_camera_on_air_is_decoded_fully_the_others_at_keyframes() {
        let (choice, [on_air, off_air]) = run(10_000, |_| 0);
        assert_eq!(on_air.len(), 100, "every frame of the camera on air");
        assert_eq!(off_air, [500, 1500, 2500, 3500, 4500, 5500, 6500, 7500, 8500, 9500]);
        assert_eq!(choice.camera_at(ms(9_900)), 0);
    }

    #[test]
    fn a_cut_lands_on_the_new_cameras_first_keyframe_and_the_old_camera_plays_until_then() {
        // The director cuts to camera 1 at 2.2 s; its next keyframe is at 2.5 s.
        let (choice, [old, new]) = run(5_000, |t| if t >= 2_200 { 1 } else { 0 });
        assert_eq!(choice.camera_at(ms(2_400)), 0);
        assert_eq!(choice.camera_at(ms(2_500)), 1);
        // Camera 0: every frame up to the cut, then its keyframes (3.0 s, 4.0 s) only.
        assert_eq!(old.iter().filter(|&&t| t < 2_500).count(), 25);
        assert_eq!(old.iter().filter(|&&t| t > 2_500).copied().collect::<Vec<_>>(), [3_000, 4_000]);
        // Camera 1: keyframes before the cut, then every frame from its keyframe on.
        assert_eq!(new.iter().filter(|&&t| t < 2_500).copied().collect::<Vec<_>>(), [500, 1_500]);
        assert_eq!(new.iter().filter(|&&t| t >= 2_500).count(), 25);
    }

    #[test]
    fn a_camera_is_decoded_only_from_a_keyframe_never_after_a_skipped_frame_and_in_decoding_order() {
        let mut choice = DecodeChoice::new(2, 0);
        // A programme that starts mid-GOP: deltas before the first keyframe cannot be decoded.
        assert_eq!(choice.decide(0, ms(0), false, Some(0)), Decode::Skip);
        assert_eq!(choice.decide(0, ms(100), true, Some(0)), Decode::Frame);
        assert_eq!(choice.decide(0, ms(200), false, Some(0)), Decode::Frame);
        // Blanked: no cut is made, whatever the frames.
        assert_eq!(choice.decide(1, ms(300), true, None), Decode::Frame);
        assert_eq!(choice.camera_at(ms(300)), 0);
        assert_eq!(choice.decide(1, ms(400), false, None), Decode::Skip);
        // Camera 1 comes on air at its keyframe shown at 1.0 s; the B-frame that follows it in
        // decoding order is shown at 0.96 s, and is decoded (not the start of a frozen GOP).
        assert_eq!(choice.decide(1, ms(1_000), true, Some(1)), Decode::Frame);
        assert_eq!(choice.decide(1, ms(960), false, Some(1)), Decode::Frame);
        assert_eq!(choice.decide(1, ms(1_040), false, Some(1)), Decode::Frame);
        // Camera 0's frames shown after the cut are not.
        assert_eq!(choice.decide(0, ms(1_040), false, Some(1)), Decode::Skip);
        // An unknown camera is never decoded.
        assert_eq!(choice.decide(7, ms(500), true, Some(7)), Decode::Skip);
    }
}
