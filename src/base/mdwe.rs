//! Memory-deny-write-execute for the daemon outside systemd: with `COURTBOX_MDWE=1` the
//! process sets the kernel's `PR_SET_MDWE` (`PR_MDWE_REFUSE_EXEC_GAIN`, what systemd's
//! `MemoryDenyWriteExecute=yes` uses where the kernel has it) before anything else runs, and
//! proves it holds by asking for a writable and executable mapping. It lets a test run the
//! whole recording path under the unit's restriction; a box gets it from the unit.

/// Why the restriction could not be set or does not hold.
#[derive(Debug, thiserror::Error)]
pub enum MdweError {
    #[error("COURTBOX_MDWE=1: the kernel refused PR_SET_MDWE ({0}); it needs Linux 6.3 or later")]
    Refused(std::io::Error),
    #[error("COURTBOX_MDWE=1: PR_SET_MDWE was accepted, yet a writable and executable mapping was granted")]
    NotEnforced,
}

/// The environment variable that asks for it.
pub const MDWE_ENV: &str = "COURTBOX_MDWE";

/// Sets the restriction if `COURTBOX_MDWE=1`; `Ok(false)` when not asked.
pub fn deny_write_execute_if_asked() -> Result<bool, MdweError> {
    if std::env::var(MDWE_ENV).as_deref() != Ok("1") {
        return Ok(false);
    }
    // SAFETY: prctl with integer arguments touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_MDWE, libc::PR_MDWE_REFUSE_EXEC_GAIN as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(MdweError::Refused(std::io::Error::last_os_error()));
    }
    // SAFETY: an anonymous private mapping, unmapped at once if granted; no pointer is used.
    let probe = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if probe != libc::MAP_FAILED {
        // SAFETY: the mapping just made, of that length.
        unsafe { libc::munmap(probe, 4096) };
        return Err(MdweError::NotEnforced);
    }
    Ok(true)
}
