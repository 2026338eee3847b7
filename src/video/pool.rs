//! Loading many clips on worker threads, results in input order.
//!
//! [`OrderedPool`] runs a job function on `workers` threads. Inputs go out on
//! a crossbeam channel, results come back tagged with their input position
//! and are handed out strictly in input order, whatever the threads' timing.
//!
//! Backpressure: the pool keeps at most `workers + queue_depth` inputs in
//! flight (submitted but not yet handed out). It submits a new input only
//! when the caller takes a result, so a slow consumer (the trainer) stops
//! the decoders instead of letting decoded clips pile up in memory; the
//! reorder buffer is bounded by the same number.
//!
//! Shutdown: dropping the pool (or the iterator) sets a cancel flag, closes
//! both channels and joins the threads; workers finish at most the job
//! they are on. A failing input is an `Err` in its slot, and a panicking
//! job becomes an error for that input ([`load_clips`] reports it as
//! [`VideoFailure::WorkerPanicked`]); neither stops the pool.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::clip::{Clip, load_clip};
use super::config::VideoConfig;
use super::error::{VideoError, VideoFailure};

/// A job that panicked: its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPanicked(pub String);

/// Worker threads applying one function to a stream of inputs, yielding
/// results in input order.
pub struct OrderedPool<I, O>
where
    I: Send + 'static,
    O: Send + 'static,
{
    inputs: Box<dyn Iterator<Item = I> + Send>,
    jobs: Option<Sender<(usize, I)>>,
    results: Option<Receiver<(usize, Result<O, JobPanicked>)>>,
    workers: Vec<JoinHandle<()>>,
    cancel: Arc<AtomicBool>,
    window: usize,
    submitted: usize,
    next_out: usize,
    waiting: BTreeMap<usize, Result<O, JobPanicked>>,
}

