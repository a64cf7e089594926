//! One thread owns the TPM connection; callers send it work.
//!
//! An ESAPI context holds raw pointers into the C library and is neither
//! `Send` nor `Sync`, while a [`RootOfTrust`](crate::RootOfTrust) is shared
//! between the agent's tasks. So the context lives on a dedicated thread and
//! every operation is a closure sent to it and run there, one at a time:
//! that also serialises TPM commands, which a TPM requires anyway.

use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Mutex;
use std::thread::JoinHandle;

use crate::RotError;

/// A unit of work for the TPM thread.
type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// Handle to the thread that owns the TPM state `S`.
pub(super) struct Worker<S> {
    jobs: Mutex<Option<Sender<Job<S>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl<S: 'static> Worker<S> {
    /// Starts the thread and builds its state with `init` there, returning
    /// the worker and what else `init` produced; fails with `init`'s error
    /// (and no thread left behind) if that fails.
    pub(super) fn start<T: Send + 'static>(
        init: impl FnOnce() -> Result<(S, T), RotError> + Send + 'static,
    ) -> Result<(Worker<S>, T), RotError> {
        let (jobs, queue): (Sender<Job<S>>, Receiver<Job<S>>) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<T, RotError>>(1);
        let thread = std::thread::Builder::new()
            .name("sevenfold-tpm".into())
            .spawn(move || {
                let mut state = match init() {
                    Ok((state, out)) => {
                        let _ = ready_tx.send(Ok(out));
                        state
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                // Ends when every sender is gone (the root of trust dropped).
                while let Ok(job) = queue.recv() {
                    job(&mut state);
                }
            })
            .map_err(|e| RotError::Tpm {
                operation: "starting the TPM thread",
                detail: e.to_string(),
            })?;
        match ready_rx.recv() {
            Ok(Ok(out)) => Ok((
                Worker {
                    jobs: Mutex::new(Some(jobs)),
                    thread: Mutex::new(Some(thread)),
                },
                out,
            )),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(gone())
            }
        }
    }

    /// Runs `f` on the TPM thread and waits for its result.
    pub(super) fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut S) -> Result<R, RotError> + Send + 'static,
    ) -> Result<R, RotError> {
        let (reply_tx, reply_rx): (SyncSender<Result<R, RotError>>, _) = mpsc::sync_channel(1);
        let job: Job<S> = Box::new(move |state| {
            let _ = reply_tx.send(f(state));
        });
        {
            let jobs = self
                .jobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            jobs.as_ref()
                .ok_or_else(gone)?
                .send(job)
                .map_err(|_| gone())?;
        }
        // A panic on the TPM thread drops the reply sender: an error, not a hang.
        reply_rx.recv().map_err(|_| gone())?
    }
}

impl<S> Drop for Worker<S> {
    fn drop(&mut self) {
        // Closing the queue ends the thread, which then drops the TPM context
        // (flushing its transient objects) before we return.
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        if let Ok(mut thread) = self.thread.lock() {
            if let Some(thread) = thread.take() {
                let _ = thread.join();
            }
        }
    }
}

fn gone() -> RotError {
    RotError::Tpm {
        operation: "talking to the TPM thread",
        detail: "the TPM thread has stopped".into(),
    }
}
