//! CTranslate2 Whisper weights (`model.bin` + `vocabulary.txt`) to the ggml file that
//! whisper.cpp loads. The mapping of names and fused matrices follows whisper.cpp's
//! `convert-pt-to-ggml.py`, starting from CTranslate2's `WhisperSpec` instead of PyTorch.

use half::f16;
use serde::Deserialize;
use std::collections::HashMap;
use std::io::Write;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConvertError {
    #[error("not a CTranslate2 model: {0}")]
    Format(String),
    #[error("the model lacks {0}")]
    Missing(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("writing the model: {0}")]
    Io(#[from] std::io::Error),
}

const DTYPE_F32: u8 = 0;
const DTYPE_I8: u8 = 1;
const DTYPE_I16: u8 = 2;
const DTYPE_I32: u8 = 3;
const DTYPE_F16: u8 = 4;

struct Variable<'a> {
    dims: Vec<usize>,
    dtype: u8,
    data: &'a [u8],
}

/// A parsed CTranslate2 `model.bin` (binary version 6), borrowing its tensor data.
pub struct Ct2Model<'a> {
    pub spec: String,
    vars: HashMap<String, Variable<'a>>,
}

struct Reader<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ConvertError> {
        let end = self
            .p
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| ConvertError::Format("truncated".into()))?;
        let s = &self.b[self.p..end];
        self.p = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, ConvertError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ConvertError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, ConvertError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn string(&mut self) -> Result<String, ConvertError> {
        let n = self.u16()? as usize;
        let raw = self.take(n)?;
        let raw = raw.strip_suffix(&[0]).ok_or_else(|| ConvertError::Format("string without NUL".into()))?;
        String::from_utf8(raw.to_vec()).map_err(|e| ConvertError::Format(e.to_string()))
    }
}

impl<'a> Ct2Model<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Ct2Model<'a>, ConvertError> {
        let mut r = Reader { b: bytes, p: 0 };
        let version = r.u32()?;
        if version != 6 {
            return Err(ConvertError::Format(format!("binary version {version}, expected 6")));
        }
        let spec = r.string()?;
        let _revision = r.u32()?;
        let count = r.u32()?;
        let mut vars = HashMap::new();
        for _ in 0..count {
            let name = r.string()?;
            let rank = r.u8()?;
            let dims = (0..rank).map(|_| r.u32().map(|d| d as usize)).collect::<Result<Vec<_>, _>>()?;
            let dtype = r.u8()?;
            let n = r.u32()? as usize;
            let data = r.take(n)?;
            vars.insert(name, Variable { dims, dtype, data });
        }
        let aliases = r.u32()?;
        for _ in 0..aliases {
            let (alias, target) = (r.string()?, r.string()?);
            let v = vars.get(&target).ok_or_else(|| ConvertError::Missing(target.clone()))?;
            let copy = Variable { dims: v.dims.clone(), dtype: v.dtype, data: v.data };
            vars.insert(alias, copy);
        }
        if spec != "WhisperSpec" {
            return Err(ConvertError::Format(format!("a {spec}, not a Whisper model")));
        }
        Ok(Ct2Model { spec, vars })
    }

    fn var(&self, name: &str) -> Result<&Variable<'a>, ConvertError> {
        self.vars.get(name).ok_or_else(|| ConvertError::Missing(name.to_string()))
    }

    fn int(&self, name: &str) -> Result<usize, ConvertError> {
        let v = self.var(name)?;
        Ok(match v.dtype {
            DTYPE_I8 => v.data[0] as i8 as usize,
            DTYPE_I16 => i16::from_le_bytes([v.data[0], v.data[1]]) as usize,
            DTYPE_I32 => i32::from_le_bytes(v.data[..4].try_into().expect("4 bytes")) as usize,
            _ => return Err(ConvertError::Format(format!("{name} is not an integer"))),
        })
    }

    fn layers(&self, prefix: &str) -> usize {
        (0..).take_while(|i| self.vars.keys().any(|k| k.starts_with(&format!("{prefix}/layer_{i}/")))).count()
    }
}

/// Whisper's dimensions, in the order of the ggml header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hparams {
    pub n_vocab: usize,
    pub n_audio_ctx: usize,
    pub n_audio_state: usize,
    pub n_audio_head: usize,
    pub n_audio_layer: usize,
    pub n_text_ctx: usize,
    pub n_text_state: usize,
    pub n_text_head: usize,
    pub n_text_layer: usize,
    pub n_mels: usize,
}

