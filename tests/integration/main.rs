//! Integration tests: the real `courtbox` binary recording real GStreamer pipelines.
//! Run one at a time (`--test-threads=1`, see scripts/test): each records live video.

mod access;
mod broadcast;
mod captions;
mod common;
mod config;
mod crash;
mod failure;
mod faultfs;
mod hardening;
mod install;
mod network;
mod ops;
mod panel;
mod power;
mod provision;
mod recording;
mod s3;
mod tamper;
mod tsa;
mod upload;
mod witness;
