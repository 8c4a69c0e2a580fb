//! Small JPEG pictures of what a camera records, for the front panel: made from a frame the
//! health probe already holds, every couple of seconds, at a few hundred microseconds each.

/// Width of a thumbnail; the height follows the picture's aspect ratio.
pub const WIDTH: usize = 192;

/// One I420 frame, borrowed from GStreamer: planes Y, U, V with their strides.
pub struct I420<'a> {
    pub width: usize,
    pub height: usize,
    pub planes: [&'a [u8]; 3],
    pub strides: [usize; 3],
}

/// Nearest-neighbour scaled to `WIDTH`, encoded as a JPEG (quality 70).
pub fn encode(frame: &I420) -> Option<Vec<u8>> {
    if frame.width < 2 || frame.height < 2 {
        return None;
    }
    let w = WIDTH.min(frame.width);
    let h = (frame.height * w / frame.width).max(2) & !1;
    let mut ycbcr = Vec::with_capacity(w * h * 3);
    for ty in 0..h {
        let sy = ty * frame.height / h;
        for tx in 0..w {
            let sx = tx * frame.width / w;
            let y = *frame.planes[0].get(sy * frame.strides[0] + sx)?;
            let u = *frame.planes[1].get((sy / 2) * frame.strides[1] + sx / 2)?;
            let v = *frame.planes[2].get((sy / 2) * frame.strides[2] + sx / 2)?;
            ycbcr.extend_from_slice(&[y, u, v]);
        }
    }
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 70).encode(&ycbcr, w as u16, h as u16, jpeg_encoder::ColorType::Ycbcr).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_becomes_a_small_jpeg_of_the_right_size() {
        let (width, height) = (640, 360);
        let y = vec![200u8; width * height];
        let uv = vec![128u8; width * height / 4];
        let jpeg =
            encode(&I420 { width, height, planes: [&y, &uv, &uv], strides: [width, width / 2, width / 2] }).unwrap();
        assert_eq!(&jpeg[..2], &[0xff, 0xd8], "JPEG start of image");
        // SOF0 marker: height and width of the thumbnail.
        let sof = jpeg.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
        let h = u16::from_be_bytes([jpeg[sof + 5], jpeg[sof + 6]]);
        let w = u16::from_be_bytes([jpeg[sof + 7], jpeg[sof + 8]]);
        assert_eq!((w, h), (192, 108));
        assert!(jpeg.len() < 8000, "{}", jpeg.len());
        assert!(
            encode(&I420 { width, height, planes: [&y[..10], &uv, &uv], strides: [width, width / 2, width / 2] })
                .is_none()
        );
    }
}