pub fn hparams(m: &Ct2Model) -> Result<Hparams, ConvertError> {
    let emb = &m.var("decoder/embeddings/weight")?.dims;
    let enc_pos = &m.var("encoder/position_encodings/encodings")?.dims;
    let dec_pos = &m.var("decoder/position_encodings/encodings")?.dims;
    let conv1 = &m.var("encoder/conv1/weight")?.dims;
    Ok(Hparams {
        n_vocab: emb[0],
        n_audio_ctx: enc_pos[0],
        n_audio_state: enc_pos[1],
        n_audio_head: m.int("encoder/num_heads")?,
        n_audio_layer: m.layers("encoder"),
        n_text_ctx: dec_pos[0],
        n_text_state: emb[1],
        n_text_head: m.int("decoder/num_heads")?,
        n_text_layer: m.layers("decoder"),
        n_mels: conv1[1],
    })
}

/// The token bytes whisper.cpp expects: the regular tokens (ids below `<|endoftext|>`),
/// decoded from CTranslate2's byte-level BPE strings (GPT-2's byte-to-unicode mapping).
pub fn vocabulary_bytes(vocabulary_txt: &str) -> Result<Vec<Vec<u8>>, ConvertError> {
    let mut decode = HashMap::new();
    let printable =
        |b: u32| (b'!' as u32..=b'~' as u32).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    let mut extra = 0;
    for b in 0u32..256 {
        let c = if printable(b) {
            b
        } else {
            extra += 1;
            255 + extra
        };
        decode.insert(char::from_u32(c).expect("valid code point"), b as u8);
    }
    let tokens: Vec<&str> = vocabulary_txt.split('\n').collect();
    let eot = tokens
        .iter()
        .position(|t| *t == "<|endoftext|>")
        .ok_or_else(|| ConvertError::Format("vocabulary has no <|endoftext|>".into()))?;
    tokens[..eot]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.chars()
                .map(|c| {
                    decode
                        .get(&c)
                        .copied()
                        .ok_or_else(|| ConvertError::Format(format!("token {i} {t:?} is not byte-level BPE")))
                })
                .collect()
        })
        .collect()
}

/// Numeric type of the converted matrices (convolutions stay f16, vectors f32, as
/// whisper.cpp expects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightType {
    F16,
    /// ggml's 8-bit blocks: half the size, faster on CPUs; same accuracy on our tests.
    Q8_0,
}

impl WeightType {
    /// The header's `ftype`: quantized types carry ggml's quantization version × 1000.
    fn ftype(self) -> usize {
        match self {
            WeightType::F16 => 1,
            WeightType::Q8_0 => 2 * 1000 + 7,
        }
    }
}

const GGML_MAGIC: u32 = 0x6767_6d6c;
const GGML_TYPE_F32: i32 = 0;
const GGML_TYPE_F16: i32 = 1;
const GGML_TYPE_Q8_0: i32 = 8;
const Q8_0_BLOCK: usize = 32;

enum Data {
    F32(Vec<f32>),
    F16(Vec<u8>),
    Q8_0(Vec<u8>),
}

/// ggml's `quantize_row_q8_0_ref`: per block of 32 values, an f16 scale `max|x| / 127`
/// and 32 signed bytes `round(x / scale)`.
fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / Q8_0_BLOCK * (2 + Q8_0_BLOCK));
    for block in values.chunks(Q8_0_BLOCK) {
        let amax = block.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend(block.iter().map(|x| (x * id).round() as i8 as u8));
    }
    out
}

