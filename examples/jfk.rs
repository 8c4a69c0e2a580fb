use whisper_rs::*;
fn main() {
    let model = std::env::args().nth(1).unwrap();
    let wav = std::env::args().nth(2).unwrap();
    let lang = std::env::args().nth(3).unwrap_or("en".into());
    let bytes = std::fs::read(&wav).unwrap();
    let pcm: Vec<f32> =
        bytes[44..].chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0).collect();
    println!("{}", whisper_rs::print_system_info());
    let t = std::time::Instant::now();
    let ctx = WhisperContext::new_with_params(&model, WhisperContextParameters::default()).unwrap();
    println!("load {:?}", t.elapsed());
    let mut state = ctx.create_state().unwrap();
    for ctxlen in [0, 768] {
        let mut p = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        p.set_language(Some(&lang));
        p.set_n_threads(2);
        p.set_print_progress(false);
        p.set_print_realtime(false);
        p.set_print_special(false);
        p.set_print_timestamps(false);
        if ctxlen > 0 {
            p.set_audio_ctx(ctxlen);
        }
        let t = std::time::Instant::now();
        state.full(p, &pcm).unwrap();
        let el = t.elapsed();
        let text: String = state.as_iter().map(|s| s.to_str_lossy().unwrap().to_string()).collect();
        println!("audio_ctx {ctxlen}: {:?} (RTF {:.2}): {}", el, el.as_secs_f64() / (pcm.len() as f64 / 16000.0), text);
    }
}
