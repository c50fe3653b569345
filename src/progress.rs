//! The progress bar of [`run::train`](crate::run::train): drawn by indicatif with the `cli`
//! feature; without it the bar is a silent stand-in, so a library built without the command
//! line shows no progress even when asked to.

use crate::Result;

/// A progress bar over outer steps.
pub(crate) struct ProgressBar {
    #[cfg(feature = "cli")]
    bar: indicatif::ProgressBar,
}

impl ProgressBar {
    /// A bar of `total` outer steps standing at `start`; `None` unless `show`.
    pub(crate) fn new(show: bool, total: u64, start: u64) -> Result<Option<Self>> {
        Self::counting(show, total, start, "outer steps")
    }

    /// A bar of `total` things named `unit` standing at `start`; `None` unless `show`.
    pub(crate) fn counting(show: bool, total: u64, start: u64, unit: &str) -> Result<Option<Self>> {
        if !show {
            return Ok(None);
        }
        #[cfg(feature = "cli")]
        {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(&format!(
                    "{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {unit}  {{msg}}  ETA {{eta}}"
                ))
                .map_err(|e| crate::Error::invalid(format!("progress template: {e}")))?
                .progress_chars("=> "),
            );
            bar.set_position(start);
            Ok(Some(Self { bar }))
        }
        #[cfg(not(feature = "cli"))]
        {
            let _ = (total, start, unit);
            Ok(Some(Self {}))
        }
    }

    /// Move the bar to outer step `pos`.
    pub(crate) fn set_position(&self, pos: u64) {
        #[cfg(feature = "cli")]
        self.bar.set_position(pos);
        #[cfg(not(feature = "cli"))]
        let _ = pos;
    }

    /// The text beside the bar.
    pub(crate) fn set_message(&self, msg: String) {
        #[cfg(feature = "cli")]
        self.bar.set_message(msg);
        #[cfg(not(feature = "cli"))]
        let _ = msg;
    }

    /// Draw the bar complete and leave it on screen.
    pub(crate) fn finish(&self) {
        #[cfg(feature = "cli")]
        self.bar.finish();
    }

    /// Remove the bar from the screen.
    pub(crate) fn finish_and_clear(&self) {
        #[cfg(feature = "cli")]
        self.bar.finish_and_clear();
    }

    /// Leave the bar where it stands (a run that stops early).
    pub(crate) fn abandon(&self) {
        #[cfg(feature = "cli")]
        self.bar.abandon();
    }

    /// Run `f` (which writes to the terminal) with the bar hidden, then draw it again.
    pub(crate) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        #[cfg(feature = "cli")]
        return self.bar.suspend(f);
        #[cfg(not(feature = "cli"))]
        f()
    }
}
