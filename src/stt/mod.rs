//! Speech to text on the box: whisper.cpp (whisper-rs) on a dedicated thread, one caption
//! track per microphone, finals signed into the session chain. Also the tooling that
//! prepares the speech model (`models`, `convert`, `mel`).

pub mod audio;
pub mod convert;
pub mod engine;
pub mod filter;
pub mod mel;
pub mod models;
pub mod quality;
pub mod schedule;
mod service;
pub mod stream;
pub mod text;

pub use service::{
    CaptionEvent, CaptionKind, LoadRecognizer, MicInfo, SessionSpec, Stt, SttError, SttSettings, SttState, SttStatus,
    TrackStatus, TranscribeRequest, TranscriptionQueued,
};
