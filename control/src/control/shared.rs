//! The control plane as its users share it — the API and the Kubernetes
//! source, two edges over the same [`Control`]: a change locks the writer
//! (on a blocking thread, never on the async runtime: it may wait for the
//! change in progress), a read goes to the [`ControlView`] and never waits.

use std::sync::{Arc, Mutex, MutexGuard};

use super::{Control, ControlView};

/// One [`Control`] behind its writers' lock, with its view.
pub struct SharedControl {
    control: Mutex<Control>,
    view: Arc<ControlView>,
}

impl SharedControl {
    /// Shares `control`.
    pub fn new(control: Control) -> Arc<SharedControl> {
        Arc::new(SharedControl {
            view: Arc::clone(control.view()),
            control: Mutex::new(control),
        })
    }

    /// The control plane, locked for a change: waits for the change in
    /// progress, so call it off the async runtime's threads.
    pub fn lock(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the last commit published (never waits for a change).
    pub fn view(&self) -> &ControlView {
        &self.view
    }
}
