//! The training-order cursor: which manifest rows form each batch.
//!
//! Each epoch visits every row once in an order shuffled from the run's seed
//! and the epoch number, so the order of epoch `e` is a pure function of
//! `(seed, e)`: a resumed run rebuilds it from the checkpointed cursor
//! `(epoch, position)` without storing the permutation. Batches never span an
//! epoch boundary — a short last batch is dropped (it would change the
//! effective batch size and the advantage statistics), so `steps_per_epoch`
//! is `rows / batch` and a run of `S` steps is always `S` full batches, also
//! when it is resumed exactly at an epoch boundary.

use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// Where the next batch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cursor {
    pub epoch: u64,
    /// Index into this epoch's permutation.
    pub position: usize,
}

/// An epoch-shuffled, resumable iterator of batches of row indices.
#[derive(Debug, Clone)]
pub struct BatchCursor {
    seed: u64,
    rows: usize,
    batch: usize,
    cursor: Cursor,
    order: Vec<usize>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CursorError {
    #[error(
        "a batch of {batch} rows needs at least {batch} training rows, the data set has {rows}"
    )]
    TooFewRows { rows: usize, batch: usize },
    #[error("batch size must be at least 1")]
    ZeroBatch,
    #[error(
        "checkpointed cursor (epoch {epoch}, position {position}) does not fit this data set \
         ({rows} rows, batch {batch}): was the manifest or batch size changed?"
    )]
    BadCursor {
        epoch: u64,
        position: usize,
        rows: usize,
        batch: usize,
    },
}

impl BatchCursor {
    /// A cursor over `rows` rows at the start of epoch 0.
    pub fn new(seed: u64, rows: usize, batch: usize) -> Result<Self, CursorError> {
        Self::resume(seed, rows, batch, Cursor::default())
    }

    /// A cursor continuing from a checkpointed position.
    pub fn resume(
        seed: u64,
        rows: usize,
        batch: usize,
        cursor: Cursor,
    ) -> Result<Self, CursorError> {
        if batch == 0 {
            return Err(CursorError::ZeroBatch);
        }
        if rows < batch {
            return Err(CursorError::TooFewRows { rows, batch });
        }
        let steps = rows / batch;
        if cursor.position > steps * batch || !cursor.position.is_multiple_of(batch) {
            return Err(CursorError::BadCursor {
                epoch: cursor.epoch,
                position: cursor.position,
                rows,
                batch,
            });
        }
        let order = epoch_order(seed, cursor.epoch, rows);
        Ok(BatchCursor {
            seed,
            rows,
            batch,
            cursor,
            order,
        })
    }

    /// Full batches per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.rows / self.batch
    }

    /// The position to checkpoint: the next batch starts here.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// The next batch of row indices, moving to a new shuffled epoch when
    /// the current one has no full batch left.
    pub fn next_batch(&mut self) -> Vec<usize> {
        if self.cursor.position + self.batch > self.rows {
            self.cursor = Cursor {
                epoch: self.cursor.epoch + 1,
                position: 0,
            };
            self.order = epoch_order(self.seed, self.cursor.epoch, self.rows);
        }
        let start = self.cursor.position;
        self.cursor.position += self.batch;
        self.order[start..start + self.batch].to_vec()
    }
}

/// The permutation of `0..rows` for one epoch.
fn epoch_order(seed: u64, epoch: u64, rows: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows).collect();
    Rng::stream(seed, "data-order")
        .fork(epoch)
        .shuffle(&mut order);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_epoch_visits_every_row_once() {
        let mut c = BatchCursor::new(1, 10, 3).unwrap();
        assert_eq!(c.steps_per_epoch(), 3);
        let mut seen: Vec<usize> = (0..3).flat_map(|_| c.next_batch()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(
            seen.len(),
            9,
            "9 distinct rows, the 10th dropped this epoch"
        );
        // The 4th batch starts epoch 1 with a different order.
        let first_e1 = c.next_batch();
        assert_eq!(
            c.cursor(),
            Cursor {
                epoch: 1,
                position: 3
            }
        );
        assert_ne!(first_e1, epoch_order(1, 0, 10)[..3].to_vec());
    }

    #[test]
    fn resume_continues_identically_also_at_an_epoch_boundary() {
        let mut straight = BatchCursor::new(7, 8, 4).unwrap();
        let all: Vec<Vec<usize>> = (0..6).map(|_| straight.next_batch()).collect();
        for k in 0..6 {
            let mut first = BatchCursor::new(7, 8, 4).unwrap();
            for _ in 0..k {
                first.next_batch();
            }
            let mut resumed = BatchCursor::resume(7, 8, 4, first.cursor()).unwrap();
            let rest: Vec<Vec<usize>> = (k..6).map(|_| resumed.next_batch()).collect();
            assert_eq!(rest, all[k..].to_vec(), "resumed after {k} batches");
        }
    }

    #[test]
    fn bad_sizes_and_cursors_are_errors() {
        assert_eq!(
            BatchCursor::new(0, 3, 4).unwrap_err(),
            CursorError::TooFewRows { rows: 3, batch: 4 }
        );
        assert_eq!(
            BatchCursor::new(0, 3, 0).unwrap_err(),
            CursorError::ZeroBatch
        );
        let bad = Cursor {
            epoch: 0,
            position: 3,
        };
        assert!(matches!(
            BatchCursor::resume(0, 8, 4, bad),
            Err(CursorError::BadCursor { .. })
        ));
    }
}
