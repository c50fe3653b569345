//! Stopping a run cleanly: a stop flag that [`super::train`] reads after every outer step, and
//! the handler of SIGINT and SIGTERM that sets it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::Result;

/// A flag that asks [`super::train`] to stop after the outer step in progress (it then writes
/// a checkpoint and returns [`crate::Error::Interrupted`]). Cloning shares the flag.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the run to stop.
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

static SIGNALLED: OnceLock<StopFlag> = OnceLock::new();

/// The flag SIGINT and SIGTERM set, with their handler installed on the first call (later
/// calls return the same flag). The first signal sets the flag, so the run stops after its
/// current outer step and writes a checkpoint; a second one ends the process at once (exit
/// status 130). Where the platform has no such signals (not unix), the flag is never set by
/// one.
pub fn stop_on_signals() -> Result<StopFlag> {
    let flag = SIGNALLED.get_or_init(StopFlag::new).clone();
    #[cfg(unix)]
    {
        static INSTALLED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
        INSTALLED
            .get_or_init(install)
            .clone()
            .map_err(crate::Error::invalid)?;
    }
    Ok(flag)
}

#[cfg(unix)]
extern "C" fn on_signal(_: libc::c_int) {
    // Only async-signal-safe work: an atomic load and store, or _exit.
    if let Some(flag) = SIGNALLED.get() {
        if flag.0.swap(true, Ordering::SeqCst) {
            // SAFETY: _exit is async-signal-safe and ends the process without unwinding.
            unsafe { libc::_exit(130) };
        }
    }
}

#[cfg(unix)]
fn install() -> std::result::Result<(), String> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid initial value; the handler only touches
        // atomics (see `on_signal`), and `sigaction` is given valid pointers.
        let r = unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            act.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut())
        };
        if r != 0 {
            return Err(format!(
                "cannot install the handler of signal {sig}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag() {
        let a = StopFlag::new();
        let b = a.clone();
        assert!(!b.is_set());
        a.set();
        assert!(b.is_set());
    }

    #[cfg(unix)]
    #[test]
    fn sigterm_sets_the_flag_of_stop_on_signals() {
        let flag = stop_on_signals().unwrap();
        assert!(!flag.is_set());
        // SAFETY: raising a signal whose handler was just installed; it only sets the flag.
        assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
        assert!(flag.is_set());
        assert!(
            stop_on_signals().unwrap().is_set(),
            "later calls share the flag"
        );
    }
}