impl<I, O> OrderedPool<I, O>
where
    I: Send + 'static,
    O: Send + 'static,
{
    /// Starts `workers` threads (at least 1) running `job` over `inputs`,
    /// with at most `workers + queue_depth` inputs in flight.
    pub fn new<F>(
        inputs: impl IntoIterator<Item = I, IntoIter: Send + 'static>,
        workers: usize,
        queue_depth: usize,
        job: F,
    ) -> Self
    where
        F: Fn(I) -> O + Send + Sync + 'static,
    {
        let workers = workers.max(1);
        let window = workers + queue_depth;
        let (job_tx, job_rx) = bounded::<(usize, I)>(window);
        let (result_tx, result_rx) = bounded(window);
        let cancel = Arc::new(AtomicBool::new(false));
        let job = Arc::new(job);
        let handles = (0..workers)
            .map(|_| {
                let job_rx = job_rx.clone();
                let result_tx = result_tx.clone();
                let cancel = Arc::clone(&cancel);
                let job = Arc::clone(&job);
                std::thread::spawn(move || {
                    for (seq, input) in job_rx.iter() {
                        if cancel.load(Ordering::Relaxed) {
                            break;
                        }
                        let out = catch_unwind(AssertUnwindSafe(|| job(input)))
                            .map_err(|payload| JobPanicked(panic_message(payload.as_ref())));
                        if result_tx.send((seq, out)).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        let mut pool = OrderedPool {
            inputs: Box::new(inputs.into_iter()),
            jobs: Some(job_tx),
            results: Some(result_rx),
            workers: handles,
            cancel,
            window,
            submitted: 0,
            next_out: 0,
            waiting: BTreeMap::new(),
        };
        pool.top_up();
        pool
    }

    /// Submits inputs until `window` are in flight or the inputs run out.
    fn top_up(&mut self) {
        while self.submitted - self.next_out < self.window {
            let Some(jobs) = &self.jobs else { return };
            let Some(input) = self.inputs.next() else {
                self.jobs = None; // no more work: let idle workers exit
                return;
            };
            // Never blocks: the channel holds `window` and fewer are in flight.
            if jobs.send((self.submitted, input)).is_err() {
                return;
            }
            self.submitted += 1;
        }
    }

    /// Stops the workers and waits for them (also done on drop).
    pub fn shutdown(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.jobs = None;
        self.results = None;
        for handle in self.workers.drain(..) {
            // A worker cannot panic outside `catch_unwind`; nothing to report.
            let _ = handle.join();
        }
    }
}

impl<I, O> Iterator for OrderedPool<I, O>
where
    I: Send + 'static,
    O: Send + 'static,
{
    type Item = Result<O, JobPanicked>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next_out == self.submitted {
            return None;
        }
        loop {
            if let Some(result) = self.waiting.remove(&self.next_out) {
                self.next_out += 1;
                self.top_up();
                return Some(result);
            }
            let received = self.results.as_ref()?.recv();
            match received {
                Ok((seq, result)) => {
                    self.waiting.insert(seq, result);
                }
                // All workers gone with results outstanding: only after
                // shutdown, which ends the stream.
                Err(_) => return None,
            }
        }
    }
}

impl<I, O> Drop for OrderedPool<I, O>
where
    I: Send + 'static,
    O: Send + 'static,
{
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic payload".to_string()
    }
}

/// Loads `paths` on `config.workers` threads; yields one result per path,
/// in the order of `paths`.
pub fn load_clips(
    paths: Vec<PathBuf>,
    config: &VideoConfig,
) -> impl Iterator<Item = Result<Clip, VideoError>> {
    let config = config.clone();
    let workers = config.workers;
    let depth = config.queue_depth;
    let pool = OrderedPool::new(paths.clone(), workers, depth, move |path: PathBuf| {
        load_clip(&path, &config)
    });
    pool.zip(paths).map(|(result, path)| match result {
        Ok(clip) => clip,
        Err(JobPanicked(message)) => Err(VideoError::new(
            &path,
            VideoFailure::WorkerPanicked(message),
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[test]
    fn results_come_out_in_input_order_despite_timing() {
        // Early inputs take longest, so they finish last.
        let pool = OrderedPool::new(0..24u64, 4, 2, |i: u64| {
            std::thread::sleep(Duration::from_millis(24 - i));
            i * 10
        });
        let out: Vec<u64> = pool.map(|r| r.unwrap()).collect();
        assert_eq!(out, (0..24).map(|i| i * 10).collect::<Vec<_>>());
    }

    #[test]
    fn a_panicking_job_is_an_error_in_its_slot_and_the_pool_goes_on() {
        let pool = OrderedPool::new(0..6u32, 2, 1, |i: u32| {
            if i == 2 {
                panic!("bad input {i}");
            }
            i
        });
        let out: Vec<_> = pool.collect();
        assert_eq!(out.len(), 6);
        assert_eq!(out[2], Err(JobPanicked("bad input 2".to_string())));
        assert_eq!(out[5], Ok(5));
    }

    /// Waits (up to 10 s) until `counter` reaches `n`.
    fn wait_for(counter: &AtomicUsize, n: usize) {
        let start = std::time::Instant::now();
        while counter.load(Ordering::SeqCst) < n && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn in_flight_work_is_bounded_by_the_window() {
        let started = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&started);
        let mut pool = OrderedPool::new(0..100u32, 2, 3, move |i: u32| {
            counter.fetch_add(1, Ordering::SeqCst);
            i
        });
        // Take nothing: exactly workers + depth = 5 jobs start, and no more
        // however long we wait.
        wait_for(&started, 5);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(started.load(Ordering::SeqCst), 5);
        // Taking one result lets exactly one more in.
        assert_eq!(pool.next(), Some(Ok(0)));
        wait_for(&started, 6);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(started.load(Ordering::SeqCst), 6);
    }

    #[test]
    fn dropping_early_stops_the_workers() {
        let started = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&started);
        let mut pool = OrderedPool::new(0..1000u32, 2, 2, move |i: u32| {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(2));
            i
        });
        assert_eq!(pool.next(), Some(Ok(0)));
        drop(pool); // joins the threads
        let after_drop = started.load(Ordering::SeqCst);
        assert!(after_drop <= 6, "{after_drop} jobs started");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(started.load(Ordering::SeqCst), after_drop);
    }

    #[test]
    fn empty_input_yields_nothing() {
        let mut pool = OrderedPool::new(Vec::<u8>::new(), 3, 3, |i: u8| i);
        assert_eq!(pool.next(), None);
    }
}
