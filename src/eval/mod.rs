//! Evaluation of a judge against human scores: correlation metrics,
//! model-level aggregation, pairwise preference accuracy, answer statistics.

pub mod metrics;

pub use metrics::{
    AnswerStats, Correlations, MetricError, ModelLevel, PairwiseAccuracy, PairwiseConfig,
    aggregate_by_generator, answer_stats, correlations, krcc, pairwise_accuracy,
    pairwise_accuracy_within, plcc, srcc,
};