fn f32_of(v: &Variable, name: &str) -> Result<Vec<f32>, ConvertError> {
    match v.dtype {
        DTYPE_F32 => Ok(v.data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4"))).collect()),
        DTYPE_F16 => Ok(v.data.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
        d => Err(ConvertError::Unsupported(format!(
            "{name} has CTranslate2 dtype {d}; only float16/float32 models convert (not int8-quantized)"
        ))),
    }
}

fn f16_of(bytes: &[u8], dtype: u8, name: &str) -> Result<Vec<u8>, ConvertError> {
    match dtype {
        DTYPE_F16 => Ok(bytes.to_vec()),
        DTYPE_F32 => Ok(bytes
            .chunks_exact(4)
            .flat_map(|c| f16::from_f32(f32::from_le_bytes(c.try_into().expect("4"))).to_le_bytes())
            .collect()),
        d => Err(ConvertError::Unsupported(format!(
            "{name} has CTranslate2 dtype {d}; only float16/float32 models convert"
        ))),
    }
}

struct GgmlWriter<'w, W: Write> {
    out: &'w mut W,
    written: usize,
}

impl<W: Write> GgmlWriter<'_, W> {
    fn i32(&mut self, v: i32) -> std::io::Result<()> {
        self.out.write_all(&v.to_le_bytes())
    }
    /// `shape` in numpy (row-major) order; ggml wants it reversed.
    fn tensor(&mut self, name: &str, shape: &[usize], data: Data) -> Result<(), ConvertError> {
        let elements: usize = shape.iter().product();
        let (ttype, bytes) = match data {
            Data::F32(v) => {
                if v.len() != elements {
                    return Err(ConvertError::Format(format!("{name}: {} values for shape {shape:?}", v.len())));
                }
                (GGML_TYPE_F32, v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
            }
            Data::F16(b) => {
                if b.len() != elements * 2 {
                    return Err(ConvertError::Format(format!("{name}: {} bytes for shape {shape:?}", b.len())));
                }
                (GGML_TYPE_F16, b)
            }
            Data::Q8_0(b) => (GGML_TYPE_Q8_0, b),
        };
        self.i32(shape.len() as i32)?;
        self.i32(name.len() as i32)?;
        self.i32(ttype)?;
        for d in shape.iter().rev() {
            self.i32(*d as i32)?;
        }
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&bytes)?;
        self.written += 1;
        Ok(())
    }
}

/// Splits a fused `[k·d, d]` weight (or `[k·d]` bias) into its `k` parts, row-wise.
fn split_rows<'a>(v: &Variable<'a>, parts: usize) -> Vec<&'a [u8]> {
    let n = v.data.len() / parts;
    (0..parts).map(|i| &v.data[i * n..(i + 1) * n]).collect()
}

fn all_zero(v: &Variable, bytes: &[u8], name: &str) -> Result<bool, ConvertError> {
    let probe = Variable { dims: vec![], dtype: v.dtype, data: bytes };
    Ok(f32_of(&probe, name)?.iter().all(|x| x.abs() < 1e-6))
}

/// Writes the whole ggml model. Returns the number of tensors written.
pub fn write_ggml<W: Write>(
    m: &Ct2Model,
    vocab: &[Vec<u8>],
    wtype: WeightType,
    out: &mut W,
) -> Result<usize, ConvertError> {
    let h = hparams(m)?;
    write_header(out, &h, wtype, vocab)?;
    let mut c = Converter { m, wtype, w: GgmlWriter { out, written: 0 } };
    c.whole_model_tensors()?;
    for i in 0..h.n_audio_layer {
        c.self_attention_block(&format!("encoder/layer_{i}"), &format!("encoder.blocks.{i}"))?;
    }
    for i in 0..h.n_text_layer {
        c.self_attention_block(&format!("decoder/layer_{i}"), &format!("decoder.blocks.{i}"))?;
        c.cross_attention_block(&format!("decoder/layer_{i}"), &format!("decoder.blocks.{i}"))?;
    }
    Ok(c.w.written)
}

/// The ggml header: magic, hyperparameters, mel filters and vocabulary.
fn write_header<W: Write>(out: &mut W, h: &Hparams, wtype: WeightType, vocab: &[Vec<u8>]) -> std::io::Result<()> {
    out.write_all(&GGML_MAGIC.to_le_bytes())?;
    let ftype = wtype.ftype();
    for v in [
        h.n_vocab,
        h.n_audio_ctx,
        h.n_audio_state,
        h.n_audio_head,
        h.n_audio_layer,
        h.n_text_ctx,
        h.n_text_state,
        h.n_text_head,
        h.n_text_layer,
        h.n_mels,
        ftype,
    ] {
        out.write_all(&(v as i32).to_le_bytes())?;
    }
    let n_bins = super::mel::N_FFT / 2 + 1;
    out.write_all(&(h.n_mels as i32).to_le_bytes())?;
    out.write_all(&(n_bins as i32).to_le_bytes())?;
    for x in super::mel::filters(h.n_mels) {
        out.write_all(&x.to_le_bytes())?;
    }
    out.write_all(&(vocab.len() as i32).to_le_bytes())?;
    for t in vocab {
        out.write_all(&(t.len() as i32).to_le_bytes())?;
        out.write_all(t)?;
    }
    Ok(())
}

