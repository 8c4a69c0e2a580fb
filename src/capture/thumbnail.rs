//! Small JPEG pictures of what a camera records, for the front panel. The health probe keeps
//! a scaled-down copy of a frame every couple of seconds (a 62 KB copy on the streaming
//! thread); the JPEG is encoded only when someone asks, off the recording path.

/// Width of a thumbnail; the height follows the picture's aspect ratio.
pub const WIDTH: usize = 192;

/// One I420 frame, borrowed from GStreamer: planes Y, U, V with their strides.
pub struct I420<'a> {
    pub width: usize,
    pub height: usize,
    pub planes: [&'a [u8]; 3],
    pub strides: [usize; 3],
}

/// A scaled-down frame, as interleaved Y, Cb, Cr bytes.
#[derive(Debug)]
pub struct Small {
    width: usize,
    height: usize,
    ycbcr: Vec<u8>,
}

/// Nearest-neighbour scaled to `WIDTH` (height by the aspect ratio, even).
pub fn downscale(frame: &I420) -> Option<Small> {
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
    Some(Small { width: w, height: h, ycbcr })
}

/// JPEG, quality 70.
pub fn encode(small: &Small) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 70)
        .encode(&small.ycbcr, small.width as u16, small.height as u16, jpeg_encoder::ColorType::Ycbcr)
        .ok()?;
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
        let small =
            downscale(&I420 { width, height, planes: [&y, &uv, &uv], strides: [width, width / 2, width / 2] }).unwrap();
        let jpeg = encode(&small).unwrap();
        assert_eq!(&jpeg[..2], &[0xff, 0xd8], "JPEG start of image");
        // SOF0 marker: height and width of the thumbnail.
        let sof = jpeg.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
        let h = u16::from_be_bytes([jpeg[sof + 5], jpeg[sof + 6]]);
        let w = u16::from_be_bytes([jpeg[sof + 7], jpeg[sof + 8]]);
        assert_eq!((w, h), (192, 108));
        assert!(jpeg.len() < 8000, "{}", jpeg.len());
        assert!(
            downscale(&I420 { width, height, planes: [&y[..10], &uv, &uv], strides: [width, width / 2, width / 2] })
                .is_none()
        );
    }
}
