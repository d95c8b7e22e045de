//! One shutdown signal for a process and every task it started (as mini-redis's
//! `shutdown.rs`): tasks hold a [`Shutdown`], stop when it fires, and flush what they hold.

use tokio::sync::watch;

/// Fires [`Shutdown`]s; dropping it fires them too.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Tells a task when to stop. Cheap to clone; every clone sees the same signal.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A trigger and the signal it fires.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Fires the signal (again is harmless).
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Whether the signal has fired (or its trigger is gone).
    pub fn is_shutdown(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Waits until the signal fires; at once if it has.
    pub async fn recv(&mut self) {
        // An error means the trigger is gone, which is a shutdown too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_signal_and_a_dropped_trigger_fires_it() {
        let (trigger, mut shutdown) = channel();
        let mut other = shutdown.clone();
        assert!(!shutdown.is_shutdown());
        trigger.fire();
        shutdown.recv().await;
        other.recv().await;
        assert!(other.is_shutdown());
        let (trigger, mut shutdown) = channel();
        drop(trigger);
        shutdown.recv().await;
        assert!(shutdown.is_shutdown());
    }
}