/// Copies a model's tensors into a ggml file, under whisper.cpp's names and types.
struct Converter<'m, 'a, 'w, W: Write> {
    m: &'m Ct2Model<'a>,
    /// The type of the matrices.
    wtype: WeightType,
    w: GgmlWriter<'w, W>,
}

impl<W: Write> Converter<'_, '_, '_, W> {
    /// A tensor as f32, in its own shape.
    fn f32_tensor(&self, name: &str) -> Result<(Vec<usize>, Data), ConvertError> {
        let v = self.m.var(name)?;
        Ok((v.dims.clone(), Data::F32(f32_of(v, name)?)))
    }

    /// Matrices in the model's weight type.
    fn matrix(&self, bytes: &[u8], dtype: u8, name: &str) -> Result<Data, ConvertError> {
        match self.wtype {
            WeightType::F16 => Ok(Data::F16(f16_of(bytes, dtype, name)?)),
            WeightType::Q8_0 => {
                let probe = Variable { dims: vec![], dtype, data: bytes };
                Ok(Data::Q8_0(quantize_q8_0(&f32_of(&probe, name)?)))
            }
        }
    }

    /// Copies the CTranslate2 tensor `from` as f32 to `to`.
    fn copy_f32(&mut self, from: &str, to: &str) -> Result<(), ConvertError> {
        let (dims, data) = self.f32_tensor(from)?;
        self.w.tensor(to, &dims, data)
    }

    /// The tensors outside the blocks: convolutions, positional and token embeddings, and
    /// the final layer norms.
    fn whole_model_tensors(&mut self) -> Result<(), ConvertError> {
        // Convolutions: weights f16; biases f32 shaped (n, 1).
        for c in ["conv1", "conv2"] {
            let name = format!("encoder/{c}/weight");
            let v = self.m.var(&name)?;
            self.w.tensor(&format!("encoder.{c}.weight"), &v.dims, Data::F16(f16_of(v.data, v.dtype, &name)?))?;
            let (dims, data) = self.f32_tensor(&format!("encoder/{c}/bias"))?;
            self.w.tensor(&format!("encoder.{c}.bias"), &[dims[0], 1], data)?;
        }
        self.copy_f32("encoder/position_encodings/encodings", "encoder.positional_embedding")?;
        self.copy_f32("decoder/position_encodings/encodings", "decoder.positional_embedding")?;
        let emb = self.m.var("decoder/embeddings/weight")?;
        let data = self.matrix(emb.data, emb.dtype, "embeddings")?;
        self.w.tensor("decoder.token_embedding.weight", &emb.dims, data)?;
        self.copy_f32("encoder/layer_norm/gamma", "encoder.ln_post.weight")?;
        self.copy_f32("encoder/layer_norm/beta", "encoder.ln_post.bias")?;
        self.copy_f32("decoder/layer_norm/gamma", "decoder.ln.weight")?;
        self.copy_f32("decoder/layer_norm/beta", "decoder.ln.bias")
    }

    /// An encoder block, or a decoder block's self-attention and MLP.
    fn self_attention_block(&mut self, src: &str, dst: &str) -> Result<(), ConvertError> {
        self.layer_norm(src, dst, "self_attention/layer_norm", "attn_ln")?;
        self.fused(src, dst, "self_attention/linear_0", &["attn.query", "attn.key", "attn.value"])?;
        self.dense(src, dst, "self_attention/linear_1", "attn.out")?;
        self.layer_norm(src, dst, "ffn/layer_norm", "mlp_ln")?;
        self.dense(src, dst, "ffn/linear_0", "mlp.0")?;
        self.dense(src, dst, "ffn/linear_1", "mlp.2")
    }

    /// A decoder block's cross-attention.
    fn cross_attention_block(&mut self, src: &str, dst: &str) -> Result<(), ConvertError> {
        self.layer_norm(src, dst, "attention/layer_norm", "cross_attn_ln")?;
        self.dense(src, dst, "attention/linear_0", "cross_attn.query")?;
        self.fused(src, dst, "attention/linear_1", &["cross_attn.key", "cross_attn.value"])?;
        self.dense(src, dst, "attention/linear_2", "cross_attn.out")
    }

    fn layer_norm(&mut self, src: &str, dst: &str, from: &str, to: &str) -> Result<(), ConvertError> {
        for (ct2, ggml) in [("gamma", "weight"), ("beta", "bias")] {
            let v = self.m.var(&format!("{src}/{from}/{ct2}"))?;
            self.w.tensor(&format!("{dst}.{to}.{ggml}"), &v.dims, Data::F32(f32_of(v, from)?))?;
        }
        Ok(())
    }

    fn dense(&mut self, src: &str, dst: &str, from: &str, to: &str) -> Result<(), ConvertError> {
        let wv = self.m.var(&format!("{src}/{from}/weight"))?;
        let data = self.matrix(wv.data, wv.dtype, from)?;
        self.w.tensor(&format!("{dst}.{to}.weight"), &wv.dims, data)?;
        let bv = self.m.var(&format!("{src}/{from}/bias"))?;
        self.w.tensor(&format!("{dst}.{to}.bias"), &bv.dims, Data::F32(f32_of(bv, from)?))
    }

    /// Fused projections: write the parts; whisper has no key bias (it must be zero).
    fn fused(&mut self, src: &str, dst: &str, from: &str, to: &[&str]) -> Result<(), ConvertError> {
        let wv = self.m.var(&format!("{src}/{from}/weight"))?;
        let bv = self.m.var(&format!("{src}/{from}/bias"))?;
        let (wp, bp) = (split_rows(wv, to.len()), split_rows(bv, to.len()));
        let rows = wv.dims[0] / to.len();
        for (i, part) in to.iter().enumerate() {
            let data = self.matrix(wp[i], wv.dtype, from)?;
            self.w.tensor(&format!("{dst}.{part}.weight"), &[rows, wv.dims[1]], data)?;
            if part.ends_with("key") {
                if !all_zero(bv, bp[i], from)? {
                    return Err(ConvertError::Format(format!("{src}/{from}: key bias is not zero")));
                }
            } else {
                let b = Variable { dims: vec![rows], dtype: bv.dtype, data: bp[i] };
                self.w.tensor(&format!("{dst}.{part}.bias"), &[rows], Data::F32(f32_of(&b, from)?))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_tokens_decode_to_bytes() {
        let vocab = "!\nĠthe\nĊ\nÃ©\n<|endoftext|>\n<|startoftranscript|>";
        let v = vocabulary_bytes(vocab).unwrap();
        assert_eq!(v, vec![b"!".to_vec(), b" the".to_vec(), b"\n".to_vec(), "é".as_bytes().to_vec()]);
        assert!(vocabulary_bytes("a\nb").is_err());
    }

    #[test]
    fn q8_0_blocks_match_ggml() {
        let mut x: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) / 10.0).collect();
        x[40] = 0.0;
        let q = quantize_q8_0(&x);
        assert_eq!(q.len(), 2 * 34);
        let d = f16::from_le_bytes([q[0], q[1]]).to_f32();
        assert!((d - 2.0 / 127.0).abs() < 1e-4, "scale of block 0 is max|x|/127: {d}");
        assert_eq!(q[2] as i8, -127); // -2.0 / d
        assert_eq!(q[2 + 20] as i8, 0);
        // Dequantized values stay within half a step.
        for (i, v) in x[..32].iter().enumerate() {
            assert!((f32::from(q[2 + i] as i8) * d - v).abs() <= d / 2.0 + 1e-3);
        }
        assert_eq!(quantize_q8_0(&[0.0; 32])[2..], [0u8; 32]);
    }

    #[test]
    fn rejects_what_is_not_a_whisper_model() {
        assert!(Ct2Model::parse(b"").is_err());
        let mut b = 6u32.to_le_bytes().to_vec();
        b.extend_from_slice(&5u16.to_le_bytes());
        b.extend_from_slice(b"Bert\0");
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        assert!(matches!(Ct2Model::parse(&b), Err(ConvertError::Format(m)) if m.contains("Bert")));
    }
}
