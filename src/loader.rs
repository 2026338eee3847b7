//! Feeding prepared examples to a trainer or evaluator from decoding
//! worker threads.
//!
//! Training order is a pure function of the seed and the cursor
//! ([`crate::data::BatchCursor`]), so the worker pool can run ahead on its own
//! copy of the cursor, decoding the next batches while the trainer updates
//! the model (the pool's bounded window is the backpressure), while the
//! trainer's own cursor advances only when it *takes* a batch — that is the
//! position a checkpoint stores. A video that fails to decode is reported
//! with its path and reason, counted, and left out of its batch; the rest of
//! the run goes on.

use crate::data::{BatchCursor, Cursor, Manifest};
use crate::inputs::{Example, InputError, InputSpec, prepare_example};
use crate::text::{AnswerOrder, Tokenizer};
use crate::video::OrderedPool;
use crate::video::pool::JobPanicked;
use std::sync::Arc;

/// What every job needs, shared by the worker threads.
#[derive(Clone)]
pub struct Preparer {
    pub manifest: Arc<Manifest>,
    pub spec: Arc<InputSpec>,
    pub tokenizer: Arc<Tokenizer>,
    pub order: AnswerOrder,
}

impl Preparer {
    /// Decodes and prepares manifest row `index`.
    pub fn prepare(&self, index: usize) -> Result<Example, InputError> {
        let row = &self.manifest.rows[index];
        let path = self.manifest.video_path(row);
        prepare_example(index, row, &path, &self.spec, &self.tokenizer, self.order)
    }
}

type Job = Result<Example, InputError>;

fn unpanic(r: Result<Job, JobPanicked>, index: usize) -> Job {
    r.unwrap_or_else(|JobPanicked(message)| Err(InputError::Panicked { index, message }))
}

/// An endless, epoch-shuffled stream of training batches.
pub struct TrainLoader {
    cursor: BatchCursor,
    /// Manifest indices of the rows this loader draws from (e.g. the train
    /// split); the cursor indexes into this list.
    rows: Arc<Vec<usize>>,
    pool: OrderedPool<usize, Job>,
    batch: usize,
}

impl TrainLoader {
    /// Starts decoding at `cursor` (fresh or checkpointed).
    pub fn new(
        preparer: Preparer,
        rows: Vec<usize>,
        cursor: BatchCursor,
        batch: usize,
        workers: usize,
        queue_depth: usize,
    ) -> TrainLoader {
        let rows = Arc::new(rows);
        let mut ahead = cursor.clone();
        let stream_rows = Arc::clone(&rows);
        let indices = std::iter::from_fn(move || Some(ahead.next_batch()))
            .flatten()
            .map(move |i| stream_rows[i]);
        let pool = OrderedPool::new(indices, workers, queue_depth.max(batch), move |i| {
            preparer.prepare(i)
        });
        TrainLoader {
            cursor,
            rows,
            pool,
            batch,
        }
    }

    /// The next batch: prepared examples and the rows that failed.
    pub fn next_batch(&mut self) -> (Vec<Example>, Vec<InputError>) {
        let expected: Vec<usize> = self
            .cursor
            .next_batch()
            .into_iter()
            .map(|i| self.rows[i])
            .collect();
        let mut ok = Vec::with_capacity(self.batch);
        let mut failed = Vec::new();
        for index in expected {
            let result = match self.pool.next() {
                Some(r) => unpanic(r, index),
                None => Err(InputError::Panicked {
                    index,
                    message: "the decoding pool stopped".into(),
                }),
            };
            match result {
                Ok(example) => {
                    debug_assert_eq!(example.index, index, "pool order follows the cursor");
                    ok.push(example)
                }
                Err(e) => failed.push(e),
            }
        }
        (ok, failed)
    }

    /// The position a checkpoint stores: the next batch starts here.
    pub fn cursor(&self) -> Cursor {
        self.cursor.cursor()
    }
}

/// Prepares `indices` once each, in order, on worker threads (evaluation).
pub fn prepare_all(
    preparer: Preparer,
    indices: Vec<usize>,
    workers: usize,
    queue_depth: usize,
) -> impl Iterator<Item = Job> {
    let pool = OrderedPool::new(indices.clone(), workers, queue_depth, move |i| {
        preparer.prepare(i)
    });
    pool.zip(indices).map(|(r, i)| unpanic(r, i))
}
