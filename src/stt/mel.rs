//! Whisper's mel filter bank: librosa's Slaney-style filters (`htk=False`,
//! `norm="slaney"`) for 16 kHz audio, a 400-point FFT and 80 bands. Computed here rather
//! than downloaded; checked against openai-whisper's `mel_filters.npz` (max difference
//! 2e-9) when the converter was written.

pub const SAMPLE_RATE: f64 = 16_000.0;
pub const N_FFT: usize = 400;

fn hz_to_mel(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if f >= min_log_hz { min_log_mel + (f / min_log_hz).ln() / logstep } else { f / f_sp }
}

fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if m >= min_log_mel { min_log_hz * (logstep * (m - min_log_mel)).exp() } else { f_sp * m }
}

/// `n_mels × (N_FFT/2 + 1)` weights, row-major.
pub fn filters(n_mels: usize) -> Vec<f32> {
    let n_bins = N_FFT / 2 + 1;
    let fft: Vec<f64> = (0..n_bins).map(|i| i as f64 * (SAMPLE_RATE / 2.0) / (n_bins - 1) as f64).collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2.0));
    let mel_f: Vec<f64> = (0..n_mels + 2).map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64)).collect();
    let mut out = Vec::with_capacity(n_mels * n_bins);
    for m in 0..n_mels {
        let enorm = 2.0 / (mel_f[m + 2] - mel_f[m]);
        for &f in &fft {
            let lower = (f - mel_f[m]) / (mel_f[m + 1] - mel_f[m]);
            let upper = (mel_f[m + 2] - f) / (mel_f[m + 2] - mel_f[m + 1]);
            out.push((lower.min(upper).max(0.0) * enorm) as f32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_known_values_of_whisper_mel_80() {
        // Spot values of openai-whisper's assets/mel_filters.npz["mel_80"].
        let f = filters(80);
        assert_eq!(f.len(), 80 * 201);
        let at = |m: usize, b: usize| f[m * 201 + b];
        // Band 0 peaks at bin 1; the last band lives near 8 kHz.
        assert!((at(0, 1) - 0.024_862_595).abs() < 1e-8, "{}", at(0, 1));
        assert!((at(79, 195) - 0.002_243_795_2).abs() < 1e-8, "{}", at(79, 195));
        assert_eq!(at(0, 3), 0.0);
        assert!(at(79, 200) == 0.0 && at(79, 195) > 0.0);
        let max = f.iter().cloned().fold(0.0f32, f32::max);
        assert!((max - 0.025_880_683).abs() < 1e-7, "{max}");
    }
}
