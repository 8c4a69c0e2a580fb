//! A long-lived service thread and the one way to stop it: its body gets a
//! `CancellationToken`; `stop` cancels it and joins the thread, and so does dropping the
//! handle. The uploader, the disk watch, the witness, the splitter, the spool syncer, the
//! sim feeders and the broadcast delay are all one of these.
//!
//! Threads that own a work queue (the ledger writer, the committer, the speech service)
//! stop instead when their queue closes: they must finish the work already queued, which a
//! token cancelled at any moment would cut short.

use parking_lot::Mutex;
use std::thread::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct ServiceThread {
    shutdown: CancellationToken,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl ServiceThread {
    /// Spawns the thread `name` running `body`, which returns once the token it is given
    /// is cancelled (it may return earlier on its own).
    pub fn spawn(name: impl Into<String>, body: impl FnOnce(CancellationToken) + Send + 'static) -> ServiceThread {
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let name = name.into();
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || body(token))
            .unwrap_or_else(|e| panic!("cannot start the {name} thread: {e}"));
        ServiceThread { shutdown, thread: Mutex::new(Some(thread)) }
    }

    /// Cancels the thread's token and waits for it to end. Idempotent.
    pub fn stop(&self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServiceThread {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn stopping_cancels_the_body_and_waits_for_it() {
        let rounds = Arc::new(AtomicU32::new(0));
        let counted = rounds.clone();
        let thread = ServiceThread::spawn("test-service", move |stop| {
            while !stop.is_cancelled() {
                counted.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            counted.store(u32::MAX, Ordering::SeqCst);
        });
        thread.stop();
        assert_eq!(rounds.load(Ordering::SeqCst), u32::MAX, "the body ran to its end before stop returned");
        thread.stop();
    }
}
